"""``measure_table``: time every layer at every option and write a measured hardware profile.

Each cell is appended to ``<out>.cells.jsonl`` (first line: the settings it was measured with)
as soon as it is timed and fsynced, so a killed run keeps what it measured; a re-run with the
same settings skips those cells. The table itself is written to a temp file and renamed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from profiling.errors import BadInput
from profiling.latency.runtimes import (
    FLOAT_OPTION,
    check_runtime,
    layer_callable,
    machine_info,
    runtime_version,
    torch_threads,
)
from profiling.latency.timing import time_callable
from solvers.costs import parse_candidate
from solvers.latency_table import HARDWARE_FORMAT, check_table, timed_layers

__all__ = ["MeasureRequest", "cells_path", "measure_table", "table_document"]

Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class MeasureRequest:
    """What to time: a model at an image size, the options, the runtime and how often."""

    model: str
    image_size: int | None = None
    candidates: tuple[str, ...] = ("w8a8", "w4a8", "w8a16", "w4a16")
    runtime: str = "torch"
    threads: int = 2
    warmup: int = 3
    repeats: int = 20
    name: str | None = None
    checkpoint: str | None = None
    layers: tuple[str, ...] | None = field(default=None)  # a subset (tests); None: every layer

    def __post_init__(self) -> None:
        check_runtime(self.runtime)
        for cid in self.candidates:
            try:
                parse_candidate(cid)
            except ValueError as exc:
                raise BadInput(f"candidates: {exc}") from None
        for key, least in (("threads", 1), ("warmup", 0), ("repeats", 1)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise BadInput(f"{key}: must be an integer >= {least}, got {value!r}")

    @property
    def options(self) -> list[str]:
        """The candidates plus the float option (the end-to-end baseline needs it)."""
        return list(dict.fromkeys([*self.candidates, FLOAT_OPTION]))


def cells_path(out: Path) -> Path:
    """Where the cells of a measurement of ``out`` are appended."""
    return out.with_name(out.name + ".cells.jsonl")


def _settings(req: MeasureRequest, size: int) -> dict[str, Any]:
    keep = ("model", "runtime", "threads", "warmup", "repeats", "checkpoint")
    return (
        {k: v for k, v in asdict(req).items() if k in keep}
        | {
            "image_size": size,
            "runtime_version": runtime_version(req.runtime),
            "host": machine_info()["host"],
        }
        | _session_config(req.runtime)
    )


def _session_config(runtime: str) -> dict[str, Any]:
    """ONNX Runtime's session settings for the cells (the export's, see ``SESSION_CONFIG``)."""
    if runtime != "onnxruntime":
        return {}
    from profiling.export.ort_model import SESSION_CONFIG

    return {"session_config": dict(SESSION_CONFIG)}


def _read_cells(path: Path, settings: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """Cells already measured with the same settings (a torn last line is dropped)."""
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = []
    for line in lines:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # the run was killed mid-write: what follows is not trusted
    if not rows or rows[0].get("settings") != dict(settings):
        raise BadInput(
            f"out: {path} holds cells measured with other settings "
            f"({rows[0].get('settings') if rows else 'unreadable'}); delete it or use another --out"
        )
    return {(r["layer"], r["option"]): r["cell"] for r in rows[1:] if "cell" in r}


class _Appender:
    """Appends one JSON line per cell and fsyncs it."""

    def __init__(self, path: Path, settings: Mapping[str, Any], fresh: bool) -> None:
        if fresh:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as fh:
                fh.write(json.dumps({"settings": dict(settings)}) + "\n")
        self.path = path

    def add(self, layer: str, option: str, cell: Mapping[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"layer": layer, "option": option, "cell": dict(cell)}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _float_end_to_end(loaded: Any, req: MeasureRequest) -> tuple[dict[str, Any], list[str]]:
    """The float image encoder timed whole, and the weight layers it runs."""
    from profiling.latency.end_to_end import time_float_encoder

    return time_float_encoder(loaded, req.runtime, req.threads, req.warmup, req.repeats)


def measure_table(
    req: MeasureRequest,
    out: Path,
    *,
    progress: Progress | None = None,
    loaded: Any = None,
) -> dict[str, Any]:
    """Measure (or finish measuring) the table of ``req`` and write it to ``out``."""
    from profiling.inventory import build_inventory
    from profiling.models import ModelSpec, build_model

    say = progress or (lambda _m, _f: None)
    if loaded is None:
        spec = ModelSpec(req.model, image_size=req.image_size, checkpoint=req.checkpoint)
        say(f"building {req.model}", 0.0)
        loaded = build_model(spec)
    inventory = build_inventory(loaded).to_json()
    settings = _settings(req, inventory["image_size"])
    path = cells_path(out)
    done = _read_cells(path, settings)
    appender = _Appender(path, settings, fresh=not path.exists())
    entries = {x["name"]: x for x in inventory["layers"]}
    modules = dict(loaded.module.named_modules())
    names = [n for n in timed_layers(inventory) if req.layers is None or n in req.layers]
    todo = [(n, o) for n in names for o in req.options if (n, o) not in done]
    total = len(names) * len(req.options) + 1
    say(f"{len(done)} cells kept from an earlier run, {len(todo)} to time", len(done) / total)
    with torch_threads(req.threads):
        for name, option in todo:
            entry, module = entries[name], modules[name]
            fn, used = layer_callable(req.runtime, entry, option, module, req.threads)
            cell = time_callable(fn, warmup=req.warmup, repeats=req.repeats)
            if used != req.runtime:  # a kind the runtime has no standalone graph of
                cell["runtime"] = used
            appender.add(name, option, cell)
            done[(name, option)] = cell
            say(f"{name} {option}: {cell['median_ms']:.3f} ms", len(done) / total)
        end = done.get(("<end_to_end>", FLOAT_OPTION))
        if end is None:
            say("timing the float image encoder end to end", (total - 1) / total)
            cell, encoder = _float_end_to_end(loaded, req)
            end = cell | {"layers": encoder}
            appender.add("<end_to_end>", FLOAT_OPTION, end)
    table = table_document(req, inventory, names, done, end)
    check_table(table, None)
    _write_atomic(out, table)
    say(f"wrote {out}", 1.0)
    return table


def table_document(
    req: MeasureRequest,
    inventory: Mapping[str, Any],
    names: list[str],
    done: Mapping[tuple[str, str], Mapping[str, Any]],
    end: Mapping[str, Any],
) -> dict[str, Any]:
    """The measured ``bitbudget.hardware/v1`` document."""
    cells = {n: {o: dict(done[(n, o)]) for o in req.options} for n in names}
    encoder = [n for n in end["layers"] if n in cells]
    layer_sum = sum(cells[n][FLOAT_OPTION]["median_ms"] for n in encoder)
    float_ms = {k: v for k, v in end.items() if k != "layers"}
    machine = machine_info()
    name = req.name or f"{req.model}-{inventory['image_size']}-{req.runtime}-{machine['host']}"
    return {
        "format": HARDWARE_FORMAT,
        "kind": "measured",
        "name": name,
        "title": f"{req.model} at {inventory['image_size']} px, {req.runtime}, "
        f"{req.threads} threads on {machine['host']} ({machine['cpu']})",
        "model": req.model,
        "image_size": inventory["image_size"],
        "random_weights": bool(inventory.get("random_weights")),
        "measured": {
            "runtime": req.runtime,
            "runtime_version": runtime_version(req.runtime),
            "threads": req.threads,
            "warmup": req.warmup,
            "repeats": req.repeats,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            **_session_config(req.runtime),
            **machine,
        },
        "float_ms": float_ms,
        "end_to_end_layers": encoder,
        # the work the layers do not account for (norms, softmax, reshapes): docs/latency.md
        "fixed_ms": max(0.0, float_ms["median_ms"] - layer_sum),
        # weight layers the forward never runs (mask-prompt paths): they cost 0 ms
        "not_run": [
            x["name"] for x in inventory["layers"] if x.get("weight_numel") and not x.get("ran")
        ],
        "latency_table": cells,
    }


def _write_atomic(out: Path, doc: Mapping[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)

"""Measured hardware profiles: ``bitbudget.hardware/v1`` with a per-layer ``latency_table``.

A measured profile holds, for one model at one image size, the median time of every quantizable
layer at every candidate option, timed in isolation in one runtime on one machine, plus how it
was measured and the end-to-end float latency. ``fixed_ms`` is the time the layers do not
account for (attention softmax, norms, reshapes), the constant of docs/latency.md. The solvers
use the medians as the options' ``latency_ms`` and ``fixed_ms`` as the problem's fixed latency.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "apply_table",
    "HARDWARE_FORMAT",
    "TableError",
    "MeasuredProfile",
    "check_table",
    "is_measured",
    "predict_latency",
    "read_hardware_file",
    "timed_layers",
]

HARDWARE_FORMAT = "bitbudget.hardware/v1"
_MEASURED_KEYS = ("runtime", "runtime_version", "threads", "host", "date", "repeats")
_CELL_KEYS = ("median_ms", "spread", "repeats")


class TableError(ValueError):
    """A latency table that does not follow the format; the message names the field."""


def is_measured(raw: Mapping[str, Any]) -> bool:
    """True for a document that carries a ``latency_table`` (else it is a roofline estimate)."""
    return isinstance(raw, Mapping) and "latency_table" in raw


def _finite(value: Any, where: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TableError(f"{where}: must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise TableError(
            f"{where}: must be finite and {'> 0' if positive else '>= 0'}, got {value}"
        )
    return float(value)


def _check_header(table: Mapping[str, Any]) -> None:
    if table.get("format") != HARDWARE_FORMAT:
        raise TableError(f"format: must be {HARDWARE_FORMAT!r}, got {table.get('format')!r}")
    for key in ("name", "model"):
        if not isinstance(table.get(key), str) or not table[key]:
            raise TableError(f"{key}: must be a non-empty string")
    if not isinstance(table.get("image_size"), int) or table["image_size"] <= 0:
        raise TableError("image_size: must be a positive integer")
    measured = table.get("measured")
    if not isinstance(measured, Mapping):
        raise TableError("measured: must be an object (runtime, threads, host, date, repeats)")
    for key in _MEASURED_KEYS:
        if key not in measured:
            raise TableError(f"measured.{key}: missing")
    _finite(table.get("fixed_ms", 0.0), "fixed_ms")
    not_run = table.get("not_run", [])
    if not isinstance(not_run, list) or not all(isinstance(n, str) for n in not_run):
        raise TableError("not_run: must be a list of layer names")
    float_ms = table.get("float_ms")
    if float_ms is not None:
        _finite(_mapping(float_ms, "float_ms").get("median_ms"), "float_ms.median_ms")


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise TableError(f"{where}: must be an object, got {type(value).__name__}")
    return value


def _check_cells(cells: Mapping[str, Any]) -> None:
    for layer, options in cells.items():
        for option, cell in _mapping(options, f"latency_table.{layer}").items():
            where = f"latency_table.{layer}.{option}"
            cell = _mapping(cell, where)
            for key in _CELL_KEYS:
                if key not in cell:
                    raise TableError(f"{where}.{key}: missing")
            _finite(cell["median_ms"], f"{where}.median_ms")
            _finite(cell["spread"], f"{where}.spread")
            _finite(cell["repeats"], f"{where}.repeats", positive=True)


def check_table(
    table: Mapping[str, Any],
    inventory: Mapping[str, Any] | None = None,
    candidates: Iterable[str] | None = None,
) -> None:
    """Raise ``TableError`` naming the field when ``table`` is malformed, is for another model or
    image size than ``inventory``, or misses a layer (or, given ``candidates``, an option)."""
    _mapping(table, "table")
    _check_header(table)
    cells = _mapping(table.get("latency_table"), "latency_table")
    _check_cells(cells)
    if inventory is None:
        return
    for key in ("model", "image_size"):
        if table[key] != inventory.get(key):
            raise TableError(
                f"{key}: the table is for {table[key]!r}, the model is {inventory.get(key)!r}"
            )
    wanted = list(candidates) if candidates is not None else None
    for layer in timed_layers(inventory):
        if layer not in cells:
            raise TableError(f"latency_table.{layer}: missing (a layer of {table['model']})")
        for option in wanted or ():
            if option not in cells[layer]:
                raise TableError(f"latency_table.{layer}.{option}: missing")


def timed_layers(inventory: Mapping[str, Any]) -> list[str]:
    """The layers a table times: the weight layers that ran in the inventory's forward."""
    return [x["name"] for x in inventory["layers"] if x.get("weight_numel") and x.get("ran", True)]


@dataclass(frozen=True)
class MeasuredProfile:
    """A measured table used where a roofline ``HardwareProfile`` is: same ``compute_type`` /
    ``latency_ms`` shape, plus the constant ``fixed_ms``."""

    name: str
    cells: Mapping[str, Mapping[str, Mapping[str, Any]]]
    fixed_ms: float = 0.0
    idle: frozenset[str] = frozenset()  # layers the model's forward never runs: 0 ms
    kind: str = "measured"

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> MeasuredProfile:
        """Read and check a measured ``bitbudget.hardware/v1`` document."""
        check_table(raw)
        idle = frozenset(str(n) for n in raw.get("not_run", ()))
        fixed = float(raw.get("fixed_ms") or 0.0)
        return cls(str(raw["name"]), raw["latency_table"], fixed, idle)

    def has(self, layer: str, option: str) -> bool:
        """True when ``layer`` was timed at ``option`` (or never runs)."""
        return layer in self.idle or option in self.cells.get(layer, {})

    def compute_type(self, w: int, a: int, kind: str = "") -> str | None:
        """Measured tables never rule an option out by kind: ``has`` decides per layer."""
        return "measured"

    def layer_ms(self, layer: str, option: str) -> float:
        """The median time of ``layer`` at ``option``; a gap is named."""
        if layer in self.idle and layer not in self.cells:
            return 0.0
        if layer not in self.cells:
            raise TableError(f"latency_table.{layer}: missing (table {self.name!r})")
        if option not in self.cells[layer]:
            known = ", ".join(self.cells[layer])
            raise TableError(f"latency_table.{layer}.{option}: missing; has {known}")
        return float(self.cells[layer][option]["median_ms"])


def read_hardware_file(name: str | Path) -> Any:
    """A ``.json`` path's document (for names of shipped profiles, the name itself)."""
    if not str(name).endswith(".json"):
        return str(name)
    try:
        return json.loads(Path(name).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise TableError(f"hardware file {str(name)!r}: {exc}") from None


def predict_latency(table: Mapping[str, Any], choices: Mapping[str, str]) -> float:
    """A plan's latency from a table: ``fixed_ms`` + Σ the chosen cells' medians (the same sum,
    in the same order, as the solver's totals)."""
    profile = MeasuredProfile.from_dict(table)
    spent = sum(profile.layer_ms(layer, option) for layer, option in choices.items())
    return profile.fixed_ms + spent


def apply_table(problem: Mapping[str, Any], table: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a problem document whose options' ``latency_ms`` and fixed latency come from a
    measured table; an option the table did not time is named."""
    profile = MeasuredProfile.from_dict(table)
    out = json.loads(json.dumps(problem))
    for layer in out.get("layers", []):
        for option in layer.get("options", []):
            option["latency_ms"] = profile.layer_ms(layer["name"], option["id"])
    out["fixed"] = dict(out.get("fixed") or {}) | {"latency_ms": profile.fixed_ms}
    return out

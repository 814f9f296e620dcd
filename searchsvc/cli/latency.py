"""``bitbudget latency measure`` and ``bitbudget latency check``: measured latency tables."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from searchsvc.cli.common import fail, progress_bar, random_weights_note, user_errors

__all__ = ["register", "resolve_table"]

latency_app = typer.Typer(
    help="Per-layer latency tables measured in a runtime (docs/latency.md).",
    no_args_is_help=True,
)


def resolve_table(name: str) -> dict[str, Any]:
    """A measured table from a JSON file, or a hardware profile stored in the database by name.
    A roofline estimate or an unknown name is a ``BadInput``."""
    from profiling.errors import BadInput
    from solvers.latency_table import is_measured, read_hardware_file

    if name.endswith(".json"):
        doc = read_hardware_file(name)
    else:
        from searchsvc.hardware.service import stored_table

        doc = stored_table(name)
    if not is_measured(doc):
        raise BadInput(f"hardware {name!r} is a roofline estimate, not a measured latency table")
    return dict(doc)


def measure_cmd(
    model: str = typer.Argument(..., help="registered model name (see `bitbudget models`)"),
    image_size: int = typer.Option(None, "--image-size", help="input size in pixels"),
    candidates: str = typer.Option(
        "w8a8,w4a8,w8a16,w4a16", "--candidates", help="comma-separated option ids"
    ),
    runtime: str = typer.Option("onnxruntime", "--runtime", help="onnxruntime | torch"),
    threads: int = typer.Option(2, "--threads", help="intra-op threads"),
    warmup: int = typer.Option(3, "--warmup", help="untimed runs per cell"),
    repeats: int = typer.Option(20, "--repeats", help="timed runs per cell (the median is kept)"),
    name: str = typer.Option(None, "--name", help="the profile's name (default model-size-host)"),
    checkpoint: str = typer.Option(None, "--checkpoint", help="official-format checkpoint"),
    out: Path = typer.Option(..., "--out", help="where to write TABLE.json"),
) -> None:
    """Time every layer of MODEL at every candidate; a killed run resumes from its cells file."""
    from profiling.latency import MeasureRequest, cells_path, measure_table

    with user_errors():
        if out.is_dir():
            fail(f"out: {out} is a folder; give a file name such as table.json")
        req = MeasureRequest(
            model,
            image_size=image_size,
            candidates=tuple(c.strip() for c in candidates.split(",") if c.strip()),
            runtime=runtime,
            threads=threads,
            warmup=warmup,
            repeats=repeats,
            name=name,
            checkpoint=checkpoint,
        )
        with progress_bar() as bar:
            task = bar.add_task(f"latency of {model}", total=1.0)
            table = measure_table(
                req, out, progress=lambda m, f: bar.update(task, completed=f, description=m)
            )
    cells = sum(len(v) for v in table["latency_table"].values())
    typer.echo(
        f"table {table['name']} -> {out}: {len(table['latency_table'])} layers, {cells} cells; "
        f"float end to end {table['float_ms']['median_ms']:.3f} ms, "
        f"non-layer constant {table['fixed_ms']:.3f} ms (cells kept in {cells_path(out).name})"
    )
    random_weights_note(bool(table.get("random_weights")))


def check_cmd(
    table: Path = typer.Argument(..., help="a measured hardware profile (TABLE.json)"),
    model: str = typer.Option(None, "--model", help="also check it covers this model's layers"),
    image_size: int = typer.Option(None, "--image-size", help="with --model"),
) -> None:
    """Check TABLE's format (and, with --model, that it times every layer of that model)."""
    from solvers.latency_table import check_table, read_hardware_file

    with user_errors():
        if not str(table).endswith(".json"):
            fail(f"table: {table} is not a .json file")
        doc = read_hardware_file(str(table))
        inventory = _inventory(model, image_size) if model else None
        check_table(doc, inventory)
    layers = doc["latency_table"]
    options = sorted({o for v in layers.values() for o in v})
    typer.echo(
        f"ok: {doc['name']} ({doc['model']} at {doc['image_size']} px, "
        f"{doc['measured']['runtime']} {doc['measured']['runtime_version']}, "
        f"{doc['measured']['threads']} threads on {doc['measured']['host']}): "
        f"{len(layers)} layers x {', '.join(options)}"
    )


def _inventory(model: str, image_size: int | None) -> dict[str, Any]:
    from profiling.inventory import build_inventory
    from profiling.models import ModelSpec, build_model

    return build_inventory(build_model(ModelSpec(model, image_size=image_size))).to_json()


def register(app: typer.Typer) -> None:
    """Add the ``latency`` command group to ``app``."""
    latency_app.command("measure")(measure_cmd)
    latency_app.command("check")(check_cmd)
    app.add_typer(latency_app, name="latency")

"""``bitbudget export``: a plan as ONNX graphs with integer weights, run by ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from searchsvc.cli.common import (
    console,
    print_json,
    random_weights_note,
    read_json_plan,
    user_errors,
)

__all__ = ["register", "export_cmd"]


def _progress(stage: str, fraction: float) -> None:
    console.print(f"[dim]{fraction:4.0%}[/] {stage}", highlight=False)


def _table(manifest: dict[str, Any], out: Path) -> None:
    table = Table(title=f"bitbudget export -> {out}")
    for col in ("file", "bytes", "sha256"):
        table.add_column(col)
    for name, f in manifest["files"].items():
        table.add_row(name, f"{f['bytes']:,}", f["sha256"][:16])
    console.print(table)
    sizes = manifest["sizes"]
    console.print(
        f"plan predicted {sizes['plan_predicted_bytes']:,} B; integer initializers "
        f"{sizes['integer_initializer_bytes']:,} B; files {sizes['files_bytes']:,} B; "
        f"opset {manifest['opset']}"
    )
    random_weights_note(manifest["random_weights"])


def export_cmd(
    plan: Path = typer.Argument(..., help="plan JSON (solver plan, quant plan or service plan)"),
    model: str = typer.Option(
        ..., "--model", help="registered model name (see `bitbudget models`)"
    ),
    out: Path = typer.Option(..., "--out", help="output folder (new, empty or a previous export)"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help="official-format checkpoint"),
    image_size: int = typer.Option(None, "--image-size", help="input size in pixels"),
    as_json: bool = typer.Option(False, "--json", help="print the manifest as JSON"),
) -> None:
    """Export PLAN for MODEL as image_encoder.onnx + mask_decoder.onnx + manifest.json."""
    with user_errors():
        from profiling.export.outdir import check_out_dir

        check_out_dir(out)  # refuse before the model is built
        doc = read_json_plan(plan, f"plan {plan}")
        from profiling.export.bundle import export_plan

        manifest = export_plan(
            doc,
            model=model,
            checkpoint=checkpoint,
            image_size=image_size,
            out_dir=out,
            progress=None if as_json else _progress,
        )
    if as_json:
        print_json(manifest)
        return
    _table(manifest, out)


def register(app: typer.Typer) -> None:
    """Add ``export`` to the app."""
    app.command("export")(export_cmd)

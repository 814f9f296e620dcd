"""``bitbudget models`` and ``bitbudget inventory``."""

from __future__ import annotations

from collections import defaultdict

import typer
from rich.table import Table

from searchsvc.cli.common import (
    console,
    print_json,
    random_weights_note,
    resized_note,
    user_errors,
)

__all__ = ["register"]


def models_cmd() -> None:
    """List the registered model specs."""
    from profiling.models import list_specs
    from profiling.models.registry import ModelSpec

    table = Table(title="bitbudget models")
    for col in ("name", "family", "default image size", "image sizes", "description"):
        table.add_column(col)
    for info in list_specs():
        ModelSpec(info.name)  # validates the registry entry
        table.add_row(
            info.name,
            info.family,
            str(info.default_image_size),
            ", ".join(map(str, info.image_sizes)),
            info.description,
        )
    console.print(table)


def inventory_cmd(
    model: str = typer.Argument(..., help="registered model name (see `bitbudget models`)"),
    image_size: int = typer.Option(None, "--image-size", help="input size in pixels"),
    checkpoint: str = typer.Option(None, "--checkpoint", help="official-format checkpoint"),
    seed: int = typer.Option(0, help="seed for random weights"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Quantizable layers of MODEL: per-component table, or the full list with --json."""
    from profiling.inventory import build_inventory
    from profiling.models import ModelSpec, build_model

    with user_errors():
        spec = ModelSpec(model, image_size=image_size, checkpoint=checkpoint, seed=seed)
        inv = build_inventory(build_model(spec))
    if as_json:
        print_json(inv.to_json())
        return
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for layer in inv.layers:
        row = rows[layer.component]
        row[layer.kind] += 1
        row["params"] += layer.params
        row["macs"] += layer.macs
    kinds = ["linear", "conv2d", "conv_transpose2d", "matmul_qk", "matmul_sv"]
    table = Table(title=f"{inv.model} at {inv.image_size} px")
    for col in ["component", *kinds, "params", "GMACs"]:
        table.add_column(col, justify="right" if col != "component" else "left")
    total: dict[str, int] = defaultdict(int)
    for comp, row in rows.items():
        for key, val in row.items():
            total[key] += val
        table.add_row(
            comp, *[str(row[k]) for k in kinds], f"{row['params']:,}", f"{row['macs'] / 1e9:.3f}"
        )
    table.add_row(
        "total",
        *[str(total[k]) for k in kinds],
        f"{total['params']:,}",
        f"{total['macs'] / 1e9:.3f}",
        style="bold",
    )
    console.print(table)
    console.print(f"model parameters: {inv.total_params:,}; adjacent pairs: {len(inv.pairs)}")
    random_weights_note(inv.random_weights)
    resized_note(inv.resized_from)


def register(app: typer.Typer) -> None:
    """Add the commands to ``app``."""
    app.command("models")(models_cmd)
    app.command("inventory")(inventory_cmd)

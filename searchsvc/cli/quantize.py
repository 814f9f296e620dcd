"""``bitbudget quantize``: apply a uniform or solver plan and write the packed artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from searchsvc.cli.common import (
    console,
    fail,
    print_json,
    random_weights_note,
    read_json_plan,
    resized_note,
    user_errors,
)

__all__ = ["register", "quantize_cmd"]


def _read_plan(path: Path) -> dict[str, Any]:
    from profiling.errors import BadInput

    doc = read_json_plan(path, f"--plan {path}")
    if not isinstance(doc, dict):
        raise BadInput(f"--plan {path}: choices: expected a JSON object")
    return doc


def _options(base: Any, big: bool | None, agq: bool | None, vrc: bool | None) -> Any:
    from profiling.quant.plan import PlanOptions

    return PlanOptions(
        big=base.big if big is None else big,
        agq=base.agq if agq is None else agq,
        vrc=base.vrc if vrc is None else vrc,
    )


def _float_totals(module: Any) -> dict[str, int]:
    from solvers import sizes

    numel = sum(t.numel() for t in module.state_dict().values() if t.is_floating_point())
    return {
        "bf16_bytes": sizes.float_bytes(numel, "bfloat16"),
        "fp32_bytes": sizes.float_bytes(numel, "float32"),
    }


def _run(args: dict[str, Any]) -> dict[str, Any]:
    """Build, plan, calibrate if needed, quantize, pack; returns the figures to print."""
    from profiling.quant.spec import parse_candidate

    if (args["uniform"] is None) == (args["plan"] is None):
        fail("give exactly one of --uniform CANDIDATE or --plan PLAN.json")
    if args["uniform"] is not None:
        parse_candidate(args["uniform"])  # a bad id fails before torch is even imported
    doc = _read_plan(args["plan"]) if args["plan"] is not None else None

    from profiling.calibration import load_source, make_sets
    from profiling.models import ModelSpec, build_model
    from profiling.quant.apply import apply_plan, needs_calibration, report_of
    from profiling.quant.pack import predict_bytes, save_artifact
    from profiling.quant.plan import QuantPlan, plan_from_json, uniform_plan, validate_plan

    spec = ModelSpec(args["model"], image_size=args["image_size"], checkpoint=args["checkpoint"])
    loaded = build_model(spec)
    plan = uniform_plan(loaded.module, args["uniform"]) if doc is None else plan_from_json(doc)
    plan = QuantPlan(plan.specs, _options(plan.options, *args["methods"]))
    validate_plan(loaded.module, plan)
    calib = None
    if needs_calibration(plan) is not None:
        records = load_source("shipped")
        calib, _ = make_sets(records, n_calib=args["calib_images"], n_points=1, n_boxes=1)
    qmodel = apply_plan(loaded, plan, calib)
    report = report_of(qmodel)
    info = {"name": spec.name, "image_size": spec.size, "random_weights": loaded.random_weights}
    measured = save_artifact(qmodel, plan, args["out"], info | {"family": loaded.family})
    return {
        "predicted_bytes": predict_bytes(loaded.module, plan),
        "measured_bytes": measured,
        **_float_totals(loaded.module),
        "random_weights": loaded.random_weights,
        "resized_from": loaded.resized_from,
        "layers_quantized": len(plan.specs),
        "options": plan.options.to_dict(),
        "uncalibrated": report.uncalibrated,
        "sites_quantized": sum(
            1 for n, s in plan.specs.items() if n.endswith("_matmul") and s.a_bits < 16
        ),
        "agq_sites": len(report.agq),
        "big_sites": len(report.big),
        "big_flipped": sum(1 for r in report.big.values() if r.flipped_channels),
    }


def _table(res: dict[str, Any], out: Path) -> None:
    table = Table(title=f"bitbudget quantize -> {out}")
    for col in ("", "bytes", "vs BF16", "vs FP32"):
        table.add_column(col)
    for key in ("predicted_bytes", "measured_bytes"):
        b = res[key]
        table.add_row(
            key.split("_")[0],
            f"{b:,}",
            f"{res['bf16_bytes'] / b:.2f}x",
            f"{res['fp32_bytes'] / b:.2f}x",
        )
    table.add_row("BF16 model", f"{res['bf16_bytes']:,}", "1.00x", "")
    table.add_row("FP32 model", f"{res['fp32_bytes']:,}", "", "1.00x")
    console.print(table)
    console.print(f"layers quantized: {res['layers_quantized']}; methods: {res['options']}")
    console.print(
        f"attention sites quantized: {res['sites_quantized']}; AGQ (log2) sites: "
        f"{res['agq_sites']}; BIG examined {res['big_sites']}, flipped {res['big_flipped']}"
    )
    random_weights_note(res["random_weights"])
    resized_note(res["resized_from"])


def quantize_cmd(
    model: str = typer.Argument(..., help="registered model name (see `bitbudget models`)"),
    uniform: str = typer.Option(None, "--uniform", help="one candidate for all layers, e.g. w4a8"),
    plan: Path = typer.Option(None, "--plan", help="plan JSON ({'choices': {layer: 'w4a8'}})"),
    out: Path = typer.Option(..., "--out", help="artifact path (.safetensors)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
    image_size: int = typer.Option(None, "--image-size", help="input size in pixels"),
    checkpoint: str = typer.Option(None, "--checkpoint", help="official-format checkpoint"),
    big: bool = typer.Option(None, "--big/--no-big", help="PTQ4SAM bimodal integration"),
    agq: bool = typer.Option(None, "--agq/--no-agq", help="PTQ4SAM log2 softmax quantizer"),
    vrc: bool = typer.Option(None, "--vrc/--no-vrc", help="Q-SAM2 ridge re-fit of weights"),
    calib_images: int = typer.Option(4, "--calib-images", help="calibration photographs"),
) -> None:
    """Quantize MODEL by a uniform candidate or a plan and write the packed artifact."""
    args = dict(locals())
    args["methods"] = (big, agq, vrc)
    with user_errors():
        res = _run(args)
    if as_json:
        keys = ["predicted_bytes", "measured_bytes", "bf16_bytes", "fp32_bytes", "random_weights"]
        keys += ["sites_quantized", "agq_sites", "big_sites", "big_flipped"]
        print_json({k: res[k] for k in keys} | {"out": str(out)})
        return
    _table(res, out)


def register(app: typer.Typer) -> None:
    """Add ``quantize`` to the app."""
    app.command("quantize")(quantize_cmd)

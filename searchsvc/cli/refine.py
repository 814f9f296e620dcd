"""``bitbudget refine``: Q-SAM2 LSC refinement of a plan, offline from a JSON file or on the
service database by plan id (the same job ``POST /v1/plans/{id}/refine`` queues)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from searchsvc.bounds import MAX_ID
from searchsvc.cli.common import (
    console,
    fail,
    print_json,
    random_weights_note,
    read_json_plan,
    user_errors,
)

__all__ = ["register", "refine_cmd"]

_METRICS = ("iou", "iou_min", "kl", "iou_head_mae")


def _read_plan(path: Path) -> dict[str, Any]:
    from profiling.errors import BadInput

    doc = read_json_plan(path, str(path))
    if not isinstance(doc, dict) or not isinstance(doc.get("choices"), dict):
        raise BadInput(f"{path}: choices: expected a plan object {{'choices': {{layer: 'w4a8'}}}}")
    return doc


def _model_of(doc: dict[str, Any], model: str | None, image_size: int | None) -> Any:
    from profiling.errors import BadInput
    from profiling.models import ModelSpec

    info: dict[str, Any] = doc["model"] if isinstance(doc.get("model"), dict) else {}
    name = model or info.get("name")
    if not name:
        raise BadInput("--model: the plan names no model; give --model NAME")
    return ModelSpec(name, image_size=image_size or info.get("image_size"))


def _offline(plan_path: Path, args: dict[str, Any]) -> dict[str, Any]:
    doc = _read_plan(plan_path)
    spec = _model_of(doc, args["model"], args["image_size"])
    from profiling.calibration import load_source, make_sets
    from profiling.models import build_model
    from profiling.quant.lsc import LscConfig, refine, save_clipping
    from profiling.quant.pack import save_artifact
    from profiling.quant.plan import plan_from_json, validate_plan

    cfg = LscConfig(steps=args["steps"], lr=args["lr"])
    loaded = build_model(spec)
    plan = plan_from_json(doc)
    validate_plan(loaded.module, plan)
    calib, held = make_sets(
        load_source(args["source"]), holdout=args["holdout"], n_calib=args["images"]
    )
    out = args["out"] or plan_path.with_suffix(".clipping.safetensors")
    work = args["work_dir"] or Path(f"{out}.ckpt")
    with console.status("refining") as status:
        res = refine(loaded, plan, calib, held, cfg, work, progress=lambda f, m: status.update(m))
    save_clipping(res.clipping, out)
    report = dict(res.doc) | {"clipping": str(out)}
    if args["artifact"] is not None:
        info = {"name": spec.name, "image_size": spec.size, "random_weights": loaded.random_weights}
        report["artifact"] = {
            "path": str(args["artifact"]),
            "measured_bytes": save_artifact(
                res.model, plan, args["artifact"], info, refinement=res.doc
            ),
        }
    return report


def _service(plan_id: int, args: dict[str, Any]) -> dict[str, Any]:
    from searchsvc.cli.service import _settings, _wait
    from searchsvc.db import migrate
    from searchsvc.db.session import session_scope
    from searchsvc.jobs.dispatch import configure_dispatcher, shutdown_dispatcher
    from searchsvc.plans.refine import plan_refinement, request_refinement

    settings = _settings()
    migrate.upgrade(settings.database)
    configure_dispatcher(settings)
    try:
        with session_scope(settings.database) as session:
            row, job = request_refinement(
                session,
                settings=settings,
                plan_id=plan_id,
                steps=args["steps"],
                lr=args["lr"],
                images=args["images_given"],
            )
            session.flush()
            job_id = None if (row.doc or {}).get("status") == "done" or job is None else job.id
        if job_id is not None:
            finished = _wait(settings, job_id)
            if finished.state != "succeeded":
                fail(f"job {job_id} {finished.state}: {finished.error}")
        with session_scope(settings.database, write=False) as session:
            out = plan_refinement(session, plan_id=plan_id)
    finally:
        shutdown_dispatcher(settings)
    assert out is not None
    return out | {"plan_id": plan_id}


def _table(report: dict[str, Any]) -> None:
    before, after = report.get("before") or {}, report.get("after") or {}
    table = Table(title=f"LSC refinement, {report.get('steps')} steps: held-out fidelity vs float")
    for col in ("metric", "post-training", "refined"):
        table.add_column(col)
    for key in _METRICS:
        b, a = before.get(key), after.get(key)
        table.add_row(key, "-" if b is None else f"{b:.6g}", "-" if a is None else f"{a:.6g}")
    console.print(table)
    sps = report.get("seconds_per_step")
    if sps is not None:
        console.print(f"{sps:.2f} s per step", highlight=False)
    if report.get("clipping"):
        console.print(f"learned clipping: {report['clipping']}", highlight=False)
    random_weights_note(bool(report.get("random_weights", True)))


def refine_cmd(
    plan: Path = typer.Argument(None, help="plan JSON ({'choices': {layer: 'w3a8'}})"),
    plan_id: int = typer.Option(None, "--plan-id", help="a plan in the service database"),
    steps: int = typer.Option(..., "--steps", help="LSC steps (one calibration image each)"),
    model: str = typer.Option(None, "--model", help="model name (when the plan names none)"),
    image_size: int = typer.Option(None, "--image-size", help="input size in pixels"),
    lr: float = typer.Option(None, "--lr", help="learning rate of the clipping factors"),
    images: int = typer.Option(None, "--images", help="calibration photographs (default 8)"),
    holdout: int = typer.Option(4, "--holdout", help="held-out photographs (offline mode)"),
    source: str = typer.Option("shipped", "--source", help="shipped, a folder or a COCO .json"),
    out: Path = typer.Option(None, "--out", help="learned-clipping sidecar (.safetensors)"),
    artifact: Path = typer.Option(None, "--artifact", help="also pack the refined model here"),
    work_dir: Path = typer.Option(None, "--work-dir", help="checkpoints (resume after a kill)"),
    as_json: bool = typer.Option(False, "--json", help="print the refinement report as JSON"),
) -> None:
    """Refine PLAN.json (or --plan-id ID) with Q-SAM2 Learnable Statistical Clipping."""
    if (plan is None) == (plan_id is None):
        fail("give exactly one of PLAN.json or --plan-id ID")
    if plan_id is not None and not 1 <= plan_id <= MAX_ID:
        fail(f"--plan-id: plan {plan_id} does not exist (ids run from 1 to {MAX_ID})")
    if steps < 1:
        fail(f"--steps: expected a positive integer, got {steps}")
    if lr is not None and not 0 < lr <= 1:
        fail(f"--lr: expected 0 < lr <= 1, got {lr}")
    if images is not None and images < 1:
        fail(f"--images: expected a positive integer, got {images}")
    args = dict(locals())
    args["images_given"] = images
    args["images"] = images or 8
    args["lr"] = 0.02 if lr is None else lr
    with user_errors():
        report = _offline(plan, args) if plan is not None else _service(plan_id, args)
    if as_json:
        print_json(report)
        return
    _table(report)


def register(app: typer.Typer) -> None:
    """Add ``refine`` to the app."""
    app.command("refine")(refine_cmd)

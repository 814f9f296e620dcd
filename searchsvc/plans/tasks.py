"""``plans.solve``: solve a plan once the profile it waited on is ready (idempotent);
``plans.refine``: LSC-refine a solved plan (resumable from its checkpoint)."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.orm import Session

from searchsvc.db.tables import ArtifactRow, JobRow
from searchsvc.errors import InfeasibleBudget, NotFound
from searchsvc.jobs.context import JobCancelled, JobContext
from searchsvc.jobs.registry import register_task
from searchsvc.plans import repository
from searchsvc.plans.refine import REFINE, refine_inputs, refinement_paths
from searchsvc.plans.service import SOLVE, record_solution, solve_queued

__all__ = ["run_solve_job", "run_refine_job"]


def run_solve_job(ctx: JobContext) -> dict[str, Any]:
    """Solve the job's plan; an infeasible budget is stored on the plan and fails the job.

    The solve reads in one session and writes in another, so it never holds the database.
    """
    plan_id = int(ctx.params["plan_id"])
    solved, infeasible = None, None
    with ctx.session(write=False) as read:
        plan = repository.get(read, plan_id)
        if plan is None:
            raise NotFound(f"plan {plan_id} was deleted")
        ids = {"plan_id": plan_id, "profile_id": plan.profile_id}
        if plan.status != "pending":
            return ids
        ctx.progress(0.95, "solving")
        try:
            solved = solve_queued(read, settings=ctx.settings, plan=plan)
        except InfeasibleBudget as exc:
            infeasible = exc
    with ctx.session() as session:
        plan = repository.get(session, plan_id)
        if plan is not None and plan.status == "pending":
            error = str(infeasible) if infeasible else ""
            record_solution(session, settings=ctx.settings, plan=plan, solved=solved, error=error)
    if infeasible is not None:
        raise infeasible  # the job fails with the least achievable values; the plan says so
    return ids


def _on_fail(session: Session, job: JobRow, error: str) -> None:
    plan = repository.get(session, int(job.params["plan_id"]))
    if plan is not None and plan.status == "pending":
        plan.status = "cancelled" if error == "cancelled" else "failed"
        plan.message = error
        if plan.validate and plan.validation_status == "queued":  # it never got to run
            plan.validation_status = "cancelled" if error == "cancelled" else "error"


register_task(SOLVE, run_solve_job, _on_fail)


def _set_doc(session: Session, artifact_id: int, **changes: Any) -> ArtifactRow | None:
    row = session.get(ArtifactRow, artifact_id)
    if row is not None:
        row.doc = dict(row.doc or {}) | changes  # a new dict, so the JSON column is written
    return row


def run_refine_job(ctx: JobContext) -> dict[str, Any]:
    """LSC-refine the job's plan; checkpointed, so a re-queued job resumes where it stopped."""
    import dataclasses

    from profiling.models import build_model
    from profiling.quant.lsc import LscConfig, Stopped, refine, save_clipping
    from profiling.quant.pack import save_artifact
    from profiling.quant.plan import plan_from_json

    plan_id, artifact_id = int(ctx.params["plan_id"]), int(ctx.params["artifact_id"])
    ids = {"plan_id": plan_id, "artifact_id": artifact_id}
    with ctx.session() as session:
        row = session.get(ArtifactRow, artifact_id)
        plan = repository.get(session, plan_id)
        if row is None or plan is None:
            raise NotFound(f"plan {plan_id} or its refinement {artifact_id} was deleted")
        state = dict(row.doc or {})
        if state.get("status") == "done":
            return ids
        inputs = refine_inputs(session, settings=ctx.settings, plan=plan)
        key = str(row.key)
        _set_doc(session, artifact_id, status="running", error=None)
    cfg = LscConfig(**state["config"])
    data = inputs["data"]
    if state.get("images"):
        data = dataclasses.replace(data, images=int(state["images"]))
    sidecar, packed, work = refinement_paths(ctx.settings, key)

    def progress(fraction: float, message: str) -> None:
        ctx.progress(min(fraction, 0.99), message)

    ctx.progress(0.0, "building the model and the calibration / held-out split")
    loaded = build_model(inputs["spec"])
    calib, heldout = data.sets()
    qplan = plan_from_json(inputs["plan"])
    try:
        res = refine(
            loaded, qplan, calib, heldout, cfg, work, progress=progress, should_stop=ctx.should_stop
        )
    except Stopped:
        ctx.raise_if_stopped()
        raise JobCancelled("refinement stopped") from None
    clip_bytes = save_clipping(res.clipping, sidecar)
    info = {
        "name": loaded.spec.name,
        "image_size": loaded.spec.size,
        "weights_hash": loaded.weights_hash,
        "random_weights": loaded.random_weights,
    }
    tmp = packed.with_name(f".{packed.name}.tmp")
    measured = save_artifact(res.model, qplan, tmp, model_info=info, refinement=res.doc)
    tmp.replace(packed)
    digest = hashlib.sha256(sidecar.read_bytes()).hexdigest()
    with ctx.session() as session:
        row = _set_doc(
            session,
            artifact_id,
            status="done",
            report=res.doc,
            artifact={"file": packed.name, "measured_bytes": measured},
        )
        if row is None:
            raise NotFound(f"refinement {artifact_id} was deleted")
        row.path, row.size_bytes, row.sha256 = str(sidecar), clip_bytes, digest
    return ids | {"steps": cfg.steps}


def _on_refine_fail(session: Session, job: JobRow, error: str) -> None:
    row = session.get(ArtifactRow, int(job.params["artifact_id"]))
    if row is not None and (row.doc or {}).get("status") != "done":
        status = "cancelled" if error == "cancelled" else "failed"
        _set_doc(session, row.id, status=status, error=error)


register_task(REFINE, run_refine_job, _on_refine_fail)

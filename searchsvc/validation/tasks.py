"""``plans.validate``: apply a plan, measure it on held-out images (and on clips when video
fidelity was asked for), pack it (idempotent)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from searchsvc.db.tables import JobRow
from searchsvc.jobs.context import JobContext
from searchsvc.jobs.registry import register_task
from searchsvc.validation import service
from searchsvc.validation.service import VALIDATE

__all__ = ["run_validate_job"]


def run_validate_job(ctx: JobContext) -> dict[str, Any]:
    """Validate the job's plan; a finished validation is returned as is."""
    from profiling.validate import run_validation

    validation_id = int(ctx.params["validation_id"])
    ids = {"plan_id": int(ctx.params["plan_id"]), "validation_id": validation_id}
    with ctx.session() as session:
        started = service.start(session, validation_id=validation_id)
        if started is None:
            return ids
        row, plan = started
        request = service.request_of(row)
        inputs = service.validation_inputs(
            session, settings=ctx.settings, plan=plan, request=request
        )
    path = service.artifact_path(ctx.settings, ids["plan_id"])

    def progress(fraction: float, message: str) -> None:
        ctx.progress(fraction, message)
        ctx.raise_if_stopped()

    ctx.progress(0.01, "building the model and the held-out split")
    doc = run_validation(
        inputs["plan"],
        inputs["spec"],
        path,
        inputs["data"],
        budget_bytes=inputs["budget_bytes"],
        progress=progress,
        video=inputs["video"],
        clipping=inputs["clipping"],
        runtime=inputs["runtime"],
        export_dir=inputs["export_dir"],
        exported=inputs["exported"],
    )
    ctx.raise_if_stopped()
    with ctx.session() as session:
        art = service.store_result(
            session, validation_id=validation_id, doc=doc, path=path, job_id=ctx.job_id
        )
        return ids | {"artifact_id": art.id, "passed": doc["passed"]}


def _on_fail(session: Session, job: JobRow, error: str) -> None:
    service.mark_error(session, validation_id=int(job.params["validation_id"]), error=error)


register_task(VALIDATE, run_validate_job, _on_fail)

"""Extension point for plan validation (issue 7): ``request_validation`` queues ``plans.validate``
once the validation work registers that job kind; until then a requested validation is recorded
as ``unavailable`` and the plan is served without one."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from searchsvc.db.tables import JobRow, PlanRow, ValidationRow
from searchsvc.jobs.registry import load_tasks
from searchsvc.jobs.service import create_job
from searchsvc.settings import Settings

__all__ = ["VALIDATE", "request_validation"]

VALIDATE = "plans.validate"


def request_validation(
    session: Session, *, settings: Settings, plan: PlanRow, request: dict[str, Any] | None = None
) -> JobRow | None:
    """Queue the validation of a solved plan when asked for and available.

    ``request``: the validation options (``{"video": {...}}``), stored with the validation; by
    default those the plan was created with (kept in its solve job's params).
    """
    if not plan.validate:
        plan.validation_status = "not_requested"
        return None
    if plan.status not in ("optimal", "feasible"):
        plan.validation_status = "skipped"
        return None
    if VALIDATE not in load_tasks():
        plan.validation_status = "unavailable"
        return None
    if request is None and plan.job_id is not None:
        solve_job = session.get(JobRow, plan.job_id)
        request = (solve_job.params or {}).get("validate") if solve_job is not None else None
    metrics = {"request": request} if request else {}
    validation = ValidationRow(plan_id=plan.id, status="pending", metrics=metrics)
    session.add(validation)
    session.flush()
    job = create_job(
        session,
        settings=settings,
        kind=VALIDATE,
        params={"plan_id": plan.id, "validation_id": validation.id},
    )
    validation.job_id = job.id
    plan.validation_status = "queued"
    return job

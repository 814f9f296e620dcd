"""``plans.solve``: solve a plan once the profile it waited on is ready (idempotent)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from searchsvc.db.tables import JobRow
from searchsvc.errors import InfeasibleBudget, NotFound
from searchsvc.jobs.context import JobContext
from searchsvc.jobs.registry import register_task
from searchsvc.plans import repository
from searchsvc.plans.service import SOLVE, record_solution, solve_queued

__all__ = ["run_solve_job"]


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


register_task(SOLVE, run_solve_job, _on_fail)

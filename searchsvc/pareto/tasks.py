"""``pareto.build``: build and store a front once the profile it waited on is ready."""

from __future__ import annotations

from typing import Any

from searchsvc.errors import BadInput, NotFound
from searchsvc.jobs.context import JobContext
from searchsvc.jobs.registry import register_task
from searchsvc.pareto.service import BUILD, build_front
from searchsvc.profiles import repository as profiles

__all__ = ["run_pareto_job"]


def run_pareto_job(ctx: JobContext) -> dict[str, Any]:
    """Build the front (idempotent: an existing artifact is returned as is)."""
    profile_id = int(ctx.params["profile_id"])
    ctx.progress(0.95, "sweeping budgets")
    with ctx.session() as session:
        profile = profiles.get(session, profile_id)
        if profile is None:
            raise NotFound(f"profile {profile_id} was deleted")
        if profile.status != "ready":
            raise BadInput(f"profile {profile_id} is {profile.status}, not ready")
        artifact = build_front(
            session,
            settings=ctx.settings,
            profile=profile,
            resource=str(ctx.params["resource"]),
            hardware=ctx.params.get("hardware"),
        )
        session.flush()
        return {"artifact_id": artifact.id, "profile_id": profile_id}


register_task(BUILD, run_pareto_job)

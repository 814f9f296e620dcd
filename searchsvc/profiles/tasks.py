"""``profiling.run_profile``: compute a profile (resumable: finished units are checkpointed under
the data dir and never recomputed when a re-queued job starts again)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from searchsvc.catalog import repository as models
from searchsvc.db.tables import JobRow
from searchsvc.errors import NotFound
from searchsvc.jobs.context import JobCancelled, JobContext
from searchsvc.jobs.registry import register_task
from searchsvc.profiles import repository
from searchsvc.profiles.service import RUN_PROFILE, store_result

__all__ = ["run_profile_job"]


def _request(ctx: JobContext) -> tuple[Any, int] | None:
    """The profiler request of this job's profile; None when it is already ready."""
    from profiling.sensitivity import ProfileRequest
    from searchsvc.catalog.service import spec_of

    with ctx.session() as session:
        profile = repository.get(session, int(ctx.params["profile_id"]))
        if profile is None:
            raise NotFound(f"profile {ctx.params['profile_id']} was deleted")
        if profile.status == "ready":
            return None
        model = models.get(session, profile.model_id)
        if model is None:
            raise NotFound(f"model {profile.model_id} was deleted")
        request = ProfileRequest(
            model=spec_of(model),
            metric=profile.metric,
            candidates=tuple(profile.candidates),
            images=profile.images,
            source=profile.source,
            seed=profile.seed,
        )
        return request, profile.id


def run_profile_job(ctx: JobContext) -> dict[str, Any]:
    """Run the profiler with this job's progress and stop hooks; store the result."""
    from profiling.sensitivity import Cancelled, run_profile

    found = _request(ctx)
    profile_id = int(ctx.params["profile_id"])
    if found is None:
        return {"profile_id": profile_id}
    request, _ = found
    ctx.progress(0.0, "building the model and calibration data")
    try:
        result = run_profile(
            request, ctx.settings.profile_dir, progress=ctx.progress, should_stop=ctx.should_stop
        )
    except Cancelled:
        ctx.raise_if_stopped()
        raise JobCancelled("profiling stopped") from None
    with ctx.session() as session:
        profile = repository.get(session, profile_id)
        if profile is None:
            raise NotFound(f"profile {profile_id} was deleted")
        store_result(session, profile=profile, doc=result.to_json())
    return {"profile_id": profile_id}


def _on_fail(session: Session, job: JobRow, error: str) -> None:
    profile = repository.get(session, int(job.params["profile_id"]))
    if profile is not None and profile.status != "ready":
        profile.status = "cancelled" if error == "cancelled" else "failed"
        profile.error = error


register_task(RUN_PROFILE, run_profile_job, _on_fail)

"""``profiling.run_profile``: compute a profile (resumable: finished units are checkpointed under
the data dir and never recomputed when a re-queued job starts again)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from searchsvc.catalog import repository as models
from searchsvc.db.tables import JobRow, ProfileRow
from searchsvc.errors import NotFound
from searchsvc.jobs.context import JobCancelled, JobContext
from searchsvc.jobs.registry import register_task
from searchsvc.profiles import repository
from searchsvc.profiles.service import RUN_PROFILE, store_result

__all__ = ["run_profile_job", "request_of"]


def request_of(session: Session, profile: ProfileRow) -> Any:
    """The profiler request of a profile row."""
    from profiling.sensitivity import ProfileRequest
    from searchsvc.catalog.service import spec_of

    model = models.get(session, profile.model_id)
    if model is None:
        raise NotFound(f"model {profile.model_id} was deleted")
    return ProfileRequest(
        model=spec_of(model),
        metric=profile.metric,
        candidates=tuple(profile.candidates),
        images=profile.images,
        source=profile.source,
        seed=profile.seed,
        options=dict(profile.options or {}),
    )


def _request(ctx: JobContext) -> tuple[Any, str] | None:
    """The profiler request and key of this job's profile; None when it is already ready.
    (The key is ``request.key(weights_hash)``; ``_weights`` gives the hash.)"""
    with ctx.session() as session:
        profile = repository.get(session, int(ctx.params["profile_id"]))
        if profile is None:
            raise NotFound(f"profile {ctx.params['profile_id']} was deleted")
        if profile.status == "ready":
            return None
        return request_of(session, profile), profile.key


def _weights(ctx: JobContext, key: str) -> str:
    """The weights hash of the registered model of this job's profile (keyed ``key``)."""
    with ctx.session() as session:
        profile = repository.get(session, int(ctx.params["profile_id"]))
        model = models.get(session, profile.model_id) if profile is not None else None
        if profile is None or model is None or profile.key != key:
            raise NotFound(f"profile {ctx.params['profile_id']} or its model was deleted")
        return str(model.weights_hash)


def _fanout(ctx: JobContext, checkpoint: str | None) -> Any:
    """The Celery fan-out, after publishing the profile's inputs to the shared store."""
    from profiling.sensitivity.units import process_name
    from searchsvc.profiles.fanout import CeleryFanOut
    from searchsvc.profiles.inputs import publish_inputs
    from searchsvc.shared_store import open_store

    def make(pctx: Any, _: Any, key: str) -> CeleryFanOut:
        publish_inputs(open_store(ctx.settings.store_url), checkpoint=checkpoint, ctx=pctx)
        return CeleryFanOut(ctx.settings, ctx.job_id, key, process_name())

    return make


def run_profile_job(ctx: JobContext) -> dict[str, Any]:
    """Run the profiler with this job's progress and stop hooks; store the result. Units go to
    the Celery workers (with a broker) or to the local process pool (embedded)."""
    from profiling.sensitivity import Cancelled, run_profile
    from profiling.video.hierarchical import run_hierarchical_profile, video_calibration
    from searchsvc.profiles.unit_store import DbUnitStore

    found = _request(ctx)
    profile_id = int(ctx.params["profile_id"])
    if found is None:
        return {"profile_id": profile_id}
    request, key = found
    settings = ctx.settings
    ctx.progress(0.0, "building the model and calibration data")
    how: dict[str, Any] = {"processes": settings.profile_pool_processes}
    if not settings.embedded:
        how = {"fanout": _fanout(ctx, request.model.checkpoint)}

    def run_image(req: Any, progress: Any, expect: str, local: bool = False) -> Any:
        return run_profile(
            req,
            settings.profile_dir,
            progress=progress,
            should_stop=ctx.should_stop,
            store=DbUnitStore(settings.database, expect),
            threads=settings.profile_threads,
            expect_key=expect,
            **({"processes": settings.profile_pool_processes} if local else how),
        )

    try:
        if video_calibration(request) is None:
            result = run_image(request, ctx.progress, key)
        else:  # the image part keys (and shares) its units like the image-only profile; it
            # runs on this worker's process pool: Celery unit tasks find their profile by key
            weights = _weights(ctx, key)
            result = run_hierarchical_profile(
                request,
                settings.profile_dir,
                lambda req, progress: run_image(req, progress, req.key(weights), local=True),
                ctx.progress,
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


def _units(session: Session, job: JobRow) -> dict[str, Any] | None:
    """Units done / total of the job's profile, per worker, and the rate since the job began."""
    from searchsvc.profiles.units import summary

    profile = repository.get(session, int((job.params or {}).get("profile_id", 0)))
    if profile is None:
        return None
    return summary(session, profile.key, job.started_at)


register_task(RUN_PROFILE, run_profile_job, _on_fail, _units)

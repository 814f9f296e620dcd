"""Profiles: one per content key (the same request never profiles twice), computed by a job."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from searchsvc.catalog.service import spec_of
from searchsvc.db.base import utcnow
from searchsvc.db.tables import JobRow, ModelRow, ProfileRow
from searchsvc.errors import BadInput, NotFound
from searchsvc.jobs import repository as jobs_repository
from searchsvc.jobs.service import create_job, is_active
from searchsvc.profiles import repository
from searchsvc.profiles.schemas import ProfileOut
from searchsvc.settings import Settings

__all__ = [
    "RUN_PROFILE",
    "profile_request",
    "find_profile",
    "request_profile",
    "get_profile",
    "profile_out",
    "store_result",
    "known_metrics",
    "attention_request",
]

RUN_PROFILE = "profiling.run_profile"


def known_metrics() -> tuple[str, ...]:
    """The profiler's metrics."""
    from profiling.sensitivity import METRICS

    return tuple(METRICS)


def profile_request(
    settings: Settings,
    model: ModelRow,
    metric: str | None,
    candidates: list[str] | None,
    images: int | None,
    video: dict[str, Any] | None = None,
    attention: bool = False,
    attention_options: list[str] | None = None,
) -> Any:
    """The profiler's ``ProfileRequest`` for a registered model (server defaults filled in);
    ``video`` (``{"clips", "frames"}``) asks for the hierarchical profile (SAM2 only);
    ``attention`` adds the attention matmul sites (their options: ``attention_options``)."""
    from profiling.quant.spec import parse_candidate
    from profiling.sensitivity import ProfileRequest

    wanted = tuple(candidates or settings.default_candidates)
    for candidate in wanted:
        try:
            parse_candidate(candidate)
        except (BadInput, ValueError) as exc:
            raise BadInput(f"candidate {candidate!r}: {exc} (ids look like w8a8, w4a16)") from None
    request = ProfileRequest(
        model=spec_of(model),
        metric=metric or settings.default_metric,
        candidates=wanted,
        images=images or settings.default_images,
        source=settings.calibration_source,
        options=attention_request(attention, attention_options),
    )
    if video is None:
        return request
    from profiling.video.hierarchical import VideoCalibration, video_request

    return video_request(request, VideoCalibration(**video))


def attention_request(attention: bool, options: list[str] | None) -> dict[str, Any]:
    """The profile options for attention sites ({} without them: keys stay as before)."""
    from profiling.sensitivity.request import check_attention_options

    opts: dict[str, Any] = {"attention": True} if attention else {}
    if options is not None:
        opts["attention_options"] = list(options)
    check_attention_options(opts)
    return opts


def find_profile(session: Session, request: Any, model: ModelRow) -> ProfileRow | None:
    """The profile row for ``request`` on ``model`` (any status), by content key."""
    return repository.by_key(session, request.key(model.weights_hash))


def _job(session: Session, profile: ProfileRow) -> JobRow | None:
    return jobs_repository.get(session, profile.job_id) if profile.job_id else None


def request_profile(
    session: Session, *, settings: Settings, model: ModelRow, request: Any, direct: bool
) -> tuple[ProfileRow, JobRow | None]:
    """The profile for ``request`` and the job computing it (None when it is ready)."""
    key = request.key(model.weights_hash)
    profile = repository.by_key(session, key)
    if profile is None:
        profile = ProfileRow(
            key=key,
            model_id=model.id,
            metric=request.metric,
            candidates=list(request.candidates),
            images=request.images,
            source=request.source,
            seed=request.seed,
            options=dict(request.options) or None,
            status="pending",
            random_weights=model.random_weights,
        )
        try:
            with session.begin_nested():
                session.add(profile)
        except IntegrityError:  # requested concurrently: use the other request's row
            profile = repository.by_key(session, key)
            if profile is None:
                raise
    if profile.status == "ready":
        return profile, None
    job = _job(session, profile)
    if is_active(job):
        assert job is not None
        if direct and not job.params.get("direct"):
            job.params = {**job.params, "direct": True}
        return profile, job
    job = create_job(
        session,
        settings=settings,
        kind=RUN_PROFILE,
        params={"profile_id": profile.id, "direct": direct},
    )
    profile.status, profile.error, profile.job_id = "pending", None, job.id
    return profile, job


def get_profile(session: Session, *, profile_id: int) -> ProfileRow:
    """A profile row, or NotFound."""
    profile = repository.get(session, profile_id)
    if profile is None:
        raise NotFound(f"profile {profile_id} does not exist")
    return profile


def profile_out(profile: ProfileRow) -> ProfileOut:
    """The profile resource, with per-layer scores when ready."""
    skip = ("layers", "video")
    fields = {name: getattr(profile, name) for name in ProfileOut.model_fields if name not in skip}
    layers = {x.name: x.scores for x in profile.layers} if profile.status == "ready" else None
    return ProfileOut(**fields, layers=layers, video=(profile.options or {}).get("video"))


def layer_scores(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per-layer scores of a profile document: losses per candidate, or a metric's score."""
    scores: dict[str, dict[str, Any]] = {n: dict(v) for n, v in doc.get("losses", {}).items()}
    for name, value in doc.get("scores", {}).items():
        scores.setdefault(name, {})[doc["metric"]] = value
    return scores


def store_result(session: Session, *, profile: ProfileRow, doc: dict[str, Any]) -> None:
    """Record a finished profile: its document, per-layer scores and the profiler's counters."""
    profile.doc = doc
    profile.stats = dict(doc.get("stats", {}))
    profile.random_weights = bool(doc.get("random_weights", profile.random_weights))
    profile.status, profile.error, profile.finished_at = "ready", None, utcnow()
    repository.replace_layers(session, profile, layer_scores(doc))

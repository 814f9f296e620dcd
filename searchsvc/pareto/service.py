"""Pareto fronts of a model's profile (``solvers.pareto``).

Two fronts answer ``/v1/models/{id}/pareto``: the fast path (the Lagrangian sweep, milliseconds a
point, each point with the bound its prices prove) computed on the solver pool for every read
and kept only in the pool's memo, and the exact front (a ``cpsat`` / ``dp`` sweep), built by a
``pareto.build`` job on request and stored as an artifact. A read never writes.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from searchsvc.catalog import repository as models
from searchsvc.db.tables import ArtifactRow, JobRow, ModelRow, ProfileRow
from searchsvc.errors import BadInput, Conflict, NotFound
from searchsvc.jobs import repository as jobs
from searchsvc.jobs.service import create_job
from searchsvc.pareto import repository
from searchsvc.pareto.schemas import RESOURCES
from searchsvc.plans.service import check_hardware, submit_on_profile
from searchsvc.plans.solving import fast_front
from searchsvc.profiles import repository as profiles
from searchsvc.profiles.service import request_profile
from searchsvc.settings import Settings

__all__ = [
    "BUILD",
    "POINTS",
    "check_resource",
    "artifact_key",
    "front",
    "stored_front",
    "ready_profile",
    "fast_front_future",
    "active_build",
    "build_front",
    "request_exact",
]

BUILD = "pareto.build"
POINTS = 12


def check_resource(resource: str, hardware: str | None, session: Session | None = None) -> None:
    """Refuse an unknown resource, latency without hardware, and unknown hardware (given a
    session, a measured table stored in the database is known too)."""
    if resource not in RESOURCES:
        raise BadInput(f"unknown resource {resource!r}; known: {', '.join(RESOURCES)}")
    if resource == "latency_ms" and not hardware:
        raise BadInput("resource latency_ms needs ?hardware=…, e.g. nvidia_t4")
    check_hardware(hardware, session)


def artifact_key(profile: ProfileRow, resource: str, hardware: str | None) -> str:
    """Where an exact front is stored: one per profile, resource and hardware."""
    return f"pareto:{profile.key}:{resource}:{hardware or '-'}"


def front(problem: Any, resource: str, settings: Settings) -> dict[str, Any]:
    """The exact ``bitbudget.pareto/v1`` document of ``problem`` over ``resource``."""
    from solvers.pareto import pareto_front

    result = pareto_front(problem, resource, POINTS, time_limit=settings.solve_time_limit_s)
    return result.to_dict()


def stored_front(
    session: Session, *, profile: ProfileRow, resource: str, hardware: str | None
) -> ArtifactRow | None:
    """The exact front stored for this profile, resource and hardware, if any."""
    return repository.by_key(session, artifact_key(profile, resource, hardware))


def ready_profile(profile: ProfileRow | None, model: ModelRow) -> ProfileRow:
    """``profile`` when it is ready; else a 409 that says how to make it (a read cannot)."""
    if profile is not None and profile.status == "ready":
        return profile
    state = "no profile" if profile is None else f"profile {profile.id} is {profile.status}"
    raise Conflict(
        f"model {model.id} has {state} for this request; POST /v1/models/{model.id}/pareto "
        "(with a token) profiles it and builds the exact front, or POST /v1/plans does"
    )


def fast_front_future(
    session: Session,
    settings: Settings,
    *,
    profile: ProfileRow,
    resource: str,
    hardware: str | None,
) -> Future[Any]:
    """The fast-path front of a ready profile, computing (once per key) on the solver pool."""
    from searchsvc.hardware.service import resolve

    key = "front:" + artifact_key(profile, resource, hardware) + ":lagrangian"
    future, _ = submit_on_profile(
        session, settings, model_id=profile.model_id, profile_id=profile.id, key=key,
        fn=fast_front, args=(resource, resolve(session, hardware), POINTS),
    )  # fmt: skip
    return future


def active_build(
    session: Session, *, profile: ProfileRow, resource: str, hardware: str | None
) -> JobRow | None:
    """The queued or running ``pareto.build`` job of this front, if any."""
    wanted = {"profile_id": profile.id, "resource": resource, "hardware": hardware}
    for job in jobs.active_of_kind(session, BUILD):
        if {k: job.params.get(k) for k in wanted} == wanted:
            return job
    return None


def build_front(
    session: Session,
    *,
    settings: Settings,
    profile: ProfileRow,
    resource: str,
    hardware: str | None,
) -> ArtifactRow:
    """Compute and store the exact front of a ready profile (an existing one is returned)."""
    from profiling.sensitivity import Profile, problem_from_profile
    from searchsvc.hardware.service import resolve

    key = artifact_key(profile, resource, hardware)
    existing = repository.by_key(session, key)
    if existing is not None:
        return existing
    row = profiles.get_with_doc(session, profile.id)
    model = models.get_with_inventory(session, profile.model_id)
    if row is None or row.doc is None or model is None:
        raise NotFound(f"profile {profile.id} or its model is gone")
    try:
        hw = resolve(session, hardware)
        problem = problem_from_profile(Profile.from_json(row.doc), model.inventory, {}, hw)
        doc = front(problem, resource, settings) | {"hardware": hardware}
    except ValueError as exc:  # e.g. a resource the options do not carry
        raise BadInput(str(exc)) from None
    artifact = ArtifactRow(
        kind="pareto", key=key, model_id=model.id, profile_id=profile.id, doc=doc
    )
    try:
        with session.begin_nested():
            session.add(artifact)
    except IntegrityError:  # built concurrently
        winner = repository.by_key(session, key)
        if winner is None:
            raise
        return winner
    return artifact


def request_exact(
    session: Session,
    *,
    settings: Settings,
    model: ModelRow,
    request: Any,
    resource: str,
    hardware: str | None,
) -> tuple[ProfileRow, JobRow | None, ArtifactRow | None]:
    """The exact front when stored, else the job building it (one per front: a running one is
    returned, not doubled), after a profile job when the profile is not ready."""
    profile, profile_job = request_profile(
        session, settings=settings, model=model, request=request, direct=False
    )
    stored = stored_front(session, profile=profile, resource=resource, hardware=hardware)
    if profile_job is None and stored is not None:
        return profile, None, stored
    running = active_build(session, profile=profile, resource=resource, hardware=hardware)
    if running is not None:
        return profile, running, None
    params = {"profile_id": profile.id, "resource": resource, "hardware": hardware}
    job = create_job(session, settings=settings, kind=BUILD, params=params, parent=profile_job)
    return profile, job, None

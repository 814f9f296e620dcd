"""Pareto fronts of a model's profile (``solvers.pareto``), stored as artifacts by key."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from searchsvc.catalog import repository as models
from searchsvc.db.tables import ArtifactRow, JobRow, ModelRow, ProfileRow
from searchsvc.errors import BadInput, NotFound
from searchsvc.jobs.service import create_job
from searchsvc.pareto import repository
from searchsvc.pareto.schemas import RESOURCES
from searchsvc.plans.service import check_hardware
from searchsvc.profiles import repository as profiles
from searchsvc.profiles.service import request_profile
from searchsvc.settings import Settings

__all__ = [
    "BUILD",
    "check_resource",
    "artifact_key",
    "front",
    "stored_front",
    "build_front",
    "queue",
]

BUILD = "pareto.build"
POINTS = 12


def check_resource(resource: str, hardware: str | None) -> None:
    """Refuse an unknown resource, and latency without hardware."""
    if resource not in RESOURCES:
        raise BadInput(f"unknown resource {resource!r}; known: {', '.join(RESOURCES)}")
    if resource == "latency_ms" and not hardware:
        raise BadInput("resource latency_ms needs ?hardware=…, e.g. nvidia_t4")
    check_hardware(hardware)


def artifact_key(profile: ProfileRow, resource: str, hardware: str | None) -> str:
    """Where a front is stored: one per profile, resource and hardware."""
    return f"pareto:{profile.key}:{resource}:{hardware or '-'}"


def front(problem: Any, resource: str, settings: Settings) -> dict[str, Any]:
    """The ``bitbudget.pareto/v1`` document of ``problem`` over ``resource``."""
    from solvers.pareto import pareto_front

    result = pareto_front(problem, resource, POINTS, time_limit=settings.solve_time_limit_s)
    return result.to_dict()


def stored_front(
    session: Session, *, profile: ProfileRow, resource: str, hardware: str | None
) -> ArtifactRow | None:
    """The front already stored for this profile, resource and hardware."""
    return repository.by_key(session, artifact_key(profile, resource, hardware))


def build_front(
    session: Session,
    *,
    settings: Settings,
    profile: ProfileRow,
    resource: str,
    hardware: str | None,
) -> ArtifactRow:
    """The stored front of a ready profile (computed and stored on first use)."""
    from profiling.sensitivity import Profile, problem_from_profile

    key = artifact_key(profile, resource, hardware)
    existing = repository.by_key(session, key)
    if existing is not None:
        return existing
    row = profiles.get_with_doc(session, profile.id)
    model = models.get_with_inventory(session, profile.model_id)
    if row is None or row.doc is None or model is None:
        raise NotFound(f"profile {profile.id} or its model is gone")
    try:
        problem = problem_from_profile(Profile.from_json(row.doc), model.inventory, {}, hardware)
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


def queue(
    session: Session,
    *,
    settings: Settings,
    model: ModelRow,
    request: Any,
    resource: str,
    hardware: str | None,
) -> tuple[ProfileRow, JobRow]:
    """Profile first, then build the front (``pareto.build`` waits on the profile job)."""
    profile, profile_job = request_profile(
        session, settings=settings, model=model, request=request, direct=False
    )
    params = {"profile_id": profile.id, "resource": resource, "hardware": hardware}
    job = create_job(session, settings=settings, kind=BUILD, params=params, parent=profile_job)
    return profile, job

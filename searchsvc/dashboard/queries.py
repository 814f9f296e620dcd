"""Read-only queries of the dashboard. List pages select columns, never whole plan rows: a plan's
``doc`` holds one choice per layer, and only the plan page itself reads it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.orm import Session

from searchsvc.db.tables import JobRow, ModelRow, PlanRow, ProfileRow, ValidationRow

__all__ = [
    "SOLVED",
    "PLAN_COLUMNS",
    "models_page",
    "profile_states",
    "plan_counts",
    "solved_plan_summaries",
    "plans_page",
    "latest_validations",
    "profiles_of",
    "jobs_page",
]

SOLVED = ("optimal", "feasible")

# Everything a list or a chart shows of a plan (no ``doc``: that is every layer's choice).
PLAN_COLUMNS = (
    PlanRow.id,
    PlanRow.model_id,
    PlanRow.profile_id,
    PlanRow.status,
    PlanRow.method,
    PlanRow.solver,
    PlanRow.hardware,
    PlanRow.budget,
    PlanRow.objective,
    PlanRow.totals,
    PlanRow.validation_status,
    PlanRow.message,
    PlanRow.job_id,
    PlanRow.created_at,
)


def models_page(session: Session, *, limit: int, offset: int) -> tuple[Sequence[ModelRow], int]:
    """Registered models (oldest first, without their inventories) and the total count."""
    total = session.scalar(select(func.count()).select_from(ModelRow)) or 0
    stmt = select(ModelRow).order_by(ModelRow.id).limit(limit).offset(offset)
    return session.scalars(stmt).all(), total


def profile_states(session: Session, model_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per model: how many profiles are in each status."""
    if not model_ids:
        return {}
    stmt = (
        select(ProfileRow.model_id, ProfileRow.status, func.count())
        .where(ProfileRow.model_id.in_(model_ids))
        .group_by(ProfileRow.model_id, ProfileRow.status)
    )
    out: dict[int, dict[str, int]] = {}
    for model_id, status, count in session.execute(stmt):
        out.setdefault(model_id, {})[status] = int(count)
    return out


def plan_counts(session: Session, model_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """Per model: how many plans are in each status."""
    if not model_ids:
        return {}
    stmt = (
        select(PlanRow.model_id, PlanRow.status, func.count())
        .where(PlanRow.model_id.in_(model_ids))
        .group_by(PlanRow.model_id, PlanRow.status)
    )
    out: dict[int, dict[str, int]] = {}
    for model_id, status, count in session.execute(stmt):
        out.setdefault(model_id, {})[status] = int(count)
    return out


def solved_plan_summaries(
    session: Session, *, model_id: int, profile_id: int | None = None, limit: int = 300
) -> list[Row[Any]]:
    """The newest solved plans of a model (optionally of one profile), as column rows."""
    where = [PlanRow.model_id == model_id, PlanRow.status.in_(SOLVED)]
    if profile_id is not None:
        where.append(PlanRow.profile_id == profile_id)
    stmt = select(*PLAN_COLUMNS).where(*where).order_by(PlanRow.id.desc()).limit(limit)
    return list(session.execute(stmt).all())


def plans_page(
    session: Session, *, model_id: int, limit: int, offset: int
) -> tuple[list[Row[Any]], int]:
    """One page of a model's plans (newest first, column rows) and the total count."""
    where = PlanRow.model_id == model_id
    total = session.scalar(select(func.count()).select_from(PlanRow).where(where)) or 0
    stmt = select(*PLAN_COLUMNS).where(where).order_by(PlanRow.id.desc())
    return list(session.execute(stmt.limit(limit).offset(offset)).all()), total


def latest_validations(session: Session, plan_ids: Sequence[int]) -> dict[int, ValidationRow]:
    """The newest validation of each of ``plan_ids``."""
    if not plan_ids:
        return {}
    newest = (
        select(func.max(ValidationRow.id))
        .where(ValidationRow.plan_id.in_(plan_ids))
        .group_by(ValidationRow.plan_id)
    )
    rows = session.scalars(select(ValidationRow).where(ValidationRow.id.in_(newest)))
    return {row.plan_id: row for row in rows}


def profiles_of(session: Session, model_id: int, limit: int = 50) -> Sequence[ProfileRow]:
    """A model's profiles, newest first (without their documents)."""
    stmt = (
        select(ProfileRow)
        .where(ProfileRow.model_id == model_id)
        .order_by(ProfileRow.id.desc())
        .limit(limit)
    )
    return session.scalars(stmt).all()


def jobs_page(
    session: Session, *, state: str | None, limit: int, offset: int
) -> tuple[Sequence[JobRow], int]:
    """Jobs, newest first, optionally in one state, and the total count."""
    where = [] if state is None else [JobRow.state == state]
    total = session.scalar(select(func.count()).select_from(JobRow).where(*where)) or 0
    stmt = select(JobRow).where(*where).order_by(JobRow.id.desc()).limit(limit).offset(offset)
    return session.scalars(stmt).all(), total

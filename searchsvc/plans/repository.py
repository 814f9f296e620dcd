"""The only queries on ``plans`` and ``validations``."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from searchsvc.db.tables import PlanRow

__all__ = ["get", "solved_by_request_key", "page"]

SOLVED = ("optimal", "feasible")


def get(session: Session, plan_id: int) -> PlanRow | None:
    """A plan row."""
    return session.get(PlanRow, plan_id)


def solved_by_request_key(session: Session, request_key: str) -> PlanRow | None:
    """An earlier solved plan for exactly the same request."""
    stmt = select(PlanRow).where(PlanRow.request_key == request_key, PlanRow.status.in_(SOLVED))
    return session.scalars(stmt.order_by(PlanRow.id)).first()


def page(
    session: Session, *, model_id: int | None, limit: int, offset: int
) -> tuple[Sequence[PlanRow], int]:
    """Plans (newest first), optionally of one model, and the total count."""
    where = [] if model_id is None else [PlanRow.model_id == model_id]
    total = session.scalar(select(func.count()).select_from(PlanRow).where(*where)) or 0
    stmt = select(PlanRow).where(*where).order_by(PlanRow.id.desc()).limit(limit).offset(offset)
    return session.scalars(stmt).all(), total

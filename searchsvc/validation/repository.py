"""The only queries on ``validations`` and on the packed artifacts of plans."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from searchsvc.db.tables import ArtifactRow, ValidationRow

__all__ = ["get", "latest_for_plan", "artifact_by_key"]


def get(session: Session, validation_id: int) -> ValidationRow | None:
    """A validation row."""
    return session.get(ValidationRow, validation_id)


def latest_for_plan(session: Session, plan_id: int) -> ValidationRow | None:
    """The newest validation of a plan."""
    stmt = select(ValidationRow).where(ValidationRow.plan_id == plan_id)
    return session.scalars(stmt.order_by(ValidationRow.id.desc())).first()


def artifact_by_key(session: Session, key: str) -> ArtifactRow | None:
    """The artifact row stored under ``key``."""
    return session.scalars(select(ArtifactRow).where(ArtifactRow.key == key)).first()

"""The only queries on ``artifacts``."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from searchsvc.db.tables import ArtifactRow

__all__ = ["by_key", "get"]


def by_key(session: Session, key: str) -> ArtifactRow | None:
    """The artifact stored under ``key``."""
    return session.scalars(select(ArtifactRow).where(ArtifactRow.key == key)).first()


def get(session: Session, artifact_id: int) -> ArtifactRow | None:
    """An artifact row."""
    return session.get(ArtifactRow, artifact_id)

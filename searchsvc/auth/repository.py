"""The only queries on ``api_tokens``."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from searchsvc.db.tables import ApiTokenRow

__all__ = ["add", "by_hash", "count_active"]


def add(session: Session, name: str, token_hash: str) -> ApiTokenRow:
    """Store a token hash."""
    row = ApiTokenRow(name=name, token_hash=token_hash)
    session.add(row)
    session.flush()
    return row


def by_hash(session: Session, token_hash: str) -> ApiTokenRow | None:
    """The active token with this hash."""
    stmt = select(ApiTokenRow).where(
        ApiTokenRow.token_hash == token_hash, ApiTokenRow.revoked_at.is_(None)
    )
    return session.scalars(stmt).first()


def count_active(session: Session) -> int:
    """How many tokens are not revoked."""
    stmt = select(func.count()).select_from(ApiTokenRow).where(ApiTokenRow.revoked_at.is_(None))
    return session.scalar(stmt) or 0

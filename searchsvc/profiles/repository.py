"""The only queries on ``profiles`` and ``profile_layers``."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, undefer

from searchsvc.db.tables import ProfileLayerRow, ProfileRow

__all__ = ["get", "get_with_doc", "by_key", "replace_layers", "latest_ready"]


def get(session: Session, profile_id: int) -> ProfileRow | None:
    """A profile row (without its document)."""
    return session.get(ProfileRow, profile_id)


def get_with_doc(session: Session, profile_id: int) -> ProfileRow | None:
    """A profile row with its full ``bitbudget.profile/v1`` document."""
    stmt = select(ProfileRow).where(ProfileRow.id == profile_id).options(undefer(ProfileRow.doc))
    return session.scalars(stmt).first()


def by_key(session: Session, key: str) -> ProfileRow | None:
    """The profile with content key ``key``."""
    return session.scalars(select(ProfileRow).where(ProfileRow.key == key)).first()


def latest_ready(session: Session, model_id: int) -> ProfileRow | None:
    """The newest finished profile of a model."""
    stmt = (
        select(ProfileRow)
        .where(ProfileRow.model_id == model_id, ProfileRow.status == "ready")
        .order_by(ProfileRow.id.desc())
    )
    return session.scalars(stmt).first()


def replace_layers(session: Session, profile: ProfileRow, scores: dict[str, dict]) -> None:
    """Store per-layer scores (replacing any earlier rows, so a re-run does no harm)."""
    session.execute(delete(ProfileLayerRow).where(ProfileLayerRow.profile_id == profile.id))
    session.add_all(
        ProfileLayerRow(profile_id=profile.id, position=i, name=name, scores=value)
        for i, (name, value) in enumerate(scores.items())
    )

"""The only queries on ``hardware_profiles``."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from searchsvc.db.tables import HardwareProfileRow

__all__ = ["by_name", "get", "listing"]


def by_name(session: Session, name: str, *, doc: bool = False) -> HardwareProfileRow | None:
    """The profile stored under ``name`` (with its table when ``doc``)."""
    stmt = select(HardwareProfileRow).where(HardwareProfileRow.name == name)
    if doc:
        stmt = stmt.options(undefer(HardwareProfileRow.doc))
    return session.scalars(stmt).first()


def get(session: Session, profile_id: int) -> HardwareProfileRow | None:
    """A profile row by id."""
    return session.get(HardwareProfileRow, profile_id)


def listing(session: Session) -> Sequence[HardwareProfileRow]:
    """Every stored profile, newest first (tables not loaded)."""
    stmt = select(HardwareProfileRow).order_by(HardwareProfileRow.id.desc())
    return session.scalars(stmt).all()

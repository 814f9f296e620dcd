"""The only queries on the ``models`` table."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session, undefer

from searchsvc.db.tables import ModelRow

__all__ = ["get", "get_with_inventory", "by_spec_key", "find_random", "page"]


def get(session: Session, model_id: int) -> ModelRow | None:
    """A model row without its (large) inventory."""
    return session.get(ModelRow, model_id)


def get_with_inventory(session: Session, model_id: int) -> ModelRow | None:
    """A model row with its inventory loaded."""
    stmt = select(ModelRow).where(ModelRow.id == model_id).options(undefer(ModelRow.inventory))
    return session.scalars(stmt).first()


def by_spec_key(session: Session, spec_key: str) -> ModelRow | None:
    """The row registered for ``spec_key``."""
    return session.scalars(select(ModelRow).where(ModelRow.spec_key == spec_key)).first()


def find_random(session: Session, name: str, image_size: int, seed: int) -> ModelRow | None:
    """A random-weights registration of (name, size, seed): its weights are fully determined."""
    stmt = select(ModelRow).where(
        ModelRow.name == name,
        ModelRow.image_size == image_size,
        ModelRow.seed == seed,
        ModelRow.checkpoint.is_(None),
    )
    return session.scalars(stmt.order_by(ModelRow.id)).first()


def page(session: Session, limit: int, offset: int) -> tuple[Sequence[ModelRow], int]:
    """Models, oldest first, and the total count."""
    total = session.scalar(select(func.count()).select_from(ModelRow)) or 0
    rows = session.scalars(select(ModelRow).order_by(ModelRow.id).limit(limit).offset(offset))
    return rows.all(), total

"""artifacts.plan_id index

Revision ID: 5c0e2d1f9a73
Revises: aab11f424964
Create Date: 2026-11-24 00:45:00.000000+00:00

A plan's cached GET checks its fingerprint on every request, and the fingerprint reads the
plan's artifacts; without this index that read scans the artifacts table.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "5c0e2d1f9a73"
down_revision: str | None = "aab11f424964"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_artifacts_plan_id"), ["plan_id"], unique=False)


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_artifacts_plan_id"))

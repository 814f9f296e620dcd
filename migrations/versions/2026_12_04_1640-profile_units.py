"""profile units

Revision ID: 7d3a91c4e2b8
Revises: 5c0e2d1f9a73
Create Date: 2026-12-04 16:40:57.595746+00:00

profile_units: one row per unit of a profile's work (keyed by profile key and unit id), which
Celery workers claim, heartbeat and fill in (issue #17: a profile's units fanned out);
profiles.options: the profiler's options (e.g. a subset of layers), which a worker needs to
rebuild the profile's request exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "7d3a91c4e2b8"
down_revision: str | None = "5c0e2d1f9a73"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("options", sa.JSON(), nullable=True))
    op.create_table(
        "profile_units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("profile_key", sa.String(length=128), nullable=False),
        sa.Column("unit", sa.String(length=600), nullable=False),
        sa.Column("phase", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.Column("weights_hash", sa.String(length=64), nullable=True),
        sa.Column("calibration_key", sa.String(length=64), nullable=True),
        sa.Column("worker", sa.String(length=200), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("computed", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "state IN ('pending', 'running', 'done', 'refused')",
            name=op.f("ck_profile_units_unit_state"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_profile_units_job_id_jobs"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_profile_units")),
        sa.UniqueConstraint("profile_key", "unit", name=op.f("uq_profile_units_profile_key_unit")),
    )
    with op.batch_alter_table("profile_units", schema=None) as batch_op:
        batch_op.create_index("ix_profile_units_job_id_state", ["job_id", "state"], unique=False)


def downgrade() -> None:
    """Revert."""
    with op.batch_alter_table("profile_units", schema=None) as batch_op:
        batch_op.drop_index("ix_profile_units_job_id_state")

    op.drop_table("profile_units")
    with op.batch_alter_table("profiles", schema=None) as batch_op:
        batch_op.drop_column("options")

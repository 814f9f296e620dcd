"""hardware profiles

Revision ID: 3e8b5f2a6c41
Revises: 7d3a91c4e2b8
Create Date: 2026-12-05 07:30:00.000000+00:00

hardware_profiles: named measured latency tables (issue #16), uploaded or measured by a worker
on the ``latency`` queue, which records the host it ran on.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "3e8b5f2a6c41"
down_revision: str | None = "7d3a91c4e2b8"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Apply."""
    op.create_table(
        "hardware_profiles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("image_size", sa.Integer(), nullable=False),
        sa.Column("runtime", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("host", sa.String(length=200), nullable=True),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("doc", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('measuring', 'ready', 'failed')",
            name=op.f("ck_hardware_profiles_hardware_status"),
        ),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["jobs.id"],
            name=op.f("fk_hardware_profiles_job_id_jobs"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hardware_profiles")),
        sa.UniqueConstraint("name", name=op.f("uq_hardware_profiles_name")),
    )


def downgrade() -> None:
    """Revert."""
    op.drop_table("hardware_profiles")

"""The tables: registered models, profiles and their per-layer scores, plans, validations, jobs,
artifacts and API tokens. A schema change here needs a migration (``alembic check`` in tests)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from searchsvc.db.base import Base, UTCDateTime, utcnow

__all__ = [
    "JOB_STATES",
    "TERMINAL_STATES",
    "ModelRow",
    "ProfileRow",
    "ProfileLayerRow",
    "ProfileUnitRow",
    "UNIT_STATES",
    "PlanRow",
    "ValidationRow",
    "JobRow",
    "ArtifactRow",
    "ApiTokenRow",
    "HardwareProfileRow",
    "HARDWARE_STATES",
]

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL_STATES = ("succeeded", "failed", "cancelled")
UNIT_STATES = ("pending", "running", "done", "refused")
HARDWARE_STATES = ("measuring", "ready", "failed")


def _created() -> Mapped[datetime]:
    return mapped_column(UTCDateTime(), default=utcnow, nullable=False)


class ModelRow(Base):
    """A registered model spec with its weights hash and inventory (built once at registration)."""

    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    spec_key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(64))
    image_size: Mapped[int] = mapped_column(Integer)
    checkpoint: Mapped[str | None] = mapped_column(Text)
    seed: Mapped[int] = mapped_column(Integer, default=0)
    weights_hash: Mapped[str] = mapped_column(String(128))
    random_weights: Mapped[bool] = mapped_column(Boolean)
    num_params: Mapped[int] = mapped_column(Integer)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    inventory: Mapped[dict[str, Any]] = mapped_column(JSON, deferred=True)
    created_at: Mapped[datetime] = _created()


class JobRow(Base):
    """A unit of background work. The row is the truth; Celery (or the thread pool) is transport."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"state IN {JOB_STATES!r}", name="state"),
        CheckConstraint("progress >= 0 AND progress <= 1", name="progress"),
        Index("ix_jobs_state_heartbeat_at", "state", "heartbeat_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id"), index=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()
    enqueued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class ProfileRow(Base):
    """A sensitivity profile; ``key`` is the profiler's content hash, so a request never repeats."""

    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(128), unique=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    metric: Mapped[str] = mapped_column(String(64))
    candidates: Mapped[list[str]] = mapped_column(JSON)
    images: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(200))
    seed: Mapped[int] = mapped_column(Integer, default=0)
    options: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # the profiler's options
    status: Mapped[str] = mapped_column(String(16), default="pending")
    random_weights: Mapped[bool] = mapped_column(Boolean)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    doc: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    layers: Mapped[list[ProfileLayerRow]] = relationship(
        back_populates="profile", cascade="all, delete-orphan", order_by="ProfileLayerRow.position"
    )


class ProfileLayerRow(Base):
    """One layer's scores in a profile: ``{candidate: loss}`` keyed by fully qualified name."""

    __tablename__ = "profile_layers"
    __table_args__ = (UniqueConstraint("profile_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(300))
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)

    profile: Mapped[ProfileRow] = relationship(back_populates="layers")


class ProfileUnitRow(Base):
    """One unit of a profile's work (a layer, an image, a pair) and its result, keyed by the
    profile's content key and the unit id; workers claim, heartbeat and fill it in."""

    __tablename__ = "profile_units"
    __table_args__ = (
        UniqueConstraint("profile_key", "unit"),
        CheckConstraint(f"state IN {UNIT_STATES!r}", name="unit_state"),
        Index("ix_profile_units_job_id_state", "job_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    profile_key: Mapped[str] = mapped_column(String(128))
    unit: Mapped[str] = mapped_column(String(600))
    phase: Mapped[int] = mapped_column(Integer, default=0)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    value: Mapped[Any | None] = mapped_column(JSON)
    weights_hash: Mapped[str | None] = mapped_column(String(64))  # what a worker must build
    calibration_key: Mapped[str | None] = mapped_column(String(64))
    worker: Mapped[str | None] = mapped_column(String(200))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims
    computed: Mapped[int] = mapped_column(Integer, default=0)  # results written (1 = no rework)
    seconds: Mapped[float | None] = mapped_column(Float)  # compute time of the kept result
    error: Mapped[str | None] = mapped_column(Text)  # why a worker refused it
    created_at: Mapped[datetime] = _created()
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PlanRow(Base):
    """A bit-width plan for a model under a budget (``doc`` is the ``bitbudget.plan/v1`` JSON)."""

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True)
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id", ondelete="SET NULL"))
    request_key: Mapped[str] = mapped_column(String(64), index=True)
    method: Mapped[str] = mapped_column(String(64))
    solver: Mapped[str] = mapped_column(String(32))
    hardware: Mapped[str | None] = mapped_column(String(128))
    budget: Mapped[dict[str, Any]] = mapped_column(JSON)
    validate: Mapped[bool] = mapped_column(Boolean, default=False)
    validation_status: Mapped[str] = mapped_column(String(32), default="not_requested")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    objective: Mapped[float | None] = mapped_column(Float)
    totals: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    doc: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    message: Mapped[str] = mapped_column(Text, default="")
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()


class ValidationRow(Base):
    """A plan checked against the full-precision model (written by the validation work)."""

    __tablename__ = "validations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()


class ArtifactRow(Base):
    """A stored result: a packed model (file under the artifact dir) or a JSON document."""

    __tablename__ = "artifacts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str | None] = mapped_column(String(200), unique=True)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    profile_id: Mapped[int | None] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    plan_id: Mapped[int | None] = mapped_column(
        ForeignKey("plans.id", ondelete="CASCADE"), index=True
    )  # a plan's GET fingerprint reads its artifacts by plan
    path: Mapped[str | None] = mapped_column(Text)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    doc: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()


class ApiTokenRow(Base):
    """A bearer token, stored as its sha256 only."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = _created()
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class HardwareProfileRow(Base):
    """A named measured latency table (``bitbudget.hardware/v1`` with ``latency_table``):
    uploaded, or measured by a worker on the ``latency`` queue, which records its host."""

    __tablename__ = "hardware_profiles"
    __table_args__ = (CheckConstraint(f"status IN {HARDWARE_STATES!r}", name="hardware_status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    model: Mapped[str] = mapped_column(String(64))
    image_size: Mapped[int] = mapped_column(Integer)
    runtime: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="ready")
    host: Mapped[str | None] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the measuring request
    doc: Mapped[dict[str, Any] | None] = mapped_column(JSON, deferred=True)
    error: Mapped[str | None] = mapped_column(Text)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

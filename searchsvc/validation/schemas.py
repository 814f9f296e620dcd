"""Bodies of the validation, artifact and gate endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from searchsvc.jobs.schemas import JobOut

__all__ = [
    "ArtifactOut",
    "ValidationOut",
    "ValidationAccepted",
    "GateRequest",
    "CheckOut",
    "GateOut",
]


class ArtifactOut(BaseModel):
    """The packed file of a validated plan (``url`` downloads it)."""

    url: str
    file_bytes: int | None
    sha256: str | None


class ValidationOut(BaseModel):
    """A validation: ``pending``, ``running``, ``passed``, ``failed`` (a check) or ``error``."""

    id: int
    plan_id: int
    status: str
    passed: bool | None
    reasons: list[str]
    error: str | None
    job_id: int | None
    validation: dict[str, Any] | None = Field(None, description="bitbudget.validation/v1")
    artifact: ArtifactOut | None
    created_at: datetime


class ValidationAccepted(BaseModel):
    """A validation that was queued, and its job."""

    validation: ValidationOut
    job: JobOut | None


class GateRequest(BaseModel):
    """Gate a stored plan's validation (``plan_id``) or a validation document given inline."""

    model_config = ConfigDict(extra="forbid")

    plan_id: int | None = Field(None, ge=1)
    validation: dict[str, Any] | None = Field(None, description="bitbudget.validation/v1")
    max_size_mb: float = Field(..., gt=0, description="artifact tensor bytes, MB (10^6 B)")
    min_iou: float | None = Field(None, ge=0, le=1, description="mean mask IoU against float")
    max_kl: float | None = Field(None, ge=0, description="mean per-pixel Bernoulli KL")

    @model_validator(mode="after")
    def _one_source(self) -> GateRequest:
        if (self.plan_id is None) == (self.validation is None):
            raise ValueError("give exactly one of plan_id or validation")
        return self


class CheckOut(BaseModel):
    """One check: measured value, limit, relation, and its printed line."""

    name: str
    passed: bool
    value: float | None
    limit: float
    op: str
    unit: str
    line: str


class GateOut(BaseModel):
    """Every check and whether all passed (a failing gate is still a 200)."""

    passed: bool
    checks: list[CheckOut]
    plan_id: int | None
    random_weights: bool | None

"""Request and response bodies of the profile endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from searchsvc.bounds import Candidates, Name, SiteOptions
from searchsvc.jobs.schemas import JobOut

__all__ = ["ProfileCreate", "ProfileOut", "ProfileAccepted"]


class ProfileCreate(BaseModel):
    """What to profile; omitted fields take the server defaults (BITBUDGET_DEFAULT_*)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    metric: Name | None = Field(None, examples=["fisher_kl"])
    candidates: Candidates | None = None
    images: int | None = Field(None, ge=1, le=1024, examples=[8])
    attention: bool = Field(False, description="also profile the attention matmul sites")
    attention_options: SiteOptions | None = Field(
        None, description="attention site options (default a8,a6,a4 and a8log,a6log,a4log)"
    )


class ProfileOut(BaseModel):
    """A profile's state; ``layers`` (per-layer scores) once it is ready."""

    id: int
    key: str
    model_id: int
    metric: str
    candidates: list[str]
    images: int
    source: str
    status: str
    random_weights: bool
    stats: dict[str, Any]
    error: str | None
    job_id: int | None
    created_at: datetime
    finished_at: datetime | None
    layers: dict[str, dict[str, Any]] | None = None


class ProfileAccepted(BaseModel):
    """The profile and the job computing it (``job`` is null when it was already ready)."""

    profile: ProfileOut
    job: JobOut | None

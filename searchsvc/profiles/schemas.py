"""Request and response bodies of the profile endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from searchsvc.bounds import Candidates, Name, SiteOptions
from searchsvc.jobs.schemas import JobOut

__all__ = ["VideoProfile", "ProfileCreate", "ProfileOut", "ProfileAccepted", "video_options"]


class VideoProfile(BaseModel):
    """The clips the memory path is calibrated on (``"video": {...}``; ``true`` = defaults)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    clips: int = Field(2, ge=1, le=16, description="synthetic clips over the shipped photographs")
    frames: int = Field(6, ge=2, le=64, description="frames per clip")


def video_options(video: bool | VideoProfile) -> dict[str, int] | None:
    """``{"clips", "frames"}`` of a ``video`` field; None when it is false."""
    if video is False:
        return None
    return (VideoProfile.model_validate({}) if video is True else video).model_dump()


_VIDEO_HELP = (
    "SAM2: the hierarchical profile (image path on images, memory path on clip frames through "
    'the memory bank), so memory attention and memory encoder get real options; true or {"clips", '
    '"frames"}'
)


class ProfileCreate(BaseModel):
    """What to profile; omitted fields take the server defaults (BITBUDGET_DEFAULT_*)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    metric: Name | None = Field(None, examples=["fisher_kl"])
    candidates: Candidates | None = None
    images: int | None = Field(None, ge=1, le=1024, examples=[8])
    video: bool | VideoProfile = Field(False, description=_VIDEO_HELP)
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
    video: dict[str, Any] | None = Field(
        None, description="the clips the memory path was profiled on (a hierarchical profile)"
    )


class ProfileAccepted(BaseModel):
    """The profile and the job computing it (``job`` is null when it was already ready)."""

    profile: ProfileOut
    job: JobOut | None

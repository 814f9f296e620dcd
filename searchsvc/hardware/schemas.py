"""Bodies of the hardware endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from searchsvc.bounds import Name
from searchsvc.jobs.schemas import JobOut

__all__ = ["MeasureBody", "HardwareCreate", "HardwareOut", "HardwareAccepted", "HardwareList"]


class MeasureBody(BaseModel):
    """What a measuring job times: a model at an image size, options, runtime and repeats."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: Name = Field(..., examples=["sam2-micro"])
    image_size: int | None = Field(None, ge=64, le=4096)
    candidates: list[Name] = Field(default_factory=lambda: ["w8a8", "w4a8", "w8a16", "w4a16"])
    runtime: Literal["onnxruntime", "torch"] = "onnxruntime"
    threads: int = Field(2, ge=1, le=256)
    warmup: int = Field(3, ge=0, le=100)
    repeats: int = Field(20, ge=1, le=1000)


class HardwareCreate(BaseModel):
    """Upload a measured table (``table``), or start measuring one (``measure``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name | None = Field(None, description="the profile's name (default: the table's)")
    table: dict[str, Any] | None = Field(None, description="a bitbudget.hardware/v1 document")
    measure: MeasureBody | None = Field(None, description="measure on a `latency` worker")


class HardwareOut(BaseModel):
    """A hardware profile: ``kind`` is ``estimate`` (roofline) or ``measured`` (a table)."""

    name: str
    kind: str
    status: str
    title: str = ""
    model: str | None = None
    image_size: int | None = None
    runtime: str | None = None
    host: str | None = None
    error: str | None = None
    job_id: int | None = None
    created_at: datetime | None = None
    table: dict[str, Any] | None = Field(None, description="the document (GET by name only)")


class HardwareAccepted(BaseModel):
    """A stored upload, or a measuring job that was started."""

    hardware: HardwareOut
    job: JobOut | None = None


class HardwareList(BaseModel):
    """Every profile: the shipped estimates and the stored measured tables."""

    items: list[HardwareOut]

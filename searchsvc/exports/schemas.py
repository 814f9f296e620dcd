"""Bodies of the export endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from searchsvc.jobs.schemas import JobOut

__all__ = ["ExportOut", "ExportAccepted", "ExportPage"]


class ExportOut(BaseModel):
    """One ONNX export of a plan: ``queued``, ``running``, ``done``, ``failed`` or ``cancelled``;
    once done, ``url`` downloads the zip (image_encoder.onnx, mask_decoder.onnx, manifest.json)."""

    id: int
    plan_id: int
    status: str
    job_id: int | None
    error: str | None = None
    url: str | None = Field(None, description="the zip, once done")
    clipping: str | None = Field(None, description="the LSC learned-clipping sidecar it carries")
    zip_bytes: int | None = None
    sha256: str | None = Field(None, description="sha256 of the zip")
    file_bytes: int | None = Field(None, description="the ONNX files and manifest on disk")
    files: dict[str, Any] | None = Field(None, description="each file's bytes and sha256")
    sizes: dict[str, Any] | None = Field(
        None, description="predicted bytes, integer-initializer bytes, bytes on disk"
    )
    manifest: dict[str, Any] | None = Field(None, description="bitbudget.onnx_export/v1")
    created_at: datetime


class ExportAccepted(BaseModel):
    """An export that was queued (or already exists), and its job."""

    export: ExportOut
    job: JobOut | None


class ExportPage(BaseModel):
    """A plan's exports, newest first."""

    items: list[ExportOut]
    total: int

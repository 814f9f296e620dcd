"""The job resource."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

__all__ = ["JobOut"]


class JobOut(BaseModel):
    """A job: state (queued, running, succeeded, failed, cancelled), progress 0..1, result ids."""

    id: int
    kind: str
    state: str
    progress: float
    message: str
    error: str | None
    result: dict[str, Any]
    params: dict[str, Any]
    waits_on: int | None
    attempts: int
    cancel_requested: bool
    created_at: datetime
    started_at: datetime | None
    heartbeat_at: datetime | None
    finished_at: datetime | None
    worker: str | None = None  # who runs it (host:pid:tag) while it runs, or ran it last
    units: dict[str, Any] | None = None  # a profile's units: done, total, per_worker, rate_per_s

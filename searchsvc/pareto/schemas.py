"""Pareto front responses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from searchsvc.jobs.schemas import JobOut

__all__ = ["ParetoOut", "ParetoAccepted", "RESOURCES"]

RESOURCES = ("memory_bytes", "latency_ms", "bops")


class ParetoOut(BaseModel):
    """Non-dominated points (``total`` of the resource, ``objective`` loss), cheapest first."""

    model_id: int
    profile_id: int
    resource: str
    hardware: str | None
    method: str
    solver: str
    random_weights: bool
    points: list[dict[str, Any]]


class ParetoAccepted(BaseModel):
    """The model has no profile yet: the job profiles, then builds the front."""

    profile_id: int
    job: JobOut

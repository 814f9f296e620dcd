"""Pareto front requests and responses."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from searchsvc.bounds import Candidates, Name
from searchsvc.jobs.schemas import JobOut
from solvers.pareto import PARETO_FORMAT

__all__ = ["ParetoOut", "ParetoCreate", "ParetoAccepted", "RESOURCES", "PARETO_FORMAT"]

RESOURCES = ("memory_bytes", "latency_ms", "bops")


class ParetoOut(BaseModel):
    """The ``bitbudget.pareto/v1`` document of a model's profile (docs/formats.md): non-dominated
    points (``total`` of the resource, ``objective`` loss, ``bound`` and ``gap``), cheapest first,
    and where it comes from. ``exact`` is false for the fast path (the Lagrangian sweep, each
    point with the bound its prices prove) and true for a front built by a ``pareto.build`` job."""

    format: str = PARETO_FORMAT
    resource: str
    method: str = Field(description="the front's solver: lagrangian, cpsat, milp or dp")
    requested_points: int
    solve_seconds: float
    points: list[dict[str, Any]]
    model_id: int
    profile_id: int
    hardware: str | None
    metric: str = Field(description="the profile's sensitivity metric, e.g. fisher_kl")
    solver: str = Field(description="the same as method (kept for older clients)")
    random_weights: bool
    exact: bool
    exact_job: JobOut | None = Field(
        None, description="the pareto.build job computing the exact front, while it runs"
    )


class ParetoCreate(BaseModel):
    """Ask for the exact front (a job): profiles the model first when needed."""

    model_config = ConfigDict(extra="forbid", strict=True)

    resource: Name = Field("memory_bytes", description="memory_bytes, latency_ms or bops")
    hardware: Name | None = Field(None, description="hardware profile (latency_ms needs one)")
    method: Name | None = Field(None, description="profile metric (default fisher_kl)")
    images: int | None = Field(None, ge=1, le=1024, description="calibration images")
    candidates: Candidates | None = Field(None, description="profile candidates")


class ParetoAccepted(BaseModel):
    """The job that profiles (when needed) and then builds the exact front."""

    profile_id: int
    job: JobOut

"""Request and response bodies of /v1/plans."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from searchsvc.bounds import (
    MAX_BOPS_G,
    MAX_ID,
    MAX_LATENCY_MS,
    MAX_MEMORY_MB,
    Candidates,
    Name,
    SiteOptions,
)
from searchsvc.jobs.schemas import JobOut
from searchsvc.profiles.schemas import VideoProfile, video_options
from searchsvc.validation.schemas import ValidationRequest

__all__ = [
    "Budget",
    "PlanCreate",
    "PlanOut",
    "PlanAccepted",
    "PlanPage",
    "RefineCreate",
    "RefineAccepted",
    "MB",
    "GIGA",
]

MB = 1_000_000  # memory_mb is in megabytes of 10^6 bytes
GIGA = 1_000_000_000  # bops_g is in 10^9 bit operations


def _a_number(field: str) -> JsonDict:
    return {"properties": {field: {"type": "number"}}, "required": [field]}


_LIMITS = ("memory_mb", "latency_ms", "bops_g", "avg_bits")
# the rules the validator below enforces, in the schema too: at least one limit that is a number,
# and a hardware profile with a latency limit
_BUDGET_SCHEMA: JsonDict = {
    "anyOf": [_a_number(f) for f in _LIMITS],
    "if": _a_number("latency_ms"),
    "then": {"properties": {"hardware": {"type": "string"}}, "required": ["hardware"]},
}


class Budget(BaseModel):
    """At least one limit; ``latency_ms`` needs a ``hardware`` profile (solvers/hardware)."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_BUDGET_SCHEMA)

    memory_mb: float | None = Field(
        None, gt=0, le=MAX_MEMORY_MB, allow_inf_nan=False, description="stored size, MB (10^6 B)"
    )
    latency_ms: float | None = Field(
        None, gt=0, le=MAX_LATENCY_MS, allow_inf_nan=False, description="latency on `hardware`"
    )
    hardware: Name | None = Field(None, examples=["nvidia_t4"])
    bops_g: float | None = Field(
        None, gt=0, le=MAX_BOPS_G, allow_inf_nan=False, description="bit operations, 10^9"
    )
    avg_bits: float | None = Field(
        None, ge=1, le=16, allow_inf_nan=False, description="mean weight bits"
    )

    @model_validator(mode="after")
    def _some_limit(self) -> Budget:
        if all(v is None for v in (self.memory_mb, self.latency_ms, self.bops_g, self.avg_bits)):
            raise ValueError("give at least one of memory_mb, latency_ms, bops_g, avg_bits")
        if self.latency_ms is not None and not self.hardware:
            raise ValueError("latency_ms needs a hardware profile (hardware, e.g. nvidia_t4)")
        return self

    def limits(self) -> dict[str, float | None]:
        """The profiler's budget keys (memory_bytes, latency_ms, bops, avg_bits)."""
        return {
            "memory_bytes": None if self.memory_mb is None else self.memory_mb * MB,
            "latency_ms": self.latency_ms,
            "bops": None if self.bops_g is None else self.bops_g * GIGA,
            "avg_bits": self.avg_bits,
        }

    def user_dict(self) -> dict[str, Any]:
        """The budget as the user gave it (unset fields left out)."""
        return self.model_dump(exclude_none=True)


class PlanCreate(BaseModel):
    """Ask for a plan: a registered model, a budget, and optionally method / solver."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    model_id: int = Field(..., ge=1, le=MAX_ID)
    budget: Budget
    method: Name | None = Field(None, description="the profile metric (default fisher_kl)")
    solver: Name | None = Field(None, description="cpsat, milp, dp, lagrangian or greedy")
    validate_plan: bool | ValidationRequest = Field(
        False, alias="validate", description='validate against FP; {"video": true} adds J&F'
    )
    candidates: Candidates | None = Field(None, description="profile candidates")
    images: int | None = Field(None, ge=1, le=1024, description="calibration images")
    video: bool | VideoProfile = Field(
        False,
        description="SAM2: solve over the hierarchical profile (memory path profiled on clips, "
        "so memory attention / encoder get real options); a validation then measures J&F too",
    )
    attention: bool = Field(False, description="attention matmul sites in the plan")
    attention_options: SiteOptions | None = Field(
        None, description="attention site options (default a8,a6,a4 and a8log,a6log,a4log)"
    )
    hardware: Name | None = Field(
        None,
        description="hardware profile for a latency budget (the same as budget.hardware): a "
        "shipped roofline estimate or a measured table stored with POST /v1/hardware",
    )

    @model_validator(mode="before")
    @classmethod
    def _hardware_into_budget(cls, raw: Any) -> Any:
        """``{"hardware": NAME, "budget": {...}}`` is ``budget.hardware``; both must agree."""
        if isinstance(raw, dict) and raw.get("hardware") is not None:
            budget = raw.get("budget")
            if isinstance(budget, dict):
                given = budget.get("hardware")
                if given is not None and given != raw["hardware"]:
                    raise ValueError("hardware and budget.hardware differ; give one")
                raw = raw | {"budget": budget | {"hardware": raw["hardware"]}}
        return raw

    def video_profile(self) -> dict[str, int] | None:
        """The clips of the hierarchical profile (None: image-only)."""
        return video_options(self.video)

    def validation_request(self) -> dict[str, Any] | None:
        """The validation options (``"validate": {...}``); None for a plain true / false. A video
        plan validated with a plain ``true`` is validated by J&F too (default clips)."""
        v = self.validate_plan
        if isinstance(v, ValidationRequest):
            return v.options()
        if v is True and self.video is not False:
            return ValidationRequest.model_validate({"video": True}).options()
        return None


class PlanOut(BaseModel):
    """A plan: ``plan`` is the solver's ``bitbudget.plan/v1`` document once solved."""

    id: int
    model_id: int
    profile_id: int | None
    status: str
    method: str
    solver: str
    hardware: str | None
    budget: dict[str, Any]
    validate_plan: bool = Field(serialization_alias="validate")
    validation_status: str
    objective: float | None
    totals: dict[str, Any]
    usage: dict[str, float]
    plan: dict[str, Any] | None = Field(
        description="the bitbudget.plan/v1 document, with the model it is for under `model`"
    )
    video: dict[str, Any] | None = Field(
        None, description="the clips of the hierarchical (video) profile the plan was solved on"
    )
    model: dict[str, Any] = Field(
        default_factory=dict,
        description="the model spec the plan is for: name, image_size, checkpoint, seed and "
        "weights_hash (what `bitbudget validate` / `gate` need to rebuild it)",
    )
    message: str
    random_weights: bool
    job_id: int | None
    created_at: datetime
    validation: dict[str, Any] | None = Field(None, description="the newest validation, if any")
    refinement: dict[str, Any] | None = Field(
        None, description="the newest LSC refinement: status, steps, fidelity before / after"
    )
    export: dict[str, Any] | None = Field(
        None, description="the newest ONNX export: status, job, download url, sizes"
    )


class PlanAccepted(BaseModel):
    """A plan waiting on a profile, and the job that will solve it."""

    plan: PlanOut
    job: JobOut


class PlanPage(BaseModel):
    """One page of plans."""

    items: list[PlanOut]
    total: int
    limit: int
    offset: int


class RefineCreate(BaseModel):
    """Refine a solved plan with Q-SAM2 LSC (learned clipping factors, momentum update)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    steps: int = Field(..., ge=1, le=10_000, description="LSC steps (one image per step)")
    lr: float | None = Field(
        None, gt=0, le=1, allow_inf_nan=False, description="learning rate of the factors"
    )
    images: int | None = Field(None, ge=1, le=1024, description="calibration images")


class RefineAccepted(BaseModel):
    """The refinement (queued, running or done) and the job that computes it."""

    plan_id: int
    refinement: dict[str, Any]
    job: JobOut | None

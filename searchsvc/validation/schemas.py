"""Bodies of the validation, artifact and gate endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import JsonDict

from searchsvc.bounds import MAX_ID, MAX_MEMORY_MB, MAX_SEED, Name
from searchsvc.jobs.schemas import JobOut

__all__ = [
    "ValidationRequest",
    "ArtifactOut",
    "ValidationOut",
    "ValidationAccepted",
    "GateRequest",
    "CheckOut",
    "GateOut",
]


POLICY_NAMES = ("fifo", "sis", "mutual_kv")


class ValidationRequest(BaseModel):
    """What a validation measures besides image fidelity and size (``"validate": {...}``).

    ``video``: also track clips with the plan (SAM2 only) and store J&F against the float model
    (``validation.video``, docs/video.md): ``clips`` synthetic clips of ``frames`` frames from
    the shipped photographs, tracked under ``policy`` (default: the plan's ``memory_policy``,
    else FIFO).
    """

    model_config = ConfigDict(extra="forbid", strict=True)

    video: bool = Field(False, description="also measure video fidelity (J&F), SAM2 only")
    clips: int = Field(2, ge=1, le=8, description="synthetic clips")
    frames: int = Field(6, ge=2, le=32, description="frames per clip")
    seed: int = Field(0, ge=0, le=MAX_SEED)
    policy: Name | dict[str, Any] | None = Field(
        None, description="memory policy: fifo | sis | mutual_kv, or {name, params}"
    )
    prompt: str = Field("box", pattern="^(box|point|mask)$")
    runtime: Literal["pytorch", "onnxruntime"] = Field(
        "pytorch",
        description="onnxruntime: measure the plan's ONNX export in ONNX Runtime (docs/export.md)",
    )

    @model_validator(mode="after")
    def _known_policy(self) -> ValidationRequest:
        name = self.policy.get("name") if isinstance(self.policy, dict) else self.policy
        if self.policy is not None and name not in POLICY_NAMES:
            raise ValueError(f"policy: unknown memory policy {name!r}; known: fifo, sis, mutual_kv")
        return self

    def options(self) -> dict[str, Any]:
        """What is stored with the validation (its ``request``) and handed to the job."""
        runtime = {} if self.runtime == "pytorch" else {"runtime": self.runtime}
        if not self.video:
            return {"video": None} | runtime
        video = self.model_dump(exclude={"video", "runtime"})
        return {"video": video} | runtime


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
    fidelity: dict[str, Any] | None = Field(
        None, description="image fidelity (IoU, KL vs float) next to video J&F (vs float, vs GT)"
    )
    request: dict[str, Any] = Field(default_factory=dict, description="what was asked for")
    artifact: ArtifactOut | None
    created_at: datetime


class ValidationAccepted(BaseModel):
    """A validation that was queued, and its job."""

    validation: ValidationOut
    job: JobOut | None


# exactly one of plan_id (an integer) and validation (an object), as the validator below says
_ONE_SOURCE: JsonDict = {
    "oneOf": [
        {"properties": {"plan_id": {"type": "integer"}}, "required": ["plan_id"]},
        {"properties": {"validation": {"type": "object"}}, "required": ["validation"]},
    ]
}


class GateRequest(BaseModel):
    """Gate a stored plan's validation (``plan_id``) or a validation document given inline."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_ONE_SOURCE)

    plan_id: int | None = Field(None, ge=1, le=MAX_ID)
    validation: dict[str, Any] | None = Field(None, description="bitbudget.validation/v1")
    max_size_mb: float = Field(
        ..., gt=0, le=MAX_MEMORY_MB, allow_inf_nan=False, description="artifact tensor MB (10^6 B)"
    )
    min_iou: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False, description="mean mask IoU against float"
    )
    max_kl: float | None = Field(
        None, ge=0, allow_inf_nan=False, description="mean per-pixel Bernoulli KL"
    )
    max_file_mb: float | None = Field(
        None,
        gt=0,
        le=MAX_MEMORY_MB,
        allow_inf_nan=False,
        description="the exported ONNX files on disk, MB (10^6 B): the plan's newest export",
    )

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

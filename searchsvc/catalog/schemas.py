"""Request and response bodies of /v1/models."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from searchsvc.bounds import MAX_CHECKPOINT_CHARS, MAX_SEED, Name

__all__ = ["ModelCreate", "ModelOut", "ModelPage", "ModelSpecOut"]


class ModelCreate(BaseModel):
    """Register a model spec (see ``bitbudget models`` for the names)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: Name = Field(..., examples=["sam2.1-hiera-tiny"])
    image_size: int | None = Field(None, gt=0, le=4096, examples=[512])
    checkpoint: str | None = Field(
        None,
        max_length=MAX_CHECKPOINT_CHARS,
        pattern=r"^[^\x00]+$",
        description="path under BITBUDGET_CHECKPOINT_DIRS",
    )
    seed: int = Field(
        0, ge=0, le=MAX_SEED, description="seed of the random weights (no checkpoint)"
    )


class ModelOut(BaseModel):
    """A registered model with its inventory summary."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    image_size: int
    checkpoint: str | None
    seed: int
    weights_hash: str
    random_weights: bool
    num_params: int
    summary: dict[str, Any]
    created_at: datetime


class ModelPage(BaseModel):
    """One page of models."""

    items: list[ModelOut]
    total: int
    limit: int
    offset: int


class ModelSpecOut(BaseModel):
    """A model name one can register (``POST /v1/models``), as ``bitbudget models`` lists it."""

    name: str
    family: str = Field(description="sam2 or sam")
    default_image_size: int
    image_sizes: list[int]
    description: str

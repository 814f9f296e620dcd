"""Quant-test fixtures: a tiny calibration / held-out split and a forward helper."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from profiling.calibration import CalibrationSet, load_source, make_sets
from profiling.models import LoadedModel
from profiling.models.adapter import TaskAdapter


@pytest.fixture(scope="session")
def quant_sets() -> tuple[CalibrationSet, CalibrationSet]:
    """Two calibration photos and one held-out photo, one point prompt each."""
    calib, held = make_sets(load_source("shipped"), holdout=1, n_calib=2, n_points=1, n_boxes=0)
    return calib, held


def _logits(loaded: LoadedModel, module: nn.Module, sets: CalibrationSet) -> list[torch.Tensor]:
    """Mask logits of ``module`` (on ``loaded``'s architecture) for every sample's first prompt."""
    adapter = TaskAdapter(dataclasses.replace(loaded, module=module))
    with torch.no_grad():
        return [adapter(s.image.pixels, s.prompts[0]).logits for s in sets.samples]


def _mask_iou(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Mean IoU of the ``logits > 0`` masks (empty vs empty counts as 1)."""
    ious = []
    for x, y in zip(a, b):
        inter = ((x > 0) & (y > 0)).sum().item()
        union = ((x > 0) | (y > 0)).sum().item()
        ious.append(1.0 if union == 0 else inter / union)
    return sum(ious) / len(ious)


@pytest.fixture(scope="session")
def logits():  # noqa: ANN201 - returns the helper
    """``logits(loaded, module, sets)``: mask logits per held-out sample."""
    return _logits


@pytest.fixture(scope="session")
def mask_iou():  # noqa: ANN201
    """``mask_iou(a, b)``: mean IoU of logits > 0 masks."""
    return _mask_iou

"""The calibration walker: run a model copy over a calibration set, image path and memory path.

Observers are attached by the caller (``observers.observing``); this module only drives forwards.
For SAM2 each image is also tracked over two frames with SAM2's own ``track_step``, so the
memory attention and memory encoder see real calibration inputs.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from profiling.calibration import CalibrationSet
from profiling.models import LoadedModel
from profiling.models.adapter import Prompts, TaskAdapter

__all__ = ["run_calibration"]


def _first_prompt(prompts: list[Prompts]) -> Prompts | None:
    for p in prompts:
        if p.points is not None and p.labels is not None:
            return Prompts(points=p.points[:1], labels=p.labels[:1])
    return None


@torch.no_grad()
def run_calibration(
    loaded: LoadedModel, module: nn.Module, calib: CalibrationSet, video: bool = True
) -> int:
    """Forward every calibration sample through ``module``; returns the number of images run."""
    adapter = TaskAdapter(dataclasses.replace(loaded, module=module))
    for sample in calib.samples:
        image = sample.image.pixels
        hw = (int(image.shape[0]), int(image.shape[1]))
        pixels = adapter.preprocess(image)
        feats = adapter.embed(pixels)
        for prompts in sample.prompts:
            adapter.decode(feats, prompts, hw)
        first = _first_prompt(sample.prompts)
        if video and loaded.family == "sam2" and first is not None:
            from profiling.models.video_step import track_frames

            assert first.points is not None and first.labels is not None
            coords = adapter.transform_coords(first.points, hw)
            track_frames(module, pixels, coords, first.labels.int(), n_frames=2)
    return len(calib.samples)

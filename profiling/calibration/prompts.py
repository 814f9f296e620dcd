"""Deterministic prompts: instance boxes where annotations exist, a seeded scheme otherwise.

The seeded scheme, per image: a generator seeded by (seed, the image's content hash) draws
``n_points`` single foreground points uniformly in the central 80 % of the image, and
``n_boxes`` boxes whose sides are 20-60 % of the image's sides, placed uniformly inside it.
The same image and seed always give the same prompts, wherever the image sits in a set.
"""

from __future__ import annotations

import numpy as np
import torch

from profiling.calibration.images import ImageRecord
from profiling.models.adapter import Prompts

__all__ = ["point_prompts", "box_prompts", "prompts_for"]


def _rng(seed: int, sha256: str) -> np.random.Generator:
    return np.random.default_rng([seed, int(sha256[:15], 16)])


def point_prompts(rec: ImageRecord, n: int, seed: int) -> Prompts:
    """``n`` single-point foreground prompts (seeded)."""
    h, w = rec.hw
    rng = _rng(seed, rec.sha256)
    xy = np.stack([rng.uniform(0.1 * w, 0.9 * w, n), rng.uniform(0.1 * h, 0.9 * h, n)], -1)
    return Prompts(
        points=torch.tensor(xy, dtype=torch.float32)[:, None, :],
        labels=torch.ones(n, 1, dtype=torch.int32),
    )


def box_prompts(rec: ImageRecord, n: int, seed: int) -> Prompts:
    """``n`` box prompts (seeded), or the image's instance boxes when it has annotations."""
    if rec.boxes:
        return Prompts(boxes=torch.tensor(rec.boxes[:n], dtype=torch.float32))
    h, w = rec.hw
    rng = _rng(seed + 1, rec.sha256)
    bw, bh = rng.uniform(0.2, 0.6, n) * w, rng.uniform(0.2, 0.6, n) * h
    x0, y0 = rng.uniform(0, 1, n) * (w - bw), rng.uniform(0, 1, n) * (h - bh)
    boxes = np.stack([x0, y0, x0 + bw, y0 + bh], -1)
    return Prompts(boxes=torch.tensor(boxes, dtype=torch.float32))


def prompts_for(rec: ImageRecord, n_points: int, n_boxes: int, seed: int) -> list[Prompts]:
    """The prompt batches for one image: instance boxes if annotated, else points and boxes."""
    if rec.boxes:
        return [box_prompts(rec, max(n_boxes, len(rec.boxes)), seed)]
    out = []
    if n_points:
        out.append(point_prompts(rec, n_points, seed))
    if n_boxes:
        out.append(box_prompts(rec, n_boxes, seed))
    return out

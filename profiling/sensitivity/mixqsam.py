"""Mix-QSAM: layer importance Ω (KL with the layer's output zeroed, normalised over layers per
image, averaged) and the adjacent-pair synergy approximation Ŝ = log(1 + mean 1/(|I_l−I_m|+ε))."""

from __future__ import annotations

import math
from typing import Any

import torch

from profiling.sensitivity.context import Context
from profiling.sensitivity.divergence import EPS, pixel_distribution_kl
from profiling.sensitivity.perturb import output_zeroed

__all__ = ["run_mixqsam", "importance_and_synergy"]


@torch.no_grad()
def _zeroed_kl(ctx: Context, layer: str) -> list[float]:
    """Per-image KL (Mix-QSAM's pixel-distribution reduction) with ``layer`` zeroed."""
    stage = ctx.walker.stage_of(layer)
    per_image = []
    with output_zeroed(ctx.modules()[layer]):
        for i, img in enumerate(ctx.walker.images):
            outs = ctx.walker.logits(i, stage)
            kls = [pixel_distribution_kl(r, o) for r, o in zip(img.fp_logits, outs)]
            per_image.append(sum(kls) / len(kls))
    return per_image


def importance_and_synergy(
    raw: dict[str, list[float]], order: list[str]
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Ω per layer and Ŝ per adjacent pair (in ``order``) from per-image raw KLs."""
    n_img = len(next(iter(raw.values())))
    norm = {name: [0.0] * n_img for name in raw}
    for t in range(n_img):
        total = sum(raw[name][t] for name in raw) or 1.0
        for name in raw:
            norm[name][t] = raw[name][t] / total
    omega = {name: sum(v) / n_img for name, v in norm.items()}
    synergy = []
    for a, b in zip(order, order[1:]):
        mean = sum(1.0 / (abs(norm[a][t] - norm[b][t]) + EPS) for t in range(n_img)) / n_img
        synergy.append({"a": a, "b": b, "value": math.log1p(mean)})
    return omega, synergy


def run_mixqsam(ctx: Context) -> dict[str, Any]:
    """Zero each layer in turn; one checkpointed unit per layer."""
    raw: dict[str, list[float]] = ctx.per_layer("mixqsam", lambda name: _zeroed_kl(ctx, name))
    omega, synergy = importance_and_synergy(raw, list(raw))
    return {"scores": omega, "synergy": synergy, "raw": raw}

"""Exact KL: quantize one layer alone (weights, then input activations) and measure the
Bernoulli KL of the mask output against float, averaged over images and prompts."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch

from profiling.sensitivity.context import Context
from profiling.sensitivity.divergence import bernoulli_kl
from profiling.sensitivity.perturb import input_quantized, quantized_weight, weight_swapped

__all__ = ["layer_kl", "kl_under", "joint_kl", "run_kl"]


@torch.no_grad()
def kl_under(ctx: Context, layer: str, perturbation: AbstractContextManager) -> float:
    """Mean KL over images and prompt batches with ``perturbation`` active."""
    stage = ctx.walker.stage_of(layer)
    total, count = 0.0, 0
    with perturbation:
        for i, img in enumerate(ctx.walker.images):
            for ref, out in zip(img.fp_logits, ctx.walker.logits(i, stage)):
                total += bernoulli_kl(ref, out)
                count += 1
    return total / max(count, 1)


def layer_kl(ctx: Context, layer: str) -> dict[str, dict[str, float]]:
    """{"weight": {bits: KL}, "act": {bits: KL}} for one layer."""
    mod: Any = ctx.modules()[layer]
    weight = {
        str(b): kl_under(ctx, layer, weight_swapped(mod, quantized_weight(mod, b)))
        for b in ctx.w_bits
        if b < 16
    }
    lo, hi = ctx.ranges[layer]
    act = {
        str(b): kl_under(ctx, layer, input_quantized(mod, b, lo, hi)) for b in ctx.a_bits if b < 16
    }
    return {"weight": weight, "act": act}


def joint_kl(ctx: Context, layer: str, w_bits: int, a_bits: int) -> float:
    """KL with the weight and the input activation quantized together (checks additivity)."""
    from contextlib import ExitStack

    mod: Any = ctx.modules()[layer]
    lo, hi = ctx.ranges[layer]
    with ExitStack() as both:
        both.enter_context(weight_swapped(mod, quantized_weight(mod, w_bits)))
        return kl_under(ctx, layer, input_quantized(mod, a_bits, lo, hi))


def run_kl(ctx: Context) -> dict[str, Any]:
    """Every weight layer that runs on images (one checkpointed unit per layer), then, with the
    ``attention`` option, every attention site (``sites.run_site_kl``)."""
    from profiling.sensitivity.sites import run_site_kl

    layers = ctx.per_layer("kl", lambda name: layer_kl(ctx, name))
    return {"layers": layers | run_site_kl(ctx, kl_under)}

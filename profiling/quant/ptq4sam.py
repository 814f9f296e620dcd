"""PTQ4SAM Bimodal Integration (BIG): detect a bimodal post-key activation, fold it into one mode.

Detection (PTQ4SAM ``judge_bimodal``): flatten the key projection's output, fit a gaussian KDE,
evaluate it at 128 points over [min, max], ``find_peaks(y, height=0.01·Σy, distance=32)``;
bimodal <=> exactly two peaks. Then s_c = sign(mean over tokens of key channel c) and
W_k <- diag(s) W_k, b_k <- s ⊙ b_k, and the same for W_q, b_q: q·kᵀ is unchanged since s² = 1,
while every key channel now has a positive mean, so the per-tensor key distribution is unimodal.
AGQ (the other PTQ4SAM method) lives in ``logquant`` and is installed by ``apply``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy.signal import find_peaks
from scipy.stats import gaussian_kde
from torch import Tensor, nn

from profiling.attention import attention_modules

__all__ = [
    "KDE_POINTS",
    "PEAK_DISTANCE",
    "PEAK_HEIGHT",
    "BigResult",
    "count_peaks",
    "is_bimodal",
    "sign_vector",
    "flip_query_key",
    "big_targets",
    "bimodal_integration",
]

KDE_POINTS = 128
PEAK_DISTANCE = 32
PEAK_HEIGHT = 0.01
_KDE_SAMPLES = 20_000  # the KDE is fitted on a seeded subsample for speed


@dataclass(frozen=True)
class BigResult:
    """What BIG found and did for one attention module."""

    peaks: int
    bimodal: bool
    flipped_channels: int


def count_peaks(x: Tensor, seed: int = 0) -> int:
    """Peaks of the KDE of ``x`` at PTQ4SAM's settings."""
    flat = x.detach().reshape(-1).double().cpu()
    if flat.numel() > _KDE_SAMPLES:
        idx = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))
        flat = flat[idx[:_KDE_SAMPLES]]
    values = flat.numpy()
    if values.size < 2 or float(values.std()) == 0.0:
        return 1
    grid = np.linspace(values.min(), values.max(), KDE_POINTS)
    y = gaussian_kde(values)(grid)
    peaks, _ = find_peaks(y, height=PEAK_HEIGHT * y.sum(), distance=PEAK_DISTANCE)
    return int(len(peaks))


def is_bimodal(x: Tensor, seed: int = 0) -> bool:
    """Exactly two KDE peaks."""
    return count_peaks(x, seed) == 2


def sign_vector(k: Tensor) -> Tensor:
    """s_c = sign(mean of channel c over all tokens), with 0 -> +1; ``k`` is (..., C)."""
    s = torch.sign(k.detach().reshape(-1, k.shape[-1]).float().mean(dim=0))
    return torch.where(s == 0, torch.ones_like(s), s)


@torch.no_grad()
def flip_query_key(module: nn.Module, signs: Tensor) -> None:
    """Multiply the rows (and biases) of ``q_proj`` and ``k_proj`` by ``signs``."""
    for proj_name in ("q_proj", "k_proj"):
        proj = getattr(module, proj_name)
        s = signs.to(proj.weight)
        proj.weight.mul_(s[:, None])
        if proj.bias is not None:
            proj.bias.mul_(s)


def big_targets(model: nn.Module, scope: str = "token_to_image") -> dict[str, nn.Module]:
    """Split-projection attentions BIG examines: PTQ4SAM's ``cross_attn_token_to_image`` or all."""
    out = {}
    for name, mod in attention_modules(model).items():
        if not hasattr(mod, "k_proj"):
            continue
        if scope == "all" or name.endswith("cross_attn_token_to_image"):
            out[name] = mod
    return out


def bimodal_integration(
    modules: Mapping[str, nn.Module], keys: Mapping[str, Tensor]
) -> dict[str, BigResult]:
    """For each module with a bimodal key sample, flip its q/k projections by the sign vector."""
    results = {}
    for name, mod in modules.items():
        k = keys.get(name)
        if k is None or k.numel() == 0:
            continue
        peaks = count_peaks(k)
        flipped = 0
        if peaks == 2:
            s = sign_vector(k)
            flip_query_key(mod, s)
            flipped = int((s < 0).sum())
        results[name] = BigResult(peaks, peaks == 2, flipped)
    return results

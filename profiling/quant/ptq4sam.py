"""PTQ4SAM Bimodal Integration (BIG): detect a bimodal post-key activation, fold it into one mode.

Detection (PTQ4SAM ``judge_bimodal``): flatten the key projection's output, fit a gaussian KDE,
evaluate it at 128 points over [min, max], ``find_peaks(y, height=0.01·Σy, distance=32)``;
bimodal <=> exactly two peaks. Then s_c = sign(mean over tokens of key channel c) and
W_k <- diag(s) W_k, b_k <- s ⊙ b_k, and the same for W_q, b_q: q·kᵀ is unchanged since s² = 1,
while every key channel now has a positive mean, so the per-tensor key distribution is unimodal.
AGQ (the other PTQ4SAM method) lives in ``logquant`` and is installed by ``apply``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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
    "big_supported",
    "key_slice",
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


def key_slice(module: Any) -> tuple[nn.Module, slice]:
    """The layer whose output holds the keys, and the output channels that are the keys:
    ``k_proj`` (all of them) or a fused ``qkv`` (the middle third)."""
    if hasattr(module, "k_proj"):
        return module.k_proj, slice(None)
    qkv = module.qkv
    c = qkv.out_features // 3
    return qkv, slice(c, 2 * c)


def big_supported(module: nn.Module) -> bool:
    """Whether flipping q / k channel signs leaves this attention's output unchanged: not with
    RoPE (the rotation mixes channel pairs), Hiera q-pooling (a max-pool of q) or SAM's
    decomposed relative positions (a q-dependent term besides q·kᵀ)."""
    if type(module).__name__ == "RoPEAttention":
        return False
    if hasattr(module, "k_proj"):
        return True
    return getattr(module, "q_pool", None) is None and not getattr(module, "use_rel_pos", False)


@torch.no_grad()
def flip_query_key(module: Any, signs: Tensor) -> None:
    """Multiply the rows (and biases) of the query and key projections by ``signs``."""
    if hasattr(module, "k_proj"):
        parts = [(module.q_proj, slice(None)), (module.k_proj, slice(None))]
    else:
        c = module.qkv.out_features // 3
        parts = [(module.qkv, slice(0, c)), (module.qkv, slice(c, 2 * c))]
    for proj, rows in parts:
        s = signs.to(proj.weight)
        proj.weight[rows].mul_(s[:, None])
        if proj.bias is not None:
            proj.bias[rows].mul_(s)


def big_targets(
    model: nn.Module, scope: str = "token_to_image", sites: Iterable[str] = ()
) -> dict[str, nn.Module]:
    """Attentions BIG examines: PTQ4SAM's ``cross_attn_token_to_image`` (or ``all`` split-
    projection ones), plus every attention whose ``qk_matmul`` site is in ``sites`` (the plan
    quantizes its key projection's output) where a sign flip is exact (``big_supported``)."""
    attns = {site.rsplit(".", 1)[0] for site in sites if site.endswith(".qk_matmul")}
    out = {}
    for name, mod in attention_modules(model).items():
        ptq4sam = hasattr(mod, "k_proj") and (
            scope == "all" or name.endswith("cross_attn_token_to_image")
        )
        if ptq4sam or (name in attns and big_supported(mod)):
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

"""PTQ4SAM Adaptive Granularity Quantization (AGQ): the log2 quantizer and its per-site search.

x_int = round(-tau * log2(x / s)); x_q = clamp(x_int, 0, 2^b - 1); x_hat = s * 2^(-x_q / tau);
values with x_int >= 2^b (and x = 0) become 0. tau in {1, 2, 4} gives bases 2, sqrt 2, 2^(1/4).
The search picks tau, and the scale s by a bounded scalar search, minimising the error after the
attn @ V product, ||x_hat V - x V||_p^p with PTQ4SAM's p = 2.4, summed over calibration samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from scipy.optimize import minimize_scalar
from torch import Tensor

__all__ = [
    "TAUS",
    "AGQ_P",
    "AGQResult",
    "log2_quantize",
    "log2_dequantize",
    "log2_fake_quantize",
    "agq_search",
]

TAUS = (1, 2, 4)
AGQ_P = 2.4


def log2_quantize(x: Tensor, scale: Tensor | float, tau: int, bits: int) -> Tensor:
    """Integer levels (as float); values below the last level are marked ``2^bits`` (-> 0)."""
    levels = 2**bits
    x_int = torch.round(-tau * torch.log2(x.clamp(min=0) / scale))  # +inf where x == 0
    return torch.where(x_int >= levels, torch.full_like(x_int, levels), x_int.clamp(min=0))


def log2_dequantize(q: Tensor, scale: Tensor | float, tau: int, bits: int) -> Tensor:
    """``s * 2^(-q / tau)``, and 0 for the off-grid marker ``2^bits``."""
    x_hat = torch.exp2(-q / tau) * scale
    return torch.where(q >= 2**bits, torch.zeros_like(x_hat), x_hat)


def log2_fake_quantize(x: Tensor, scale: Tensor | float, tau: int, bits: int) -> Tensor:
    """Quantize then dequantize on the log2 grid, with a straight-through gradient."""
    x_hat = log2_dequantize(log2_quantize(x.detach(), scale, tau, bits), scale, tau, bits)
    if not x.requires_grad:
        return x_hat.to(x.dtype)
    return x + (x_hat.to(x.dtype) - x).detach()


@dataclass(frozen=True)
class AGQResult:
    """The chosen granularity and scale of one site, and the error of every tau tried."""

    tau: int
    scale: float
    errors: dict[int, float]


def _prepare(samples: Sequence[tuple[Tensor, Tensor]]) -> list[tuple[Tensor, Tensor, Tensor]]:
    """(log2 probs, v, probs @ v) per sample: the log is taken once, not once per evaluation."""
    return [(torch.log2(p.clamp(min=0)), v, p @ v) for p, v in samples]


def _error(
    samples: Sequence[tuple[Tensor, Tensor, Tensor]], scale: float, tau: int, bits: int
) -> float:
    """Σ ‖x̂ V − x V‖_p^p, with x̂ computed from the cached log2 x."""
    log_s, total = math.log2(scale), 0.0
    for log_p, v, ref in samples:
        q = torch.round(-tau * (log_p - log_s))
        x_hat = torch.exp2(log_s - q.clamp(min=0) / tau)
        x_hat = torch.where(q >= 2**bits, torch.zeros_like(x_hat), x_hat)
        total += float((x_hat @ v - ref).abs().pow(AGQ_P).sum())
    return total


def agq_search(
    samples: Sequence[tuple[Tensor, Tensor]], bits: int, taus: Sequence[int] = TAUS
) -> AGQResult:
    """Per tau, a bounded search over s in [min(0.1, 0.01 max), max]; keep the best tau."""
    if not samples:
        raise ValueError("agq_search needs at least one (probs, v) sample")
    top = max(float(p.max()) for p, _ in samples)
    top = top if top > 0 else 1.0
    lo = min(0.1, 0.01 * top)
    triples = _prepare(samples)
    errors: dict[int, float] = {}
    scales: dict[int, float] = {}
    for tau in taus:
        res = minimize_scalar(
            lambda s, t=tau: _error(triples, float(s), t, bits),
            bounds=(lo, top),
            method="bounded",
            options={"xatol": 1e-3 * top, "maxiter": 25},
        )
        scales[tau], errors[tau] = float(res.x), float(res.fun)
        at_top = _error(triples, top, tau, bits)  # the bound itself is never evaluated
        if at_top <= errors[tau]:
            scales[tau], errors[tau] = top, at_top
    best = min(errors, key=lambda t: errors[t])
    return AGQResult(best, scales[best], errors)

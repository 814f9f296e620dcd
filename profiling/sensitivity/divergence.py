"""Output divergences, pure ``Tensor -> float`` functions.

``bernoulli_kl``: each mask-logit pixel is a Bernoulli variable p = sigmoid(logit);
KL(P_float ‖ P_quant) is summed over the two outcomes and averaged over every pixel of every
mask of the batch (the reduction all profiles use). ``pixel_distribution_kl``: Mix-QSAM's
reduction — sigmoid(logits) normalised over a mask's pixels into one distribution, KL per mask,
averaged over masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bernoulli_kl", "bernoulli_kl_tensor", "pixel_distribution_kl", "EPS"]

EPS = 1e-6


def bernoulli_kl(ref_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean over pixels of KL(Bernoulli(σ(ref)) ‖ Bernoulli(σ(logits)))."""
    return float(bernoulli_kl_tensor(ref_logits, logits))


def bernoulli_kl_tensor(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """The same, as a differentiable tensor (computed in float64: the KLs are tiny)."""
    ref_logits, logits = ref_logits.double(), logits.double()
    p = torch.sigmoid(ref_logits)
    log_p, log_1p = F.logsigmoid(ref_logits), F.logsigmoid(-ref_logits)
    log_q, log_1q = F.logsigmoid(logits), F.logsigmoid(-logits)
    kl = p * (log_p - log_q) + (1 - p) * (log_1p - log_1q)
    return kl.mean()


def pixel_distribution_kl(ref_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mix-QSAM: KL between sigmoid maps normalised over each mask's pixels (clamped at EPS)."""

    def dist(x: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(x.flatten(start_dim=-2).double())
        return (p / p.sum(-1, keepdim=True)).clamp_min(EPS)

    ref, pert = dist(ref_logits), dist(logits)
    return float((ref * (ref.log() - pert.log())).sum(-1).mean())

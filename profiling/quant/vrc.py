"""Q-SAM2 Variance-Reduced Calibration (VRC): ridge re-fit of a Linear's weight before quantizing.

With X the layer's FP calibration inputs and Y = X Wᵀ its FP outputs (bias aside),
Ŵᵀ = (XᵀX + λI)⁻¹ XᵀY = (H + λI)⁻¹ H Wᵀ with H = XᵀX, so only H is accumulated. The ridge
shrinks W along input directions the data barely excites: range that quantization pays for but
outputs hardly use. λ rule: λ = α · trace(H) / d_in, i.e. α relative to the mean eigenvalue of H
(scale-free). α is picked per layer from ``ALPHAS`` (α = 0 keeps W) by two-fold cross-validation
over calibration calls: fit on one half's H, score the quantized output error
‖X(Q(Ŵ) − W)ᵀ‖² = tr((Q(Ŵ) − W) H (Q(Ŵ) − W)ᵀ) on the other half, so that a λ which only fits
the calibration tokens is not chosen. Layers with fewer than ``MIN_ROWS_PER_DIM · d_in`` rows are
under-determined and left alone. Q-SAM2 does not publish λ; this rule is ours.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from profiling.quant.primitives import fake_quantize_weight
from profiling.quant.spec import QuantSpec

__all__ = ["ALPHAS", "MIN_ROWS_PER_DIM", "VrcResult", "recon_error", "ridge_refit", "vrc_layer"]

ALPHAS = (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
MIN_ROWS_PER_DIM = 4


@dataclass(frozen=True)
class VrcResult:
    """Per-layer report: relative quantized-output error and weight variance, before and after."""

    alpha: float
    lam: float
    error_before: float
    error_after: float
    var_before: float
    var_after: float

    def to_dict(self) -> dict[str, float]:
        return {k: float(getattr(self, k)) for k in self.__dataclass_fields__}


def recon_error(w_hat: Tensor, w: Tensor, gram: Tensor) -> float:
    """‖X(Ŵ − W)ᵀ‖² / ‖XWᵀ‖², from H = XᵀX alone."""
    d = (w_hat.double() - w.double()).T
    wt = w.double().T
    ref = float(torch.einsum("ij,ik,kj->", wt, gram, wt))
    return float(torch.einsum("ij,ik,kj->", d, gram, d)) / max(ref, 1e-30)


def ridge_refit(w: Tensor, gram: Tensor, lam: float) -> Tensor:
    """Ŵ = W H (H + λI)⁻¹ (the transpose of (H + λI)⁻¹ H Wᵀ); λ = 0 returns W."""
    return _Ridge(w, gram).refit(lam) if lam > 0 else w


class _Ridge:
    """One eigendecomposition H = QΛQᵀ serves every λ: Ŵ = W Q diag(Λ / (Λ + λ)) Qᵀ."""

    def __init__(self, w: Tensor, gram: Tensor) -> None:
        evals, self.q = torch.linalg.eigh(gram)
        self.evals = evals.clamp(min=0)
        self.wq = w.double() @ self.q
        self.w, self.gram = w, gram
        self.mean_eig = float(torch.trace(gram)) / gram.shape[0]

    def refit(self, lam: float) -> Tensor:
        if lam <= 0:
            return self.w
        shrink = self.evals / (self.evals + lam)
        return ((self.wq * shrink) @ self.q.T).to(self.w.dtype)

    def at(self, alpha: float) -> Tensor:
        """Ŵ for λ = α · trace(H) / d_in."""
        return self.refit(alpha * self.mean_eig)


def _cv_error(halves: tuple[_Ridge, _Ridge], alpha: float, spec: QuantSpec) -> float:
    """Fit on one half, score the quantized re-fit on the other, both ways."""
    total = 0.0
    for fit, score in ((halves[0], halves[1]), (halves[1], halves[0])):
        total += recon_error(fake_quantize_weight(fit.at(alpha), spec), fit.w, score.gram)
    return total


def vrc_layer(
    w: Tensor, halves: tuple[Tensor, Tensor | None], rows: int, spec: QuantSpec
) -> tuple[Tensor, VrcResult]:
    """The ridge re-fit of ``w`` whose α cross-validates best (α = 0, i.e. W, if none beats it)."""
    a, b = halves
    alpha = 0.0
    if b is not None and rows >= MIN_ROWS_PER_DIM * w.shape[1]:
        folds = (_Ridge(w, a), _Ridge(w, b))
        errs = {al: _cv_error(folds, al, spec) for al in ALPHAS}
        alpha = min(errs, key=lambda al: (errs[al], al))
    gram = a if b is None else a + b
    lam = alpha * float(torch.trace(gram)) / gram.shape[0]
    w_hat = ridge_refit(w, gram, lam)
    before = recon_error(fake_quantize_weight(w, spec), w, gram)
    after = recon_error(fake_quantize_weight(w_hat, spec), w, gram)
    return w_hat, VrcResult(alpha, lam, before, after, float(w.var()), float(w_hat.var()))

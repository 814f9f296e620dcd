"""Uniform quantization numerics: choose qparams, quantize, dequantize; fake-quant composes them.

Integer ranges: asymmetric ``[0, 2^b - 1]`` with a uint8 zero-point; symmetric
``[-2^(b-1), 2^(b-1) - 1]`` with zero-point 0 and ``scale = absmax / (2^(b-1) - 1)``.
Every scale/zero-point returned is broadcastable to the tensor it was chosen for (per-group
scales are repeated over their group; ``compact_qparams`` gives the stored form).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from profiling.quant.spec import Granularity, PerChannel, PerGroup, PerTensor, QuantSpec

__all__ = [
    "MSE_GRID",
    "MSE_P",
    "PERCENTILE",
    "qrange",
    "choose_qparams",
    "compact_qparams",
    "compact_shape",
    "expand_qparams",
    "quantize",
    "dequantize",
    "fake_quantize",
    "weight_granularity",
    "fake_quantize_weight",
    "fake_quantize_activation",
    "range_qparams",
    "round_ste",
    "fake_quantize_range",
]

MSE_GRID = 100  # candidate clipping ratios in the MSE search (PTQ4SAM's MSEObserver)
MSE_P = 2.4  # the error norm exponent PTQ4SAM's observers minimise
PERCENTILE = 0.999  # the percentile method clips at the 0.1 % / 99.9 % quantiles
_EPS = 1e-8


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """Smallest and largest integer of a ``bits``-bit quantizer."""
    if symmetric:
        return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    return 0, 2**bits - 1


def _rows(x: Tensor, gran: Granularity) -> tuple[Tensor, tuple[int, int, int]]:
    """View ``x`` as rows (one per scale), zero-padded; returns rows and (channels, groups, g)."""
    x = x.detach().float()
    if isinstance(gran, PerTensor):
        return x.reshape(1, -1), (1, 1, x.numel())
    moved = x.movedim(gran.axis, 0).reshape(x.shape[gran.axis], -1)
    if isinstance(gran, PerChannel):
        return moved, (moved.shape[0], 1, moved.shape[1])
    c, r = moved.shape
    g = gran.group_size
    groups = -(-r // g)
    padded = torch.nn.functional.pad(moved, (0, groups * g - r))
    return padded.reshape(c * groups, g), (c, groups, g)


def _expand(stat: Tensor, x: Tensor, gran: Granularity, layout: tuple[int, int, int]) -> Tensor:
    """Inverse of ``_rows`` for one value per row: a tensor broadcastable to ``x``."""
    if isinstance(gran, PerTensor):
        return stat.reshape(())
    shape = [1] * x.dim()
    shape[gran.axis] = x.shape[gran.axis]
    if isinstance(gran, PerChannel):
        return stat.reshape(shape)
    c, groups, g = layout
    full = stat.reshape(c, groups).repeat_interleave(g, dim=1)[:, : x.numel() // c]
    moved_shape = (x.shape[gran.axis], *[s for i, s in enumerate(x.shape) if i != gran.axis])
    return full.reshape(moved_shape).movedim(0, gran.axis)


def _range_qparams(lo: Tensor, hi: Tensor, bits: int, symmetric: bool) -> tuple[Tensor, Tensor]:
    """Scale and zero-point covering ``[lo, hi]`` (always widened to contain 0)."""
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
    qmin, qmax = qrange(bits, symmetric)
    if symmetric:
        scale = (torch.maximum(-lo, hi) / qmax).clamp(min=_EPS)
        return scale, torch.zeros_like(scale)
    scale = ((hi - lo) / (qmax - qmin)).clamp(min=_EPS)
    zero_point = (qmin - torch.round(lo / scale)).clamp(qmin, qmax)
    return scale, zero_point


def _quantile_rows(rows: Tensor, q: float) -> Tensor:
    """Per-row quantile by ``kthvalue`` (no size limit, unlike ``torch.quantile``)."""
    k = min(rows.shape[1], max(1, int(round(q * rows.shape[1]))))
    return rows.kthvalue(k, dim=1).values


def _mse_rows(rows: Tensor, bits: int, symmetric: bool) -> tuple[Tensor, Tensor]:
    """Per row, the min/max shrink (of ``MSE_GRID`` ratios) with the least ``|x - fq(x)|^2.4``."""
    lo, hi = rows.amin(dim=1), rows.amax(dim=1)
    best_err = torch.full_like(lo, float("inf"))
    best_lo, best_hi = lo.clone(), hi.clone()
    for i in range(MSE_GRID):
        ratio = 1.0 - i / MSE_GRID
        s, z = _range_qparams(lo * ratio, hi * ratio, bits, symmetric)
        fq = dequantize(
            quantize(rows, s[:, None], z[:, None], bits, symmetric), s[:, None], z[:, None]
        )
        err = (fq - rows).abs().pow(MSE_P).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best_lo = torch.where(better, lo * ratio, best_lo)
        best_hi = torch.where(better, hi * ratio, best_hi)
    return best_lo, best_hi


def choose_qparams(
    x: Tensor, bits: int, symmetric: bool, granularity: Granularity, method: str = "minmax"
) -> tuple[Tensor, Tensor]:
    """Scale and zero-point (float tensors broadcastable to ``x``) for ``x`` at ``bits``."""
    rows, layout = _rows(x, granularity)
    if method == "minmax":
        lo, hi = rows.amin(dim=1), rows.amax(dim=1)
    elif method == "percentile":
        lo, hi = _quantile_rows(rows, 1 - PERCENTILE), _quantile_rows(rows, PERCENTILE)
    elif method == "mse":
        lo, hi = _mse_rows(rows, bits, symmetric)
    else:
        raise ValueError(f"unknown qparams method {method!r}; known: minmax, percentile, mse")
    scale, zero_point = _range_qparams(lo, hi, bits, symmetric)
    return _expand(scale, x, granularity, layout), _expand(zero_point, x, granularity, layout)


def compact_qparams(t: Tensor, x_shape: torch.Size, granularity: Granularity) -> Tensor:
    """The stored form of an expanded scale / zero-point: one value per channel, group or tensor."""
    if isinstance(granularity, PerTensor):
        return t.reshape(-1)[:1]
    axis, c = granularity.axis, x_shape[granularity.axis]
    full = t.expand(x_shape).movedim(axis, 0).reshape(c, -1)
    if isinstance(granularity, PerChannel):
        return full[:, 0].contiguous()
    return full[:, :: granularity.group_size].contiguous()


def compact_shape(x_shape: torch.Size, granularity: Granularity) -> tuple[int, ...]:
    """Shape of the stored scales: (1,), (channels,) or (channels, groups)."""
    if isinstance(granularity, PerTensor):
        return (1,)
    c = x_shape[granularity.axis]
    if isinstance(granularity, PerChannel):
        return (c,)
    rest = math.prod(x_shape) // c
    return (c, -(-rest // granularity.group_size))


def expand_qparams(t: Tensor, x_shape: torch.Size, granularity: Granularity) -> Tensor:
    """Inverse of ``compact_qparams``: stored scales / zero-points broadcastable to ``x_shape``."""
    if isinstance(granularity, PerTensor):
        return t.reshape(())
    axis, c = granularity.axis, x_shape[granularity.axis]
    if isinstance(granularity, PerChannel):
        shape = [1] * len(x_shape)
        shape[axis] = c
        return t.reshape(shape)
    rest = math.prod(x_shape) // c
    full = t.reshape(c, -1).repeat_interleave(granularity.group_size, dim=1)[:, :rest]
    moved = (c, *[s for i, s in enumerate(x_shape) if i != axis])
    return full.reshape(moved).movedim(0, axis)


def quantize(x: Tensor, scale: Tensor, zero_point: Tensor, bits: int, symmetric: bool) -> Tensor:
    """Integer-valued float tensor ``clamp(round(x / scale) + zero_point)``."""
    qmin, qmax = qrange(bits, symmetric)
    return torch.clamp(torch.round(x / scale) + zero_point, qmin, qmax)


def dequantize(q: Tensor, scale: Tensor, zero_point: Tensor) -> Tensor:
    """``(q - zero_point) * scale``."""
    return (q - zero_point) * scale


def fake_quantize(
    x: Tensor, scale: Tensor, zero_point: Tensor, bits: int, symmetric: bool
) -> Tensor:
    """``dequantize(quantize(x))`` with a straight-through gradient."""
    fq = dequantize(quantize(x, scale, zero_point, bits, symmetric), scale, zero_point)
    if not x.requires_grad:
        return fq.to(x.dtype)
    return x + (fq.to(x.dtype) - x).detach()


def weight_granularity(spec: QuantSpec, channel_axis: int) -> Granularity:
    """The spec's weight granularity re-aimed at the layer's output-channel axis."""
    gran = spec.w_granularity
    if isinstance(gran, PerChannel):
        return PerChannel(channel_axis)
    if isinstance(gran, PerGroup):
        return PerGroup(gran.group_size, channel_axis)
    return gran


def fake_quantize_weight(w: Tensor, spec: QuantSpec, channel_axis: int = 0) -> Tensor:
    """Fake-quantize a weight by ``spec``; the layer's output-channel axis overrides the spec's."""
    if spec.w_bits >= 16:
        return w
    gran = weight_granularity(spec, channel_axis)
    scale, zero_point = choose_qparams(w, spec.w_bits, spec.w_symmetric, gran, spec.w_method)
    return fake_quantize(w, scale, zero_point, spec.w_bits, spec.w_symmetric)


def fake_quantize_activation(
    x: Tensor, spec: QuantSpec, scale: Tensor, zero_point: Tensor
) -> Tensor:
    """Fake-quantize an activation with calibrated per-tensor qparams; 16 bits leaves it alone."""
    if spec.a_bits >= 16:
        return x
    return fake_quantize(x, scale, zero_point, spec.a_bits, spec.a_symmetric)


def range_qparams(lo: Tensor, hi: Tensor, bits: int, symmetric: bool) -> tuple[Tensor, Tensor]:
    """Scale and zero-point covering ``[lo, hi]`` (widened to contain 0), as ``choose_qparams``."""
    return _range_qparams(lo, hi, bits, symmetric)


def round_ste(x: Tensor) -> Tensor:
    """``round`` with a straight-through (identity) gradient."""
    return x + (torch.round(x) - x).detach()


def fake_quantize_range(x: Tensor, lo: Tensor, hi: Tensor, bits: int, symmetric: bool) -> Tensor:
    """Fake-quantize ``x`` over the clipping range ``[lo, hi]``, differentiable in ``lo`` / ``hi``.

    The forward equals ``fake_quantize(x, *range_qparams(lo, hi))`` exactly; gradients reach the
    range through the scale and the zero-point (LSQ+-style: rounding is straight-through, clipped
    elements pass their gradient to the bound that clipped them, in-range ones through the
    rounding error). ``x`` gets the clipped straight-through gradient (zero outside the range).
    """
    lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)
    qmin, qmax = qrange(bits, symmetric)
    if symmetric:
        scale = (torch.maximum(-lo, hi) / qmax).clamp(min=_EPS)
        zero_point = torch.zeros_like(scale)
    else:
        scale = ((hi - lo) / (qmax - qmin)).clamp(min=_EPS)
        zero_point = (qmin - round_ste(lo / scale)).clamp(qmin, qmax)
    q = torch.clamp(round_ste(x / scale) + zero_point, qmin, qmax)
    return (q - zero_point) * scale

"""Integer scaling for CP-SAT, which only takes integer coefficients.

Losses go through ``scale_losses`` and nowhere else: each loss term v becomes round(v·s) for one
power-of-two scale s. A plan's float objective and the integer objective divided by s then differ
by at most ``error = terms · 0.5 / s`` (terms = how many loss terms one plan picks: one per unit
plus one per pair of units). The helper returns that error bound so plans can report it.

Costs go through ``scale_costs``, rounded so feasibility is never overstated: costs are rounded
up and the capacity down; integral costs (bytes, BOPs) are kept exact when they fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["LOSS_BITS", "COST_BITS", "ScaledLoss", "ScaledCost", "scale_losses", "scale_costs"]

LOSS_BITS = 36  # largest scaled loss coefficient is below 2**LOSS_BITS
COST_BITS = 50  # largest scaled total cost is below 2**COST_BITS


@dataclass(frozen=True)
class ScaledLoss:
    """Integer losses ``ints`` (same shapes as the input), their scale and error bound."""

    ints: list[np.ndarray]
    scale: float
    error: float

    def to_float(self, value: float) -> float:
        """An integer objective value (or bound) back in loss units."""
        return value / self.scale


@dataclass(frozen=True)
class ScaledCost:
    """Integer costs per unit, the integer capacity, the scale and the rounding bound."""

    ints: list[np.ndarray]
    capacity: int
    scale: float
    error: float


def scale_losses(arrays: list[np.ndarray], terms: int, bits: int = LOSS_BITS) -> ScaledLoss:
    """Scale non-negative float loss arrays to integers; ``terms`` = loss terms a plan picks.

    s = 2**k is the largest power of two with max(v)·s < 2**bits, so every coefficient keeps
    about ``bits`` significant bits; |Σ v − Σ round(v·s)/s| <= terms · 0.5 / s for any plan.
    """
    top = max((float(np.max(a)) for a in arrays if a.size), default=0.0)
    if top <= 0.0:
        return ScaledLoss([np.zeros(a.shape, dtype=np.int64) for a in arrays], 1.0, 0.0)
    scale = 2.0 ** (bits - 1 - math.frexp(top)[1])
    ints = [np.rint(a * scale).astype(np.int64) for a in arrays]
    exact = all(np.array_equal(i / scale, a) for i, a in zip(ints, arrays, strict=True))
    return ScaledLoss(ints, scale, 0.0 if exact else terms * 0.5 / scale)


def scale_costs(arrays: list[np.ndarray], capacity: float, bits: int = COST_BITS) -> ScaledCost:
    """Scale per-unit cost arrays and the capacity to integers without overstating feasibility.

    Exact (scale 1) when every cost is integral and the total fits in 2**bits; otherwise costs
    are rounded up and the capacity down at a power-of-two scale, so a plan feasible for the
    integer model is feasible for the float one, and the error bound is units / scale.
    """
    total = sum(float(np.max(a)) for a in arrays) + max(capacity, 0.0)
    integral = all(np.all(np.floor(a) == a) for a in arrays)
    if integral and total < 2.0**bits:
        ints = [a.astype(np.int64) for a in arrays]
        return ScaledCost(ints, math.floor(capacity), 1.0, 0.0)
    scale = 2.0 ** (bits - 1 - math.frexp(max(total, 1e-300))[1])
    ints = [np.ceil(a * scale).astype(np.int64) for a in arrays]
    return ScaledCost(ints, math.floor(capacity * scale), scale, len(arrays) / scale)

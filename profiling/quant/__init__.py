"""The quantization engine: specs, primitives, observers, apply_plan, PTQ4SAM, VRC, packing."""

from __future__ import annotations

from profiling.quant.spec import (
    A_BITS,
    W_BITS,
    PerChannel,
    PerGroup,
    PerTensor,
    QuantSpec,
    parse_candidate,
)

__all__ = [
    "A_BITS",
    "W_BITS",
    "PerChannel",
    "PerGroup",
    "PerTensor",
    "QuantSpec",
    "parse_candidate",
]

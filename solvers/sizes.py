"""The one size function: bytes a layer or a whole plan occupies in a packed artifact.

Shared by the solvers' cost tables and the packer (profiling.quant.pack), so that a plan's
predicted ``memory_bytes`` and the artifact on disk are computed by the same rules:

* a weight quantized to ``w < 16`` bits costs ``ceil(numel * w / 8)`` bytes of packed integers,
  plus one float32 scale per channel / group / tensor, plus one uint8 zero-point per scale when
  the quantizer is asymmetric;
* a weight left in float (``w == 16``) and every other float tensor (biases, norms, embeddings,
  layers the plan leaves alone) costs ``numel * bytes(float_dtype)`` (bfloat16 by default);
* an activation quantizer (``a < 16``) stores its per-tensor scale and zero-point.
"""

from __future__ import annotations

import math

__all__ = [
    "FLOAT_BYTES",
    "SCALE_BYTES",
    "ZERO_POINT_BYTES",
    "GRANULARITIES",
    "packed_bytes",
    "num_scales",
    "weight_bytes",
    "float_bytes",
    "activation_param_bytes",
]

FLOAT_BYTES: dict[str, int] = {"float32": 4, "bfloat16": 2, "float16": 2}
SCALE_BYTES = 4  # scales are stored as float32
ZERO_POINT_BYTES = 1  # zero-points are stored as uint8
GRANULARITIES = ("per_channel", "per_group", "per_tensor")


def packed_bytes(numel: int, bits: int) -> int:
    """Bytes of ``numel`` integers of ``bits`` bits packed back to back."""
    if numel < 0 or not 1 <= bits <= 8:
        raise ValueError(f"packed_bytes: need numel >= 0 and 1 <= bits <= 8, got {numel}, {bits}")
    return (numel * bits + 7) // 8


def num_scales(numel: int, channels: int, granularity: str, group_size: int | None = None) -> int:
    """How many scales a weight of ``numel`` elements and ``channels`` output channels stores."""
    if granularity == "per_tensor":
        return 1
    if channels <= 0 or numel % channels:
        raise ValueError(f"num_scales: {numel} elements do not split into {channels} channels")
    if granularity == "per_channel":
        return channels
    if granularity == "per_group":
        if not group_size or group_size <= 0:
            raise ValueError("num_scales: per_group needs a positive group_size")
        return channels * math.ceil((numel // channels) / group_size)
    raise ValueError(f"unknown granularity {granularity!r}; known: {', '.join(GRANULARITIES)}")


def weight_bytes(
    numel: int,
    channels: int,
    bits: int,
    granularity: str = "per_channel",
    group_size: int | None = None,
    symmetric: bool = False,
    float_dtype: str = "bfloat16",
) -> int:
    """Stored bytes of one weight tensor at ``bits`` (16 = kept in ``float_dtype``)."""
    if bits >= 16:
        return float_bytes(numel, float_dtype)
    per_scale = SCALE_BYTES + (0 if symmetric else ZERO_POINT_BYTES)
    return (
        packed_bytes(numel, bits) + num_scales(numel, channels, granularity, group_size) * per_scale
    )


def float_bytes(numel: int, float_dtype: str = "bfloat16") -> int:
    """Stored bytes of a tensor kept in float."""
    if float_dtype not in FLOAT_BYTES:
        raise ValueError(f"unknown float dtype {float_dtype!r}; known: {', '.join(FLOAT_BYTES)}")
    return numel * FLOAT_BYTES[float_dtype]


def activation_param_bytes(bits: int, symmetric: bool = False) -> int:
    """Stored bytes of a per-tensor activation quantizer (its scale and zero-point)."""
    if bits >= 16:
        return 0
    return SCALE_BYTES + (0 if symmetric else ZERO_POINT_BYTES)

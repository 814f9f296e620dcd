"""Which ONNX form each quantized layer takes: integer containers and the opset.

The choices are the ones onnxruntime 1.32 turns into integer kernels (checked by
``tests/profiling/export/test_fusion.py`` on the optimized graph, not assumed).
"""

from __future__ import annotations

from collections.abc import Iterable

from profiling.export.qdq import INT2_OPSET, OPSET
from profiling.quant.spec import QuantSpec

__all__ = ["USE_INT2", "int2_ok", "opset_for"]

# INT2 DequantizeLinear needs opset 25: onnx 1.23.2 checks it and onnxruntime 1.32 runs it.
USE_INT2 = True


def int2_ok(bits: int) -> bool:
    """True when ``bits``-bit weights are stored as INT2 / UINT2."""
    return USE_INT2 and bits <= 2


def opset_for(specs: Iterable[QuantSpec]) -> int:
    """Opset 21, or 25 when some weight is stored as INT2."""
    return INT2_OPSET if any(s.w_bits < 16 and int2_ok(s.w_bits) for s in specs) else OPSET

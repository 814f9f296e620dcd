"""ONNX building blocks shared by the layer graphs and the full export.

A quantized weight becomes an integer initializer (the plan's integers, in the smallest standard
ONNX type that holds them) followed by ``DequantizeLinear`` with bitbudget's own scales and zero
points; a quantized activation becomes ``QuantizeLinear -> DequantizeLinear`` with the
calibrated per-tensor range. Both compute exactly what ``profiling.quant`` fake-quant computes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from profiling.quant.pack import WeightIntegers
from profiling.quant.primitives import qrange
from profiling.quant.spec import PerChannel, PerGroup, PerTensor

__all__ = [
    "OPSET",
    "INT2_OPSET",
    "Nodes",
    "container",
    "weight_dq",
    "activation_qdq",
]

OPSET = 21  # blocked DequantizeLinear and INT4 / UINT4 arrive at opset 21
INT2_OPSET = 25  # INT2 / UINT2 DequantizeLinear (onnx 1.23 + onnxruntime 1.32 both run it)

# bits -> (signed, unsigned) container: (ONNX type, numpy dtype, name)
_CONTAINERS = {
    2: ((TensorProto.INT2, ml_dtypes.int2, "INT2"), (TensorProto.UINT2, ml_dtypes.uint2, "UINT2")),
    4: ((TensorProto.INT4, ml_dtypes.int4, "INT4"), (TensorProto.UINT4, ml_dtypes.uint4, "UINT4")),
    8: ((TensorProto.INT8, np.int8, "INT8"), (TensorProto.UINT8, np.uint8, "UINT8")),
}


@dataclass
class Nodes:
    """Nodes and initializers to add to a graph, and the name of the value they produce."""

    output: str
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    initializers: list[onnx.TensorProto] = field(default_factory=list)
    container: str = ""
    offset: int = 0  # stored integer = the plan's integer - offset (zero point likewise)


def container(bits: int, symmetric: bool, int2: bool) -> tuple[int, type, str]:
    """The smallest standard ONNX integer type holding ``bits``-bit integers (INT2 if allowed)."""
    width = 2 if bits <= 2 and int2 else 4 if bits <= 4 else 8
    return _CONTAINERS[width][0 if symmetric else 1]


def weight_container(bits: int, symmetric: bool, int2: bool) -> tuple[int, type, str, int]:
    """``container`` for a weight, plus the offset subtracted from its integers.

    Asymmetric 5- to 8-bit weights are stored signed, shifted by ``2**(bits-1)`` (values and
    zero points alike, so ``(q - zp) * scale`` is unchanged): onnxruntime's x86 int8 GEMMs
    (AVX512-VNNI / AMX) take unsigned activations times *signed* weights, and run UINT8
    weights 3-4x slower (measured on this machine; ``docs/export.md``). 2- and 4-bit weights
    keep their unsigned containers, the form ``MatMulNBits`` takes.
    """
    onnx_type, np_type, name = container(bits, symmetric, int2)
    if symmetric or name != "UINT8":
        return onnx_type, np_type, name, 0
    signed = _CONTAINERS[8][0]
    return signed[0], signed[1], signed[2], 2 ** (bits - 1)


def _matmul_layout(wi: WeightIntegers) -> tuple:
    """For ``MatMul(x, Wᵀ)``: integers (K, N), scales and DequantizeLinear attributes."""
    ints, scale, zp = wi.ints.T, wi.scale, wi.zero_point
    gran = wi.granularity
    if isinstance(gran, PerTensor):
        return ints, scale.reshape(()), zp.reshape(()), {}
    if isinstance(gran, PerChannel):
        return ints, scale.reshape(-1), zp.reshape(-1), {"axis": 1}
    assert isinstance(gran, PerGroup)
    return ints, scale.T, zp.T, {"axis": 0, "block_size": gran.group_size}


def _as_is_layout(wi: WeightIntegers) -> tuple:
    """For Conv / Gemm(transB) / ConvTranspose: integers in the weight's own layout."""
    ints, scale, zp, gran = wi.ints, wi.scale, wi.zero_point, wi.granularity
    if isinstance(gran, PerTensor):
        return ints, scale.reshape(()), zp.reshape(()), {}
    if isinstance(gran, PerChannel):
        return ints, scale.reshape(-1), zp.reshape(-1), {"axis": gran.axis}
    assert isinstance(gran, PerGroup) and gran.axis == 0
    flat = ints.reshape(ints.shape[0], -1)  # groups run over the flattened rest, as fake-quant
    return flat, scale, zp, {"axis": 1, "block_size": gran.group_size}


def weight_dq(
    prefix: str,
    wi: WeightIntegers,
    *,
    matmul: bool,
    int2: bool,
) -> Nodes:
    """Integer initializer + DequantizeLinear producing the layer's float weight.

    ``matmul``: the graph multiplies by the transposed weight (torch's Linear export);
    otherwise the weight keeps its own layout (a per-group conv weight is reshaped back).
    """
    if matmul:
        ints, scale, zp, attrs = _matmul_layout(wi)
    else:
        ints, scale, zp, attrs = _as_is_layout(wi)
    onnx_type, np_type, name, offset = weight_container(wi.bits, wi.symmetric, int2)
    lo, hi = qrange(wi.bits, wi.symmetric)
    arr = ints.contiguous().numpy()
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise ValueError(f"{prefix}: integers outside [{lo}, {hi}]")
    if offset:
        arr = arr.astype(np.int64) - offset
    inits = [
        numpy_helper.from_array(arr.astype(np_type), f"{prefix}.weight_q"),
        numpy_helper.from_array(
            scale.contiguous().numpy().astype(np.float32), f"{prefix}.weight_scale"
        ),
    ]
    inputs = [f"{prefix}.weight_q", f"{prefix}.weight_scale"]
    if not wi.symmetric:
        zp_arr = (zp.contiguous().numpy().round().astype(np.int64) - offset).astype(np_type)
        inits.append(numpy_helper.from_array(zp_arr, f"{prefix}.weight_zero_point"))
        inputs.append(f"{prefix}.weight_zero_point")
    out = f"{prefix}.weight_dq"
    nodes = [helper.make_node("DequantizeLinear", inputs, [out], f"{prefix}/weight_dq", **attrs)]
    if not matmul and tuple(ints.shape) != tuple(wi.ints.shape):
        shape = numpy_helper.from_array(np.array(wi.ints.shape, np.int64), f"{prefix}.weight_shape")
        inits.append(shape)
        nodes.append(
            helper.make_node(
                "Reshape", [out, shape.name], [f"{out}_4d"], f"{prefix}/weight_reshape"
            )
        )
        out = f"{out}_4d"
    return Nodes(out, nodes, inits, name, offset)


def activation_qdq(
    prefix: str, x: str, scale: float, zero_point: float, bits: int, symmetric: bool
) -> Nodes:
    """``x -> [Clip] -> QuantizeLinear -> DequantizeLinear``: fake-quant of one activation.

    8-bit activations use the full INT8 / UINT8 range; 4- and 6-bit ones live in the same 8-bit
    container (so the int8 kernels still apply) behind a Clip to their own integer range.
    """
    onnx_type, np_type, name = container(8, symmetric, int2=False)
    qmin, qmax = qrange(bits, symmetric)
    s = numpy_helper.from_array(np.array(scale, np.float32), f"{prefix}.act_scale")
    z = numpy_helper.from_array(
        np.array(round(zero_point)).astype(np_type), f"{prefix}.act_zero_point"
    )
    inits, nodes = [s, z], []
    src = x
    if bits < 8:
        lo = numpy_helper.from_array(
            np.array((qmin - zero_point) * scale, np.float32), f"{prefix}.act_lo"
        )
        hi = numpy_helper.from_array(
            np.array((qmax - zero_point) * scale, np.float32), f"{prefix}.act_hi"
        )
        inits += [lo, hi]
        src = f"{prefix}.act_clipped"
        nodes.append(helper.make_node("Clip", [x, lo.name, hi.name], [src], f"{prefix}/act_clip"))
    q, dq = f"{prefix}.act_q", f"{prefix}.act_dq"
    nodes.append(helper.make_node("QuantizeLinear", [src, s.name, z.name], [q], f"{prefix}/act_q"))
    nodes.append(
        helper.make_node("DequantizeLinear", [q, s.name, z.name], [dq], f"{prefix}/act_dq")
    )
    return Nodes(dq, nodes, inits, name)

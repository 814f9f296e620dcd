"""One layer as a standalone ONNX graph, in exactly the form the full export writes for it.

For latency measurement of a layer in isolation: ``layer_model(layer, "w4a16", shape)`` is the
layer's MatMul / Conv with the plan-width integer weight initializer and ``DequantizeLinear``
(and ``QuantizeLinear -> DequantizeLinear`` on its input when activations are quantized), the
same ``qdq`` blocks ``bundle.export_plan`` inserts into the model graph.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from profiling.export.errors import ExportError
from profiling.export.qdq import Nodes, activation_qdq, weight_dq
from profiling.export.rules import int2_ok, opset_for
from profiling.quant.pack import weight_integers
from profiling.quant.primitives import range_qparams
from profiling.quant.spec import QuantSpec, parse_candidate

__all__ = ["layer_model", "conv_attributes"]

_SEED = 0


def _get(layer: Mapping[str, Any], key: str) -> Any:
    if key not in layer or layer[key] is None:
        raise ExportError(f"layer {layer.get('name')!r}: {key}: missing from the inventory entry")
    return layer[key]


def _pad_for(size_in: int, size_out: int, k: int, s: int) -> int:
    """The padding that maps ``size_in`` to ``size_out`` (same-style first, then none)."""
    for p in ((k - 1) // 2, (k - s) // 2, 0):
        if p >= 0 and (size_in + 2 * p - k) // s + 1 == size_out:
            return p
    raise ExportError(f"no padding maps {size_in} to {size_out} with kernel {k}, stride {s}")


def conv_attributes(
    layer: Mapping[str, Any], weight_shape: Sequence[int], input_shape: Sequence[int]
) -> dict[str, Any]:
    """Conv attributes: ``stride`` / ``padding`` / ``groups`` from the entry, else inferred
    from its recorded input and output shapes (the inventory records shapes, not attributes)."""
    out_c, in_per_group, kh, kw = weight_shape
    groups = int(layer.get("groups") or input_shape[1] // in_per_group)
    in_hw, out_hw = list(_get(layer, "in_shape"))[-2:], list(_get(layer, "out_shape"))[-2:]
    stride = layer.get("stride") or [max(1, round(i / o)) for i, o in zip(in_hw, out_hw)]
    stride = [int(s) for s in (stride if isinstance(stride, Sequence) else (stride, stride))]
    pad = layer.get("padding")
    if pad is None:
        pad = [_pad_for(i, o, k, s) for i, o, k, s in zip(in_hw, out_hw, (kh, kw), stride)]
    pad = [int(p) for p in (pad if isinstance(pad, Sequence) else (pad, pad))]
    return {"strides": stride, "pads": [pad[0], pad[1], pad[0], pad[1]], "group": groups}


def _weight(
    layer: Mapping[str, Any], input_shape: Sequence[int], given: torch.Tensor | None
) -> torch.Tensor:
    if given is not None:
        return given.detach().float()
    out_c = int(_get(layer, "channels"))
    if layer["kind"] == "linear":
        shape: tuple[int, ...] = (out_c, int(input_shape[-1]))
    else:
        numel = int(_get(layer, "weight_numel"))
        k2 = numel // (out_c * int(input_shape[1]))
        k = int(round(k2**0.5))
        shape = (out_c, numel // (out_c * k * k), k, k)
    gen = torch.Generator().manual_seed(_SEED)
    return torch.randn(shape, generator=gen) / shape[1] ** 0.5


def _weight_nodes(name: str, w: torch.Tensor, spec: QuantSpec, matmul: bool) -> Nodes:
    if spec.w_bits >= 16:
        arr = (w.T if matmul else w).contiguous().numpy()
        return Nodes(
            f"{name}.weight", initializers=[numpy_helper.from_array(arr, f"{name}.weight")]
        )
    wi = weight_integers(w, spec, 0)
    return weight_dq(name, wi, matmul=matmul, int2=int2_ok(spec.w_bits))


def layer_model(
    layer: Mapping[str, Any],
    option: str,
    input_shape: Sequence[int],
    *,
    weight: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    act_range: tuple[float, float] = (-4.0, 4.0),
) -> onnx.ModelProto:
    """``layer`` (an inventory entry: Linear or Conv2d) at ``option`` as one ONNX graph.

    The first input dimension is symbolic (``batch``), as in the full export, so that
    onnxruntime keeps MatMul in the form its integer kernels fuse. Without ``weight`` a seeded
    random weight of the layer's shape is used; ``act_range`` is the activation range the
    input quantizer covers (the calibrated range, in the full export).
    """
    kind, name = layer.get("kind"), str(layer.get("name", "layer"))
    if kind not in ("linear", "conv2d"):
        raise ExportError(
            f"layer {name!r}: kind: {kind!r} has no standalone graph (linear, conv2d)"
        )
    spec = parse_candidate(option)
    w = _weight(layer, input_shape, weight)
    matmul = kind == "linear"
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    src = "x"
    if spec.a_bits < 16:
        s, z = range_qparams(
            torch.tensor(act_range[0]), torch.tensor(act_range[1]), spec.a_bits, spec.a_symmetric
        )
        act = activation_qdq(name, src, float(s), float(z), spec.a_bits, spec.a_symmetric)
        nodes += act.nodes
        inits += act.initializers
        src = act.output
    wn = _weight_nodes(name, w, spec, matmul)
    nodes += wn.nodes
    inits += wn.initializers
    has_bias = bias is not None or int(layer.get("params") or 0) > w.numel()
    b = (bias if bias is not None else torch.zeros(w.shape[0])).detach().float().numpy()
    if has_bias:
        inits.append(numpy_helper.from_array(b, f"{name}.bias"))
    if matmul:
        nodes.append(
            helper.make_node(
                "MatMul", [src, wn.output], ["mm" if has_bias else "y"], f"{name}/MatMul"
            )
        )
        if has_bias:
            nodes.append(helper.make_node("Add", ["mm", f"{name}.bias"], ["y"], f"{name}/Add"))
        out_shape: list[Any] = ["batch", *input_shape[1:-1], w.shape[0]]
    else:
        attrs = conv_attributes(layer, tuple(w.shape), input_shape)
        conv_in = [src, wn.output] + ([f"{name}.bias"] if has_bias else [])
        nodes.append(helper.make_node("Conv", conv_in, ["y"], f"{name}/Conv", **attrs))
        out_shape = ["batch", w.shape[0], None, None]
    graph = helper.make_graph(
        nodes,
        f"{name}:{option}",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *input_shape[1:]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset_for([spec]))])
    model.ir_version = 10
    return model

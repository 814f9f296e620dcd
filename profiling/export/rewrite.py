"""From a calibrated fake-quant model to QDQ ONNX: export-mode quantizers and weight rewriting.

Activations: each calibrated ``ActQuantizer`` is swapped for ``OnnxActQuantizer`` before tracing,
whose ``torch.fake_quantize_per_tensor_affine`` the exporter writes as ``QuantizeLinear ->
DequantizeLinear`` right at the layer's (or attention matmul's) input — the same numbers, no
node-name guessing. Weights: the traced graph holds each quantized layer's fake-quant weight (or
its transpose, for MatMul) as a float initializer; it is found by content, replaced by the
plan's integers plus ``DequantizeLinear`` writing the same value name (``qdq.weight_dq``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import Tensor, nn

from profiling.export.qdq import weight_dq
from profiling.export.rules import int2_ok
from profiling.quant.modules import ActQuantizer
from profiling.quant.pack import WeightIntegers
from profiling.quant.primitives import qrange

__all__ = ["OnnxActQuantizer", "swap_act_quantizers", "WeightSite", "replace_weights"]


class OnnxActQuantizer(nn.Module):
    """A calibrated ``ActQuantizer`` in the form torch.onnx writes as [Clip ->] Q -> DQ.

    4- and 6-bit ranges live in an 8-bit container behind a clamp to their integer range.
    """

    def __init__(self, q: ActQuantizer) -> None:
        super().__init__()
        self.bits, self.symmetric = q.bits, q.symmetric
        self.scale, self.zero_point = float(q.scale), int(round(float(q.zero_point)))
        qmin, qmax = qrange(q.bits, q.symmetric)
        self.lo = (qmin - self.zero_point) * self.scale
        self.hi = (qmax - self.zero_point) * self.scale

    def forward(self, x: Tensor) -> Tensor:
        if self.bits < 8:
            x = torch.clamp(x, self.lo, self.hi)
        qmin, qmax = qrange(8, self.symmetric)
        return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, qmin, qmax)


def swap_act_quantizers(model: nn.Module) -> dict[str, dict[str, float]]:
    """Replace every enabled uniform ``ActQuantizer`` in place; returns name -> its qparams."""
    found: dict[str, dict[str, float]] = {}
    for name, mod in list(model.named_modules()):
        if type(mod) is not ActQuantizer or not mod.enabled or mod.bits >= 16:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        onnx_q = OnnxActQuantizer(mod)
        setattr(parent, child, onnx_q)
        found[name] = {"bits": mod.bits, "scale": onnx_q.scale, "zero_point": onnx_q.zero_point}
    return found


@dataclass
class WeightSite:
    """A quantized layer's integers and the float weight the traced graph holds for it."""

    name: str
    ints: WeightIntegers
    float_weight: Tensor


def _digest(arr: np.ndarray) -> str:
    a = np.ascontiguousarray(arr, dtype=np.float32)
    return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()


def _index(sites: Mapping[str, WeightSite]) -> dict[str, list[tuple[str, bool]]]:
    """Content digest -> [(layer, transposed)] for each weight and its transpose."""
    index: dict[str, list[tuple[str, bool]]] = {}
    for name, site in sites.items():
        w = site.float_weight.detach().float().numpy()
        index.setdefault(_digest(w), []).append((name, False))
        if w.ndim == 2:
            index.setdefault(_digest(w.T), []).append((name, True))
    return index


def replace_weights(model: onnx.ModelProto, sites: Mapping[str, WeightSite]) -> dict[str, dict]:
    """Swap each site's float initializer(s) for integers + DequantizeLinear, in place.

    Returns layer -> {"initializers": [...], "container": ...} for the layers found in this
    graph. Two layers whose float weights are identical but whose integers differ cannot be
    told apart by content: that raises rather than guessing.
    """
    index = _index(sites)
    graph = model.graph
    found: dict[str, dict] = {}
    keep: list[onnx.TensorProto] = []
    new_nodes: list[onnx.NodeProto] = []
    for init in graph.initializer:
        hits = []
        if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) in (2, 4):
            hits = index.get(_digest(numpy_helper.to_array(init)), [])
        if not hits:
            keep.append(init)
            continue
        (name, transposed), rest = hits[0], hits[1:]
        ints = sites[name].ints
        for other, _ in rest:
            o = sites[other].ints
            if o.bits != ints.bits or not torch.equal(o.scale, ints.scale):
                raise ValueError(f"layers {name!r} and {other!r} have identical float weights")
        entry = found.setdefault(name, {"initializers": []})
        prefix = name if not entry["initializers"] else f"{name}#{len(entry['initializers'])}"
        block = weight_dq(prefix, ints, matmul=transposed, int2=int2_ok(ints.bits))
        block.nodes[-1].output[0] = init.name  # consumers read the dequantized weight
        new_nodes += block.nodes
        keep += block.initializers
        entry["container"] = block.container
        entry["offset"] = block.offset
        entry["initializers"].append(block.initializers[0].name)
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes = new_nodes + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    return found

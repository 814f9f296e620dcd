"""The packed artifact: a safetensors file whose tensor bytes equal ``predict_bytes`` of its plan.

Tensors (state-dict names of the quantized model):
* ``<layer>.weight.packed``     uint8, the weight's integers bit-packed (``bitpack``), row-major
  in the weight's own shape; symmetric integers are stored offset by 2^(bits-1);
* ``<layer>.weight.scale``      float32, one per channel / group / tensor (compact shape);
* ``<layer>.weight.zero_point`` uint8, same shape (asymmetric weights only);
* ``<quantizer>.scale`` / ``<quantizer>.zero_point``: float32 / uint8 per-tensor activation qparams
  (``<layer>.input_quantizer``, ``<attn>.qk_matmul.{x,y}``, ``<attn>.sv_matmul.{x,y}``);
* every other state-dict tensor (biases, norms, float layers) in ``float_dtype`` (bfloat16).
Metadata (strings): ``format``, ``plan`` (JSON), ``model`` (JSON), ``float_dtype``, ``weights``
(per-layer bits, shape, granularity), ``activations`` (per-quantizer bits, kind, tau, calibrated),
and — for a model refined by LSC (``profiling.quant.lsc``) — ``refinement`` (JSON: steps, key,
fidelity before/after). A refined model's weight scales / zero-points and activation qparams are
those of its learned clipping ranges, so the packed integers are the refined model's.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from profiling.quant.bitpack import pack_bits
from profiling.quant.modules import ActQuantizer, LogQuantizer, channel_axis
from profiling.quant.plan import QuantPlan, as_plan, validate_plan
from profiling.quant.prepare import weight_layers
from profiling.quant.primitives import (
    choose_qparams,
    compact_qparams,
    compact_shape,
    expand_qparams,
    quantize,
    weight_granularity,
)
from profiling.quant.spec import Granularity, QuantSpec
from solvers import sizes

__all__ = [
    "FORMAT",
    "TORCH_DTYPES",
    "predict_bytes",
    "size_breakdown",
    "measured_bytes",
    "save_artifact",
    "WeightIntegers",
    "weight_integers",
]

FORMAT = "bitbudget.artifact/v1"
TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def _stored_bytes(t: Tensor, float_dtype: str) -> int:
    if t.is_floating_point():
        return sizes.float_bytes(t.numel(), float_dtype)
    return t.numel() * t.element_size()


def size_breakdown(
    model: nn.Module, plan: QuantPlan | Mapping[str, Any], float_dtype: str = "bfloat16"
) -> dict[str, int]:
    """Predicted stored bytes of ``model`` under ``plan``: weights, floats, activation qparams."""
    qplan = as_plan(plan)
    kinds = validate_plan(model, qplan)
    modules = dict(model.named_modules())
    quantized = {f"{n}.weight": n for n in weight_layers(kinds, qplan)}
    out = {"quantized_weights": 0, "float_tensors": 0, "activation_params": 0}
    for key, t in model.state_dict().items():
        layer = quantized.get(key)
        if layer is None:
            out["float_tensors"] += _stored_bytes(t, float_dtype)
            continue
        spec, mod = qplan.specs[layer], modules[layer]
        gran = weight_granularity(spec, channel_axis(mod))
        group = getattr(gran, "group_size", None)
        channels = t.shape[channel_axis(mod)]
        out["quantized_weights"] += sizes.weight_bytes(
            t.numel(), channels, spec.w_bits, gran.kind, group, spec.w_symmetric, float_dtype
        )
    for name, kind in kinds.items():
        spec = qplan.specs[name]
        per = sizes.activation_param_bytes(spec.a_bits, spec.a_symmetric)
        out["activation_params"] += per * (2 if kind.startswith("matmul") else 1)
    out["total"] = sum(out.values())
    return out


def predict_bytes(
    model: nn.Module, plan: QuantPlan | Mapping[str, Any], float_dtype: str = "bfloat16"
) -> int:
    """Bytes of tensor data the artifact of ``plan`` will hold (``solvers.sizes`` rules)."""
    return size_breakdown(model, plan, float_dtype)["total"]


def measured_bytes(path: str | os.PathLike[str]) -> int:
    """Tensor-data bytes of a safetensors file: file size minus the 8-byte length and header."""
    with open(path, "rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
    return os.path.getsize(path) - 8 - int(header_len)


@dataclass(frozen=True)
class WeightIntegers:
    """A quantized weight as integers in its own shape plus the stored (compact) qparams."""

    ints: Tensor  # int64, the weight's shape, values in ``qrange(bits, symmetric)``
    scale: Tensor  # float32, compact shape (1,), (channels,) or (channels, groups)
    zero_point: Tensor  # float32 (integer-valued), same compact shape; zeros when symmetric
    granularity: Granularity
    bits: int
    symmetric: bool


def weight_integers(
    weight: Tensor,
    spec: QuantSpec,
    axis: int = 0,
    scale: Tensor | None = None,
    zero_point: Tensor | None = None,
) -> WeightIntegers:
    """The integers, scales and zero-points fake-quant uses for ``weight`` at ``spec``.

    ``scale`` / ``zero_point``: the compact qparams a quantized layer stores (``weight_scale``,
    ``weight_zero_point``); without them they are chosen as ``apply_plan`` chooses them.
    Shared by the packer and the ONNX export, so both write the numbers that were validated.
    """
    w = weight.detach().float()
    gran = weight_granularity(spec, axis)
    if scale is None or zero_point is None:
        s_full, z_full = choose_qparams(w, spec.w_bits, spec.w_symmetric, gran, spec.w_method)
        scale = compact_qparams(s_full, w.shape, gran)
        zero_point = compact_qparams(z_full, w.shape, gran)
    shape = compact_shape(w.shape, gran)
    scale, zero_point = scale.float().reshape(shape), zero_point.float().reshape(shape)
    s = expand_qparams(scale, w.shape, gran)
    z = expand_qparams(zero_point, w.shape, gran)
    q = quantize(w, s, z, spec.w_bits, spec.w_symmetric).to(torch.int64)
    return WeightIntegers(q, scale, zero_point, gran, spec.w_bits, spec.w_symmetric)


def _packed_weight(mod: nn.Module, spec: QuantSpec) -> tuple[Tensor, dict[str, Any]]:
    wi = weight_integers(
        cast(Tensor, mod.weight),
        spec,
        channel_axis(mod),
        cast(Tensor, mod.weight_scale),
        cast(Tensor, mod.weight_zero_point),
    )
    q = wi.ints + 2 ** (spec.w_bits - 1) if spec.w_symmetric else wi.ints
    packed = torch.from_numpy(pack_bits(q.to(torch.uint8).numpy(), spec.w_bits))
    info = {"bits": spec.w_bits, "shape": list(wi.ints.shape), "symmetric": spec.w_symmetric}
    return packed, info | {"granularity": wi.granularity.to_dict()}


def _weight_tensors(qmodel: nn.Module, plan: QuantPlan, kinds: Mapping[str, str]) -> tuple:
    modules = dict(qmodel.named_modules())
    tensors: dict[str, Tensor] = {}
    infos: dict[str, Any] = {}
    skip: set[str] = set()
    for name in weight_layers(kinds, plan):
        mod, spec = modules[name], plan.specs[name]
        tensors[f"{name}.weight.packed"], infos[name] = _packed_weight(mod, spec)
        tensors[f"{name}.weight.scale"] = mod.weight_scale.float().contiguous()
        if not spec.w_symmetric:
            tensors[f"{name}.weight.zero_point"] = mod.weight_zero_point.to(torch.uint8)
        skip |= {f"{name}.weight", f"{name}.weight_scale", f"{name}.weight_zero_point"}
    return tensors, infos, skip


def _activation_tensors(qmodel: nn.Module) -> tuple:
    tensors: dict[str, Tensor] = {}
    infos: dict[str, Any] = {}
    skip: set[str] = set()
    for name, q in qmodel.named_modules():
        if not isinstance(q, ActQuantizer):
            continue
        tensors[f"{name}.scale"] = q.scale.float().reshape(1)
        if not q.symmetric:
            tensors[f"{name}.zero_point"] = q.zero_point.to(torch.uint8).reshape(1)
        log = isinstance(q, LogQuantizer)
        infos[name] = {"bits": q.bits, "symmetric": q.symmetric, "calibrated": q.enabled}
        infos[name] |= {"kind": "log2", "tau": q.tau} if log else {"kind": "uniform"}
        skip |= {f"{name}.scale", f"{name}.zero_point"}
    return tensors, infos, skip


def save_artifact(
    qmodel: nn.Module,
    plan: QuantPlan | Mapping[str, Any],
    path: str | os.PathLike[str],
    model_info: Mapping[str, Any] | None = None,
    float_dtype: str = "bfloat16",
    refinement: Mapping[str, Any] | None = None,
) -> int:
    """Write the artifact of an ``apply_plan`` output; returns the measured tensor bytes.

    ``qmodel`` may be an LSC-refined model (``lsc.refine(...).model`` or
    ``apply_plan(..., clipping=...)``): its learned clipping lives in the same qparam buffers, so
    it is packed as is; ``refinement`` (the refinement report) is recorded in the metadata.
    """
    qplan = as_plan(plan)
    kinds = validate_plan(qmodel, qplan)
    tensors, w_info, skip_w = _weight_tensors(qmodel, qplan, kinds)
    act_tensors, a_info, skip_a = _activation_tensors(qmodel)
    tensors |= act_tensors
    for key, t in qmodel.state_dict().items():
        if key in skip_w or key in skip_a:
            continue
        dtype = TORCH_DTYPES[float_dtype] if t.is_floating_point() else t.dtype
        tensors[key] = t.detach().to(dtype).contiguous().clone()
    meta = {
        "format": FORMAT,
        "plan": json.dumps(qplan.to_dict()),
        "model": json.dumps(dict(model_info or {})),
        "float_dtype": float_dtype,
        "weights": json.dumps(w_info),
        "activations": json.dumps(a_info),
    }
    if refinement is not None:
        meta["refinement"] = json.dumps(dict(refinement))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=meta)
    return measured_bytes(path)

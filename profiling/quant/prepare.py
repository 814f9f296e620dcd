"""Structure of a quantized model: where quantizers sit and where weight qparams are stored.

``prepare`` is shared by ``apply_plan`` (which then calibrates) and the artifact loader (which
then loads stored values), so both build the identical module tree. A quantized weight layer
carries buffers ``weight_scale`` (float32) and ``weight_zero_point`` in their stored, compact form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

import torch
from torch import Tensor, nn

from profiling.quant.attn import install_explicit_forward
from profiling.quant.modules import (
    ActQuantizer,
    LogQuantizer,
    PairQuantizer,
    add_input_quantizer,
    channel_axis,
)
from profiling.quant.plan import QuantPlan, validate_plan
from profiling.quant.primitives import (
    choose_qparams,
    compact_qparams,
    compact_shape,
    dequantize,
    expand_qparams,
    quantize,
    weight_granularity,
)
from profiling.quant.spec import QuantSpec

__all__ = ["prepare", "quantize_weights", "weight_layers", "site_attention"]


def weight_layers(kinds: Mapping[str, str], plan: QuantPlan) -> list[str]:
    """Named weight layers whose weight the plan quantizes."""
    return [n for n, k in kinds.items() if not k.startswith("matmul") and plan.specs[n].w_bits < 16]


def site_attention(name: str) -> str:
    """``blocks.0.attn.qk_matmul`` -> ``blocks.0.attn``."""
    return name.rsplit(".", 1)[0]


def _act(spec: QuantSpec | None) -> nn.Module:
    if spec is None or spec.a_bits >= 16:
        return nn.Identity()
    return ActQuantizer(spec.a_bits, spec.a_symmetric)


def _probs(spec: QuantSpec | None, agq: bool) -> nn.Module:
    if spec is None or spec.a_bits >= 16:
        return nn.Identity()
    if agq or spec.a_log:  # plan-wide --agq, or the site's own log2 option
        return LogQuantizer(spec.a_bits, spec.a_symmetric)
    return ActQuantizer(spec.a_bits, spec.a_symmetric)


def _add_weight_buffers(mod: nn.Module, spec: QuantSpec) -> None:
    w = cast(Tensor, mod.weight)
    shape = compact_shape(w.shape, weight_granularity(spec, channel_axis(mod)))
    mod.register_buffer("weight_scale", torch.ones(shape, dtype=torch.float32))
    mod.register_buffer("weight_zero_point", torch.zeros(shape, dtype=torch.float32))


def prepare(model: nn.Module, plan: QuantPlan) -> dict[str, str]:
    """Insert quantizers and weight-qparam buffers in place; returns layer -> kind of the plan."""
    kinds = validate_plan(model, plan)
    modules = dict(model.named_modules())
    attns: set[str] = set()
    for name, kind in kinds.items():
        spec = plan.specs[name]
        if kind.startswith("matmul"):
            if spec.a_bits < 16:
                attns.add(site_attention(name))
            continue
        if spec.w_bits < 16:
            _add_weight_buffers(modules[name], spec)
        if spec.a_bits < 16:
            add_input_quantizer(modules[name], spec.a_bits, spec.a_symmetric)
    for attn in sorted(attns):
        qk, sv = plan.specs.get(f"{attn}.qk_matmul"), plan.specs.get(f"{attn}.sv_matmul")
        install_explicit_forward(
            attn,
            modules[attn],
            PairQuantizer(_act(qk), _act(qk)),
            PairQuantizer(_probs(sv, plan.options.agq), _act(sv)),
        )
    return kinds


@torch.no_grad()
def quantize_weights(model: nn.Module, plan: QuantPlan, kinds: Mapping[str, str]) -> None:
    """Choose weight qparams, store them compactly and replace each weight by its fake-quant."""
    modules = dict(model.named_modules())
    for name in weight_layers(kinds, plan):
        mod, spec = modules[name], plan.specs[name]
        gran = weight_granularity(spec, channel_axis(mod))
        w = mod.weight.detach().float()
        scale, zp = choose_qparams(w, spec.w_bits, spec.w_symmetric, gran, spec.w_method)
        mod.weight_scale.copy_(
            compact_qparams(scale, w.shape, gran).reshape(mod.weight_scale.shape)
        )
        mod.weight_zero_point.copy_(
            compact_qparams(zp, w.shape, gran).reshape(mod.weight_zero_point.shape)
        )
        s = expand_qparams(mod.weight_scale, w.shape, gran)
        z = expand_qparams(mod.weight_zero_point, w.shape, gran)
        q = quantize(w, s, z, spec.w_bits, spec.w_symmetric)
        mod.weight.copy_(dequantize(q, s, z).to(mod.weight.dtype))

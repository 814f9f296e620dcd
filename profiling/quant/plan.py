"""Quantization plans: layer name -> ``QuantSpec`` plus plan-level method switches.

A plan names weight layers (Linear, Conv2d, ConvTranspose2d) and attention matmul sites
(``<attn>.qk_matmul``, ``<attn>.sv_matmul``) by fully qualified name; layers it does not name stay
in float. ``uniform_plan`` quantizes every layer except those PTQ4SAM (and AHCQ-SAM for SAM2)
keep in float: the patch embedding, the prompt encoder, the mask-input downsampler, the output
upscaling, the hypernetwork MLPs, the IoU and object-score heads and the object-pointer
projections. The SAM2 memory path (memory attention, memory encoder) is quantized.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from torch import nn

from profiling.attention import SITE_SUFFIXES, attention_modules
from profiling.errors import BadInput
from profiling.quant.modules import WEIGHT_TYPES
from profiling.quant.spec import PerTensor, QuantSpec, parse_candidate, parse_option

__all__ = [
    "FLOAT_PREFIXES",
    "PlanOptions",
    "QuantPlan",
    "quantizable_layers",
    "validate_plan",
    "uniform_plan",
    "plan_from_json",
    "as_plan",
]

# Substrings of layer names that uniform plans keep in float (PTQ4SAM §3.1, AHCQ-SAM §6.3).
FLOAT_PREFIXES = (
    "patch_embed",
    "prompt_encoder",  # SAM's prompt_encoder and SAM2's sam_prompt_encoder
    "output_upscaling",
    "output_hypernetworks_mlps",
    "iou_prediction_head",
    "pred_obj_score_head",
    "obj_ptr_proj",
    "obj_ptr_tpos_proj",
)
_TOP_LEVEL_FLOAT = ("mask_downsample.",)  # SAM2's mask-prompt downsampler (not the memory one)


@dataclass(frozen=True)
class PlanOptions:
    """Method switches: PTQ4SAM BIG and AGQ, Q-SAM2 VRC (all off = plain PTQ)."""

    big: bool = False
    agq: bool = False
    vrc: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PlanOptions:
        known = {f.name for f in fields(cls)}
        bad = sorted(set(d) - known)
        if bad or not all(isinstance(v, bool) for v in d.values()):
            raise BadInput(f"plan options: expected booleans {sorted(known)}, got {dict(d)}")
        return cls(**d)


@dataclass(frozen=True)
class QuantPlan:
    """Which layers are quantized, how, and which methods run before quantization."""

    specs: Mapping[str, QuantSpec] = field(default_factory=dict)
    options: PlanOptions = field(default_factory=PlanOptions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: candidate ids, full specs and options."""
        return {
            "format": "bitbudget.quant_plan/v1",
            "choices": {name: s.id for name, s in self.specs.items()},
            "specs": {name: s.to_dict() for name, s in self.specs.items()},
            "options": self.options.to_dict(),
        }


def quantizable_layers(model: nn.Module) -> dict[str, str]:
    """Fully qualified name -> kind, for every weight layer and attention matmul site."""
    kinds = {nn.Linear: "linear", nn.Conv2d: "conv2d", nn.ConvTranspose2d: "conv_transpose2d"}
    out = {}
    for name, mod in model.named_modules():
        base = next((b for b in WEIGHT_TYPES if isinstance(mod, b)), None)
        if base is not None:
            out[name] = kinds[base]
    for name in attention_modules(model):
        for suffix in SITE_SUFFIXES:
            out[f"{name}.{suffix}"] = f"matmul_{suffix.split('_')[0]}"
    return out


def _check_layer(name: str, kind: str | None, spec: QuantSpec) -> None:
    if kind is None:
        raise BadInput(f"layer {name!r}: name: not a quantizable layer of this model")
    if not isinstance(spec.a_granularity, PerTensor):
        raise BadInput(f"layer {name!r}: a_granularity: activations are quantized per tensor")
    if kind.startswith("matmul") and spec.w_bits != 16:
        raise BadInput(
            f"layer {name!r}: w_bits: option {spec.id!r} does not exist for a {kind} site (it "
            f"has no weight); use a{spec.a_bits}"
        )
    if spec.a_log and kind != "matmul_sv":
        raise BadInput(
            f"layer {name!r}: a_log: option {spec.id!r} does not exist for a {kind} layer; the "
            "log2 option is for the post-softmax operand of a matmul_sv site"
        )


def validate_plan(model: nn.Module, plan: QuantPlan) -> dict[str, str]:
    """Check every named layer against the model; returns name -> kind of the named layers."""
    known = quantizable_layers(model)
    for name, spec in plan.specs.items():
        _check_layer(name, known.get(name), spec)
    return {name: known[name] for name in plan.specs}


def _kept_float(name: str) -> bool:
    return any(p in name for p in FLOAT_PREFIXES) or name.startswith(_TOP_LEVEL_FLOAT)


def uniform_plan(
    model: nn.Module, candidate: str, options: PlanOptions | None = None, **overrides: Any
) -> QuantPlan:
    """Every layer but the float-kept ones at ``candidate``; matmul sites take only its a bits."""
    spec = parse_candidate(candidate, **overrides)
    specs: dict[str, QuantSpec] = {}
    for name, kind in quantizable_layers(model).items():
        if _kept_float(name):
            continue
        if kind.startswith("matmul"):
            if spec.a_bits < 16:
                specs[name] = QuantSpec(16, spec.a_bits, a_symmetric=spec.a_symmetric)
        elif not spec.is_float:
            specs[name] = spec
    return QuantPlan(specs, options or PlanOptions())


def _spec_of(name: str, value: Any) -> QuantSpec:
    try:
        if isinstance(value, QuantSpec):
            return value
        if isinstance(value, str):
            return parse_option(value)
        if isinstance(value, Mapping):
            return QuantSpec.from_dict(dict(value))
    except BadInput as err:
        raise BadInput(f"layer {name!r}: {err}") from None
    raise BadInput(f"layer {name!r}: choice: expected a candidate id like 'w4a8', got {value!r}")


def plan_from_json(doc: Mapping[str, Any], options: PlanOptions | None = None) -> QuantPlan:
    """The solver's plan (``{"choices": {layer: "w4a8"}}``) or ``QuantPlan.to_dict`` output."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("choices"), Mapping):
        raise BadInput("plan: choices: expected an object {layer: candidate id}")
    detailed = doc.get("specs") or {}
    specs = {name: _spec_of(name, detailed.get(name, cid)) for name, cid in doc["choices"].items()}
    if options is None:
        options = PlanOptions.from_dict(doc.get("options") or {})
    return QuantPlan(specs, options)


def as_plan(plan: QuantPlan | Mapping[str, Any]) -> QuantPlan:
    """Accept a ``QuantPlan``, plan JSON, or a plain mapping of layer -> spec / candidate id."""
    if isinstance(plan, QuantPlan):
        return plan
    if "choices" in plan:
        return plan_from_json(plan)
    return QuantPlan({name: _spec_of(name, v) for name, v in plan.items()})

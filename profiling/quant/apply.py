"""``apply_plan``: a fake-quantized copy of a model, calibrated on calibration images.

Order (the original model is never touched): deepcopy -> [one FP pass: BIG key samples and VRC
input Gram matrices -> BIG sign flips -> VRC re-fits] -> insert quantizers -> fake-quantize
weights -> one pass observing every activation quantizer (and, with AGQ, the softmax / V pairs)
-> install activation qparams. Activation quantizers that saw no data stay in float and are
listed in the report.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from torch import Tensor, nn

from profiling.calibration import CalibrationSet
from profiling.errors import BadInput
from profiling.models import LoadedModel
from profiling.quant.calibrate import run_calibration
from profiling.quant.logquant import AGQResult, agq_search
from profiling.quant.modules import ActQuantizer, LogQuantizer, PairQuantizer
from profiling.quant.observers import (
    GramObserver,
    PairSampler,
    RangeObserver,
    SampleObserver,
    observing,
)
from profiling.quant.plan import QuantPlan, as_plan, validate_plan
from profiling.quant.prepare import prepare, quantize_weights, weight_layers
from profiling.quant.ptq4sam import BigResult, big_targets, bimodal_integration, key_slice
from profiling.quant.vrc import VrcResult, vrc_layer

__all__ = [
    "FLOAT_WEIGHTS_ATTR",
    "QuantReport",
    "apply_plan",
    "needs_calibration",
    "quantized_copy",
    "report_of",
]

REPORT_ATTR = "bitbudget_report"
FLOAT_WEIGHTS_ATTR = "bitbudget_float_weights"  # layer -> weight just before quantization
MEMORY_PATH = ("memory_attention.", "memory_encoder.", "obj_ptr")  # only run in track_step
VRC_SCOPE = ("image_encoder.",)  # Q-SAM2 re-fits the image encoder's Linear layers


@dataclass
class QuantReport:
    """What calibration found: BIG flips, AGQ choices, VRC errors, uncalibrated quantizers."""

    big: dict[str, BigResult] = field(default_factory=dict)
    agq: dict[str, AGQResult] = field(default_factory=dict)
    vrc: dict[str, VrcResult] = field(default_factory=dict)
    uncalibrated: list[str] = field(default_factory=list)
    calib_images: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "big": {k: vars(v) for k, v in self.big.items()},
            "agq": {k: {"tau": v.tau, "scale": v.scale} for k, v in self.agq.items()},
            "vrc": {k: v.to_dict() for k, v in self.vrc.items()},
            "uncalibrated": list(self.uncalibrated),
            "calib_images": self.calib_images,
        }


def report_of(model: nn.Module) -> QuantReport:
    """The report ``apply_plan`` attached to its output."""
    return cast(QuantReport, getattr(model, REPORT_ATTR, QuantReport()))


def needs_calibration(plan: QuantPlan) -> str | None:
    """Why this plan needs calibration data (``layer: field``), or None."""
    for name, spec in plan.specs.items():
        if spec.a_bits < 16:
            return f"layer {name!r}: a_bits: activation quantization needs calibration data"
    if plan.options.vrc and any(s.w_bits < 16 for s in plan.specs.values()):
        return "plan options: vrc: needs calibration data"
    if plan.options.big:
        return "plan options: big: needs calibration data"
    return None


def _fp_pass(
    loaded: LoadedModel, qmodel: nn.Module, plan: QuantPlan, calib: CalibrationSet, rep: QuantReport
) -> None:
    """BIG and VRC, from one pass of the float copy."""
    modules = dict(qmodel.named_modules())
    quantized_sites = [n for n, s in plan.specs.items() if s.a_bits < 16]
    targets = big_targets(qmodel, sites=quantized_sites) if plan.options.big else {}
    keys = {n: key_slice(m)[0] for n, m in targets.items()}
    kinds = validate_plan(qmodel, plan)
    linears = {
        n: modules[n]
        for n in weight_layers(kinds, plan)
        if plan.options.vrc and isinstance(modules[n], nn.Linear) and n.startswith(VRC_SCOPE)
    }
    with (
        observing(keys, lambda _: SampleObserver(), on_output=True) as k_obs,
        observing(linears, lambda _: GramObserver()) as g_obs,
    ):
        run_calibration(loaded, qmodel, calib, video=False)  # one call per image: CV halves
    samples = {
        n: _keys_of(cast(SampleObserver, o).tensor(), key_slice(targets[n])[1])
        for n, o in k_obs.items()
    }
    rep.big.update(bimodal_integration(targets, samples))
    for name, obs in g_obs.items():
        gram_obs = cast(GramObserver, obs)
        first, second = gram_obs.halves
        if first is None:
            continue
        mod = modules[name]
        new_w, rep.vrc[name] = vrc_layer(
            mod.weight.detach(), (first, second), gram_obs.rows, plan.specs[name]
        )
        mod.weight.data.copy_(new_w)


def _keys_of(rows: Tensor, channels: slice) -> Tensor:
    """The key channels of a key layer's sampled output rows (none: an empty tensor)."""
    return rows[:, channels] if rows.numel() else rows


def _calibrate(
    loaded: LoadedModel,
    qmodel: nn.Module,
    calib: CalibrationSet,
    rep: QuantReport,
    video: bool | None,
) -> None:
    """Observe every activation quantizer (disabled meanwhile), then install its qparams."""
    named = dict(qmodel.named_modules())
    uniform = {n: m for n, m in named.items() if type(m) is ActQuantizer}
    pairs = {
        n: m
        for n, m in named.items()
        if isinstance(m, PairQuantizer) and isinstance(m.x, LogQuantizer)
    }
    with (
        observing(uniform, lambda _: RangeObserver()) as ranges,
        observing(pairs, lambda _: PairSampler()) as sampled,
    ):
        if video is None:
            video = any(n.startswith(MEMORY_PATH) for n in [*uniform, *pairs])
        rep.calib_images = run_calibration(loaded, qmodel, calib, video=video)
    for name, obs in ranges.items():
        rng, quant = cast(RangeObserver, obs), cast(ActQuantizer, uniform[name])
        if rng.count == 0:
            rep.uncalibrated.append(name)
            continue
        quant.set_qparams(*rng.qparams(quant.bits, quant.symmetric))
    for name, obs in sampled.items():
        log_q = cast(LogQuantizer, cast(PairQuantizer, pairs[name]).x)
        samples = cast(PairSampler, obs).samples
        if not samples:
            rep.uncalibrated.append(f"{name}.x")
            continue
        rep.agq[name] = agq_search(samples, log_q.bits)
        log_q.set_log_qparams(rep.agq[name].scale, rep.agq[name].tau)


def apply_plan(
    model: LoadedModel | nn.Module,
    plan: QuantPlan | Mapping[str, Any],
    calib: CalibrationSet | None = None,
    video: bool | None = None,
    keep_float: bool = False,
    clipping: Any = None,
) -> nn.Module:
    """A fake-quantized, calibrated deep copy of ``model`` (the original is left untouched).

    ``video``: calibrate SAM2's memory path through ``track_step`` (None: when the plan has it).
    ``keep_float``: attach the float weights each quantized layer had just before quantization
    (after BIG / VRC) as ``FLOAT_WEIGHTS_ATTR`` (what LSC refinement learns from).
    ``clipping``: a ``lsc.LearnedClipping`` (or a sidecar path) whose learned ranges replace the
    post-training ones, so that the copy (and its packed artifact) is the refined model.
    """
    qplan = as_plan(plan)
    loaded = model if isinstance(model, LoadedModel) else None
    module = loaded.module if loaded is not None else cast(nn.Module, model)
    qmodel = copy.deepcopy(module).eval()
    validate_plan(qmodel, qplan)
    reason = needs_calibration(qplan)
    if reason is not None and (calib is None or loaded is None):
        raise BadInput(f"{reason} (pass calib= and a LoadedModel)")
    rep = QuantReport()
    if loaded is not None and calib is not None and (qplan.options.big or qplan.options.vrc):
        _fp_pass(loaded, qmodel, qplan, calib, rep)
    kinds = prepare(qmodel, qplan)
    floats = None
    if keep_float or clipping is not None:
        named = dict(qmodel.named_modules())
        floats = {n: named[n].weight.detach().clone() for n in weight_layers(kinds, qplan)}
    quantize_weights(qmodel, qplan, kinds)
    has_act = any(isinstance(m, ActQuantizer) for m in qmodel.modules())
    if loaded is not None and calib is not None and has_act:
        _calibrate(loaded, qmodel, calib, rep, video)
    if clipping is not None:
        from profiling.quant.lsc import LearnedClipping, install_clipping, load_clipping

        if not isinstance(clipping, LearnedClipping):
            clipping = load_clipping(clipping)
        assert floats is not None
        install_clipping(qmodel, qplan, floats, clipping)
    if keep_float:
        setattr(qmodel, FLOAT_WEIGHTS_ATTR, floats)
    setattr(qmodel, REPORT_ATTR, rep)
    return qmodel


def quantized_copy(
    loaded: LoadedModel,
    plan: QuantPlan | Mapping[str, Any],
    calib: CalibrationSet | None = None,
) -> LoadedModel:
    """``apply_plan`` wrapped back into a ``LoadedModel`` (for the task adapter)."""
    return LoadedModel(loaded.spec, apply_plan(loaded, plan, calib), loaded.weights_hash)

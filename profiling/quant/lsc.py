"""Q-SAM2 Learnable Statistical Clipping (LSC): refine a plan's clipping ranges with QAT.

Start from the plan's post-training quantization (``apply_plan``). Every quantized weight layer
gets per-channel (or per-group) clipping factors, every calibrated uniform activation quantizer
per-tensor ones; the clipping range is the factor times the PTQ statistic it started from
(weights: the per-channel range the spec's method chose; activations: the AvgMinMax range of the
calibration batches), ``[f_lo · lo₀, f_hi · hi₀]`` (symmetric quantizers: one factor), so every
factor starts at 1 (= PTQ exactly). Weights, biases and norms stay frozen: only the factors learn.

Loss (the float model is the teacher, cached per image): normalised MSE on the image embedding
plus normalised MSE on the mask logits of every prompt batch of one calibration image per step.
Gradients reach the factors through ``fake_quantize_range`` (straight-through rounding).

Update (momentum-stabilised; Q-SAM2 does not publish its rule: ours, see docs/refinement.md):
for each factor group (one layer's weight factors, one quantizer's activation factors)

    ĝ_t = clip(g_t / (rms(g_t over the group) + ε), ±G_CLIP)   scale-free, bounded gradient
    m_t = β m_{t-1} + (1 - β) ĝ_t,   m̂_t = m_t / (1 - β^t)   dampened (EMA) momentum
    f_t = clamp(f_{t-1} - η m̂_t, F_MIN, F_MAX)

``update="gd"`` is the same rule with β = 0 (plain normalised gradient descent, for comparison).
The run checkpoints (step, factors, momentum, the data-order RNG, the loss history) atomically
under ``work_dir`` so that a killed run resumes and ends exactly where an uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import torch
from torch import Tensor, nn

from profiling.calibration import CalibrationSet
from profiling.errors import BadInput
from profiling.models import LoadedModel
from profiling.models.adapter import TaskAdapter
from profiling.quant.modules import ActQuantizer, channel_axis
from profiling.quant.plan import QuantPlan, as_plan, validate_plan
from profiling.quant.prepare import weight_layers
from profiling.quant.primitives import (
    dequantize,
    expand_qparams,
    fake_quantize_range,
    qrange,
    quantize,
    range_qparams,
    weight_granularity,
)

__all__ = [
    "CLIPPING_FORMAT",
    "REFINEMENT_FORMAT",
    "F_MIN",
    "F_MAX",
    "UPDATES",
    "LscConfig",
    "LearnedClipping",
    "RefineResult",
    "Stopped",
    "ClipState",
    "install_clipping",
    "save_clipping",
    "load_clipping",
    "fluctuation",
    "refine",
]

CLIPPING_FORMAT = "bitbudget.clipping/v1"
REFINEMENT_FORMAT = "bitbudget.refinement/v1"
F_MIN, F_MAX = 0.05, 1.5  # factors are projected onto [F_MIN, F_MAX] after every step
G_CLIP = 2.0  # the normalised gradient is clipped to ±G_CLIP (a factor moves ≤ 2·lr a step)
UPDATES = ("momentum", "gd")
_EPS = 1e-12
_CKPT = "lsc_checkpoint.pt"


class Stopped(Exception):
    """Raised when ``should_stop`` asked the run to end; the last checkpoint is on disk."""


@dataclass(frozen=True)
class LscConfig:
    """Refinement settings (all of them enter the checkpoint key)."""

    steps: int = 20
    lr: float = 0.02
    momentum: float = 0.9
    update: str = "momentum"
    embed_weight: float = 1.0
    mask_weight: float = 1.0
    learn_weights: bool = True
    learn_activations: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.steps, int) or isinstance(self.steps, bool) or self.steps < 0:
            raise BadInput(f"steps: expected a non-negative integer, got {self.steps!r}")
        if not (isinstance(self.lr, int | float) and math.isfinite(self.lr) and self.lr > 0):
            raise BadInput(f"lr: expected a positive number, got {self.lr!r}")
        if not 0.0 <= self.momentum < 1.0:
            raise BadInput(f"momentum: expected 0 <= momentum < 1, got {self.momentum!r}")
        if self.update not in UPDATES:
            raise BadInput(f"update: {self.update!r} is not one of {list(UPDATES)}")
        if not (self.learn_weights or self.learn_activations):
            raise BadInput("learn_weights / learn_activations: at least one must be on")

    @property
    def beta(self) -> float:
        """The momentum coefficient actually used (0 for plain gradient descent)."""
        return self.momentum if self.update == "momentum" else 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class LearnedClipping:
    """Absolute clipping ranges by name: ``<layer>.weight`` (compact per channel / group) and
    ``<quantizer>`` (per tensor). Ranges, not factors, so that installing them needs no PTQ."""

    ranges: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def weight_layers(self) -> list[str]:
        return [k[: -len(".weight")] for k in self.ranges if k.endswith(".weight")]


@dataclass
class RefineResult:
    """The refined model, its learned clipping and the report (``bitbudget.refinement/v1``)."""

    model: nn.Module
    clipping: LearnedClipping
    doc: dict[str, Any]
    trajectory: list[Tensor] = field(default_factory=list)


# --------------------------------------------------------------------------- clip groups


@dataclass
class _Group:
    """One set of factors: a weight layer's (k, rows) or a quantizer's (k, 1); k = 1 symmetric."""

    name: str  # "<layer>.weight" or the quantizer's name
    kind: str  # "weight" | "activation"
    bits: int
    symmetric: bool
    lo0: Tensor  # PTQ range, compact (weights) or scalar (activations)
    hi0: Tensor
    factors: Tensor  # the learned parameter
    module: nn.Module
    granularity: Any = None
    float_weight: Tensor | None = None

    def bounds(self, factors: Tensor | None = None) -> tuple[Tensor, Tensor]:
        f = self.factors if factors is None else factors
        f_lo, f_hi = f[0], f[-1]
        return f_lo * self.lo0, f_hi * self.hi0


def _ptq_range(scale: Tensor, zero_point: Tensor, bits: int, symmetric: bool) -> tuple:
    """The range whose qparams are (scale, zero_point): factor 1 reproduces PTQ."""
    qmin, qmax = qrange(bits, symmetric)
    s, z = scale.detach().float(), zero_point.detach().float()
    if symmetric:
        return -qmax * s, qmax * s
    return (qmin - z) * s, (qmax - z) * s


def _groups(qmodel: nn.Module, plan: QuantPlan, cfg: LscConfig, floats: Mapping) -> list[_Group]:
    modules = dict(qmodel.named_modules())
    out: list[_Group] = []
    if cfg.learn_weights:
        for name in weight_layers(validate_plan(qmodel, plan), plan):
            mod, spec = modules[name], plan.specs[name]
            lo0, hi0 = _ptq_range(
                mod.weight_scale, mod.weight_zero_point, spec.w_bits, spec.w_symmetric
            )
            k = 1 if spec.w_symmetric else 2
            out.append(
                _Group(
                    f"{name}.weight",
                    "weight",
                    spec.w_bits,
                    spec.w_symmetric,
                    lo0,
                    hi0,
                    torch.ones((k, *lo0.shape), device=lo0.device),
                    mod,
                    weight_granularity(spec, channel_axis(mod)),
                    floats[name],
                )
            )
    if cfg.learn_activations:
        for name, q in modules.items():
            if type(q) is not ActQuantizer or not q.enabled or q.bits >= 16:
                continue
            lo0, hi0 = _ptq_range(q.scale, q.zero_point, q.bits, q.symmetric)
            k = 1 if q.symmetric else 2
            ones = torch.ones((k, 1), device=lo0.device)
            out.append(
                _Group(
                    name, "activation", q.bits, q.symmetric, lo0.reshape(1), hi0.reshape(1), ones, q
                )
            )
    return out


def _fq_weight(g: _Group) -> Tensor:
    assert g.float_weight is not None
    w = g.float_weight
    lo, hi = g.bounds()
    lo_x = expand_qparams(lo, w.shape, g.granularity)
    hi_x = expand_qparams(hi, w.shape, g.granularity)
    return fake_quantize_range(w, lo_x, hi_x, g.bits, g.symmetric).to(w.dtype)


@contextmanager
def _learnable(groups: list[_Group]) -> Iterator[Callable[[], None]]:
    """Route the model's weights and activation quantizers through the factors.

    Yields ``refresh()``: recompute every fake-quantized weight from the current factors (once
    per step, before the forward). On exit the modules are restored exactly as they were.
    """
    weights = [g for g in groups if g.kind == "weight"]
    saved: dict[int, nn.Parameter] = {}
    try:
        for g in weights:
            saved[id(g)] = cast(nn.Parameter, g.module._parameters.pop("weight"))
        for g in groups:
            if g.kind == "activation":
                q, grp = cast(ActQuantizer, g.module), g

                def forward(x: Tensor, _g: _Group = grp, _q: ActQuantizer = q) -> Tensor:
                    lo, hi = _g.bounds()
                    return fake_quantize_range(x, lo[0], hi[0], _q.bits, _q.symmetric)

                q.forward = forward  # type: ignore[method-assign]

        def refresh() -> None:
            for g in weights:
                g.module.weight = _fq_weight(g)

        yield refresh
    finally:
        for g in weights:
            if "weight" in g.module.__dict__:
                del g.module.__dict__["weight"]
            if id(g) in saved:
                g.module._parameters["weight"] = saved[id(g)]
        for g in groups:
            if g.kind == "activation" and "forward" in g.module.__dict__:
                del g.module.__dict__["forward"]


# --------------------------------------------------------------------------- clipping I/O


@torch.no_grad()
def _install_weight(
    mod: nn.Module, lo: Tensor, hi: Tensor, fw: Tensor, bits: int, symmetric: bool, gran: Any
) -> None:
    scale_buf = cast(Tensor, mod.weight_scale)
    zp_buf = cast(Tensor, mod.weight_zero_point)
    s, z = range_qparams(lo, hi, bits, symmetric)
    scale_buf.copy_(s.reshape(scale_buf.shape))
    zp_buf.copy_(z.reshape(zp_buf.shape))
    s_x = expand_qparams(scale_buf, fw.shape, gran)
    z_x = expand_qparams(zp_buf, fw.shape, gran)
    q = quantize(fw.float(), s_x, z_x, bits, symmetric)
    weight = cast(Tensor, mod.weight)
    weight.copy_(dequantize(q, s_x, z_x).to(weight.dtype))


def install_clipping(
    qmodel: nn.Module,
    plan: QuantPlan | Mapping[str, Any],
    float_weights: Mapping[str, Tensor],
    clipping: LearnedClipping,
) -> None:
    """Re-quantize ``qmodel`` (an ``apply_plan`` output) with learned clipping ranges, in place.

    Weight layers are re-quantized from their float weights (``apply_plan(keep_float=True)``)
    with qparams of the learned range; activation quantizers get the range's qparams. A name
    that is not a quantized layer / calibrated quantizer of this plan raises ``BadInput``.
    """
    qplan = as_plan(plan)
    modules = dict(qmodel.named_modules())
    layers = set(weight_layers(validate_plan(qmodel, qplan), qplan))
    for key, (lo, hi) in clipping.ranges.items():
        layer = key[: -len(".weight")] if key.endswith(".weight") else None
        if layer is not None and layer in layers:
            mod, spec = modules[layer], qplan.specs[layer]
            expected = tuple(cast(Tensor, mod.weight_scale).shape)
            if tuple(lo.shape) != expected or tuple(hi.shape) != expected:
                raise BadInput(f"clipping {key!r}: shape {tuple(lo.shape)}, expected {expected}")
            gran = weight_granularity(spec, channel_axis(mod))
            dev = cast(Tensor, mod.weight_scale).device
            _install_weight(
                mod,
                lo.float().to(dev),
                hi.float().to(dev),
                float_weights[layer],
                spec.w_bits,
                spec.w_symmetric,
                gran,
            )
        elif type(modules.get(key)) is ActQuantizer:
            q = cast(ActQuantizer, modules[key])
            with torch.no_grad():
                s, z = range_qparams(
                    lo.float().reshape(()), hi.float().reshape(()), q.bits, q.symmetric
                )
                q.set_qparams(s.to(q.scale.device), z.to(q.scale.device))
        else:
            raise BadInput(f"clipping {key!r}: not a quantized weight or quantizer of this plan")


def save_clipping(clipping: LearnedClipping, path: str | os.PathLike[str]) -> int:
    """Write the sidecar (safetensors, ``<name>.clip_lo`` / ``.clip_hi``); returns file bytes."""
    from safetensors.torch import save_file

    tensors: dict[str, Tensor] = {}
    for name, (lo, hi) in clipping.ranges.items():
        tensors[f"{name}.clip_lo"] = lo.detach().float().cpu().contiguous()
        tensors[f"{name}.clip_hi"] = hi.detach().float().cpu().contiguous()
    meta = {"format": CLIPPING_FORMAT, "meta": json.dumps(clipping.meta, sort_keys=True)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path.stat().st_size


def load_clipping(path: str | os.PathLike[str]) -> LearnedClipping:
    """Read a sidecar written by ``save_clipping``."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            if meta.get("format") != CLIPPING_FORMAT:
                raise BadInput(f"{path}: format: not a {CLIPPING_FORMAT} file")
            keys = sorted(k for k in fh.keys() if k.endswith(".clip_lo"))  # noqa: SIM118
            ranges = {
                k[: -len(".clip_lo")]: (
                    fh.get_tensor(k),
                    fh.get_tensor(k[: -len(".clip_lo")] + ".clip_hi"),
                )
                for k in keys
            }
    except BadInput:
        raise
    except Exception as exc:  # OSError, a torn or foreign file (SafetensorError), bad JSON
        raise BadInput(f"{path}: cannot read a clipping sidecar ({exc})") from None
    return LearnedClipping(ranges, json.loads(meta.get("meta") or "{}"))


# --------------------------------------------------------------------------- training


@dataclass
class ClipState:
    """Everything a resumed run needs: step, factors, momentum, data-order RNG, history."""

    step: int
    factors: list[Tensor]
    momentum: list[Tensor]
    rng: Tensor
    order: list[int]
    losses: list[float]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(
            {
                "step": self.step,
                "factors": [f.detach().cpu() for f in self.factors],
                "momentum": [m.detach().cpu() for m in self.momentum],
                "rng": self.rng,
                "order": self.order,
                "losses": self.losses,
            },
            tmp,
        )
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> ClipState | None:
        if not path.exists():
            return None
        try:
            d = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # a torn or foreign file: start over
            return None
        return cls(d["step"], d["factors"], d["momentum"], d["rng"], d["order"], d["losses"])


def _teacher(ref: TaskAdapter, calib: CalibrationSet) -> list[tuple[Tensor, list[Tensor]]]:
    out = []
    with torch.no_grad():
        for s in calib.samples:
            px = s.image.pixels
            feats = ref.embed(ref.preprocess(px))
            logits = [ref.decode(feats, b, px.shape[:2]).logits for b in s.prompts]
            out.append((cast(Tensor, feats["image_embed"]).detach(), logits))
    return out


def _nmse(x: Tensor, ref: Tensor) -> Tensor:
    return (x - ref).pow(2).mean() / (ref.pow(2).mean() + 1e-8)


def _loss(
    student: TaskAdapter, sample: Any, teacher: tuple[Tensor, list[Tensor]], cfg: LscConfig
) -> Tensor:
    px = sample.image.pixels
    feats = student.embed(student.preprocess(px))
    loss = cfg.embed_weight * _nmse(cast(Tensor, feats["image_embed"]), teacher[0])
    mask = sum(
        (_nmse(student.decode(feats, b, px.shape[:2]).logits, t))
        for b, t in zip(sample.prompts, teacher[1], strict=True)
    )
    return loss + cfg.mask_weight * cast(Tensor, mask) / max(len(sample.prompts), 1)


def _next_index(state: ClipState, gen: torch.Generator, n: int) -> int:
    """Seeded epochs: a fresh permutation of the calibration images whenever one runs out."""
    if not state.order:
        state.order = torch.randperm(n, generator=gen).tolist()
    return state.order.pop(0)


def _step(groups: list[_Group], state: ClipState, cfg: LscConfig) -> None:
    beta, t = cfg.beta, state.step + 1
    with torch.no_grad():
        for g, m in zip(groups, state.momentum, strict=True):
            grad = g.factors.grad
            if grad is None:
                grad = torch.zeros_like(g.factors)
            rms = grad.pow(2).mean().sqrt()
            ghat = grad / (rms + _EPS) if float(rms) > 0 else grad
            ghat = ghat.clamp(-G_CLIP, G_CLIP)
            m.mul_(beta).add_(ghat, alpha=1.0 - beta)
            m_hat = m / (1.0 - beta**t) if beta > 0 else m
            g.factors.sub_(cfg.lr * m_hat).clamp_(F_MIN, F_MAX)
            g.factors.grad = None


def _run_key(loaded: LoadedModel, plan: QuantPlan, calib: CalibrationSet, cfg: LscConfig) -> str:
    doc = {
        "plan": plan.to_dict(),
        "model": loaded.spec.to_dict(),
        "weights": loaded.weights_hash,
        "calib": calib.key,
        "config": cfg.to_dict(),
        "format": REFINEMENT_FORMAT,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def _fidelity(
    ref: TaskAdapter, model: nn.Module, loaded: LoadedModel, held: CalibrationSet, cache: Any
) -> dict[str, Any]:
    from profiling.evaluate import measure_fidelity

    quant = TaskAdapter(dataclasses.replace(loaded, module=model))
    return measure_fidelity(ref, quant, held.samples, cache).to_dict()


def _factor_summary(groups: list[_Group]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("weight", "activation"):
        fs = [g.factors.detach().flatten() for g in groups if g.kind == kind]
        if not fs:
            continue
        f = torch.cat(fs)
        out[kind] = {
            "groups": len(fs),
            "factors": int(f.numel()),
            "mean": float(f.mean()),
            "min": float(f.min()),
            "max": float(f.max()),
            "at_floor": int((f <= F_MIN + 1e-6).sum()),
        }
    return out


def fluctuation(trajectory: list[Tensor]) -> dict[str, float]:
    """How much the factors jitter across steps: ``wasted`` = mean over factors of the path
    length minus the net displacement (back-and-forth motion), ``step_std`` = mean over factors
    of the std of the per-step change, ``reversals`` = fraction of consecutive steps that flip
    direction."""
    if len(trajectory) < 3:
        raise ValueError("fluctuation needs at least 3 recorded states")
    f = torch.stack(trajectory).double()  # (T + 1, n)
    d = f[1:] - f[:-1]
    wasted = d.abs().sum(0) - (f[-1] - f[0]).abs()
    flips = (d[1:] * d[:-1] < 0).double().mean()
    return {
        "wasted": float(wasted.mean()),
        "step_std": float(d.std(0).mean()),
        "reversals": float(flips),
    }


def refine(
    loaded: LoadedModel,
    plan: QuantPlan | Mapping[str, Any],
    calib: CalibrationSet,
    heldout: CalibrationSet | None = None,
    config: LscConfig | None = None,
    work_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    record: bool = False,
    stop_after: int | None = None,
) -> RefineResult:
    """LSC refinement of ``plan`` on ``loaded``: PTQ, then ``config.steps`` QAT steps.

    ``heldout``: measure fidelity against float before and after (the report's ``before`` /
    ``after``). ``work_dir``: checkpoint there after every step and resume from it. A
    ``should_stop()`` that turns true (or ``stop_after`` steps done in this call) raises
    ``Stopped`` after the checkpoint of the step in hand. ``record``: keep every step's factors
    (``RefineResult.trajectory``, for ``fluctuation``).
    """
    from profiling.quant.apply import FLOAT_WEIGHTS_ATTR, apply_plan

    cfg = config or LscConfig()
    qplan = as_plan(plan)
    if not calib.samples:
        raise BadInput("refinement needs at least one calibration image")
    say = progress or (lambda f, m: None)
    started = time.perf_counter()
    say(0.0, "post-training quantization")
    qmodel = apply_plan(loaded, qplan, calib, keep_float=True)
    floats = getattr(qmodel, FLOAT_WEIGHTS_ATTR)
    qmodel.requires_grad_(False)
    groups = _groups(qmodel, qplan, cfg, floats)
    if not groups:
        raise BadInput("plan: nothing to refine (no quantized weight or calibrated activation)")
    ref = TaskAdapter(loaded)
    cache = None
    before = None
    if heldout is not None and heldout.samples:
        from profiling.evaluate import reference_outputs

        cache = reference_outputs(ref, heldout.samples)
        say(0.02, "measuring the post-training quantization")
        before = _fidelity(ref, qmodel, loaded, heldout, cache)
    key = _run_key(loaded, qplan, calib, cfg)
    ckpt = Path(work_dir) / key / _CKPT if work_dir is not None else None
    gen = torch.Generator().manual_seed(cfg.seed)
    state = ClipState(0, [], [torch.zeros_like(g.factors) for g in groups], gen.get_state(), [], [])
    resumed = ClipState.load(ckpt) if ckpt is not None else None
    if resumed is not None and resumed.step <= cfg.steps:
        if [tuple(f.shape) for f in resumed.factors] != [tuple(g.factors.shape) for g in groups]:
            raise BadInput(f"{ckpt}: checkpoint does not match this plan; remove it")
        state = resumed
        dev = groups[0].factors.device
        with torch.no_grad():
            for g, f in zip(groups, state.factors, strict=True):
                g.factors.copy_(f.to(dev))
        state.momentum = [m.to(dev) for m in state.momentum]
        gen.set_state(state.rng)
    resumed_from = state.step
    trajectory = [torch.cat([g.factors.detach().flatten().cpu() for g in groups])] if record else []
    teacher = _teacher(ref, calib)
    student = TaskAdapter(dataclasses.replace(loaded, module=qmodel))
    step_times: list[float] = []
    for g in groups:
        g.factors.requires_grad_(True)
    done_here = 0
    with _learnable(groups) as refresh:
        while state.step < cfg.steps:
            t0 = time.perf_counter()
            idx = _next_index(state, gen, len(calib.samples))
            refresh()
            loss = _loss(student, calib.samples[idx], teacher[idx], cfg)
            loss.backward()
            _step(groups, state, cfg)
            state.step += 1
            state.losses.append(float(loss.detach()))
            state.rng = gen.get_state()
            state.factors = [g.factors.detach() for g in groups]
            if ckpt is not None:
                state.save(ckpt)
            if record:
                trajectory.append(torch.cat([g.factors.detach().flatten().cpu() for g in groups]))
            step_times.append(time.perf_counter() - t0)
            done_here += 1
            say(0.05 + 0.85 * state.step / max(cfg.steps, 1), f"step {state.step}/{cfg.steps}")
            asked = should_stop is not None and should_stop()
            if state.step < cfg.steps and (
                asked or (stop_after is not None and done_here >= stop_after)
            ):
                raise Stopped(f"stopped after step {state.step}; resume from {ckpt}")
    for g in groups:
        g.factors.requires_grad_(False)
    ranges = {g.name: tuple(t.detach().clone() for t in g.bounds()) for g in groups}
    clipping = LearnedClipping(
        cast(dict[str, tuple[Tensor, Tensor]], ranges),
        {"plan_key": key, "steps": cfg.steps, "config": cfg.to_dict(), "model": loaded.spec.name},
    )
    install_clipping(qmodel, qplan, floats, clipping)
    after = None
    if cache is not None and heldout is not None:
        say(0.92, "measuring the refined model")
        after = _fidelity(ref, qmodel, loaded, heldout, cache)
    doc = {
        "format": REFINEMENT_FORMAT,
        "method": "lsc",
        "steps": cfg.steps,
        "config": cfg.to_dict(),
        "update_rule": (
            "f <- clamp(f - lr*mhat, F_MIN, F_MAX); "
            "m <- beta*m + (1-beta)*clip(g/rms(g), +-G_CLIP); mhat = m/(1-beta^t)"
        ),
        "factor_bounds": [F_MIN, F_MAX],
        "gradient_clip": G_CLIP,
        "key": key,
        "before": before,
        "after": after,
        "loss": {"first": state.losses[0] if state.losses else None, "history": state.losses},
        "factors": _factor_summary(groups),
        "resumed_from_step": resumed_from,
        "calibration": [s.image.name for s in calib.samples],
        "heldout": [s.image.name for s in heldout.samples] if heldout is not None else [],
        "seconds_per_step": (sum(step_times) / len(step_times)) if step_times else None,
        "seconds": round(time.perf_counter() - started, 3),
        "device": str(next(qmodel.parameters()).device),
        "random_weights": loaded.random_weights,
    }
    say(1.0, "refined")
    return RefineResult(qmodel, clipping, doc, trajectory)

"""Attention matmul sites (``<attn>.qk_matmul``, ``<attn>.sv_matmul``) as profiled layers.

With the profile option ``attention`` each site that runs on images gets a loss per option
(``a8``, ``a6``, ``a4``; for ``matmul_sv`` also ``a8log``… : PTQ4SAM's AGQ log2 quantizer on the
post-softmax operand). One float pass calibrates every site's operands as ``apply_plan`` does
(AvgMinMax ranges, the AGQ search per width), so a profiled option is the quantizer a plan gets.
Exact KL quantizes one site at a time; Fisher-KL estimates ½ Σ E[g²]·Δx² over both operands
from one forward and backward per image (g: the gradient at the operand, Δx: its quantization
change). The site's attention runs sam2's own forward made explicit (``quant.attn``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from profiling.attention import SITE_KINDS, site_options
from profiling.quant.attn import install_explicit_forward, supported
from profiling.quant.logquant import agq_search
from profiling.quant.modules import ActQuantizer, LogQuantizer, PairQuantizer
from profiling.quant.observers import PairSampler, RangeObserver
from profiling.sensitivity.context import Context

MEMORY_COMPONENTS = ("memory_attention", "memory_encoder")

__all__ = [
    "attention_requested",
    "option_ids",
    "site_layers",
    "explicit_sites",
    "calibrate_sites",
    "site_quantizers",
    "run_site_kl",
    "run_site_fisher",
]


def attention_requested(options: dict[str, Any]) -> bool:
    """Whether the profile covers attention sites (option ``attention``)."""
    return bool(options.get("attention", False))


def option_ids(options: dict[str, Any], kind: str) -> list[str]:
    """The options a site of ``kind`` is profiled at (``attention_options``, else defaults)."""
    return site_options(kind, options.get("attention_options"))


def site_layers(ctx: Context) -> list[str]:
    """Attention sites outside the memory path (which never runs on images), in execution order
    (none without ``attention``); the calibration pass drops any that did not run."""
    if not attention_requested(ctx.options):
        return []
    mods = ctx.modules()
    only = ctx.options.get("layers")
    return [
        x.name
        for x in ctx.inventory.layers
        if x.kind in SITE_KINDS
        and (only is None or x.name in only)
        and supported(mods[x.name.rsplit(".", 1)[0]])
        and x.component not in MEMORY_COMPONENTS
    ]


class _Tap(nn.Module):
    """Identity that hands its input to ``fn`` (observation, gradient capture)."""

    def __init__(self, fn: Callable[[Tensor], None]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        self.fn(x)
        return x


class _PairTap(nn.Module):
    """Hands both operands to ``fn`` together (AGQ samples need probs and v side by side)."""

    def __init__(self, fn: Callable[[Tensor, Tensor], None]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        self.fn(a, b)
        return a, b


@contextmanager
def explicit_sites(model: nn.Module, quantizers: dict[str, nn.Module]) -> Iterator[None]:
    """Run the attentions of ``quantizers`` (site -> pair module) with the explicit forward;
    a site not named gets an identity. The model is restored on exit."""
    mods = dict(model.named_modules())
    attns = sorted({site.rsplit(".", 1)[0] for site in quantizers})
    identity = PairQuantizer(nn.Identity(), nn.Identity())
    try:
        for a in attns:
            qk = quantizers.get(f"{a}.qk_matmul", identity)
            sv = quantizers.get(f"{a}.sv_matmul", identity)
            install_explicit_forward(a, mods[a], qk, sv)
        yield
    finally:
        for a in attns:
            for attr in ("forward", "qk_matmul", "sv_matmul"):
                if attr in vars(mods[a]) or attr in mods[a]._modules:
                    delattr(mods[a], attr)


def _images(ctx: Context) -> Iterator[Callable[[], list[Tensor]]]:
    """One callable per calibration image running its forward (features, then every prompt)."""
    adapter = ctx.walker.adapter
    for sample in ctx.walker.calib.samples:

        def run(sample: Any = sample) -> list[Tensor]:
            pixels = adapter.preprocess(sample.image.pixels)
            hw = sample.image.pixels.shape[:2]
            feats = adapter.embed(pixels)
            return [adapter.decode(feats, p, hw).logits for p in sample.prompts]

        yield run


def _agq_bits(ctx: Context) -> list[int]:
    return sorted({int(o[1:-3]) for o in option_ids(ctx.options, "matmul_sv") if "log" in o})


def _observer(
    x_obs: RangeObserver, y_obs: RangeObserver, sampler: PairSampler | None
) -> Callable[[Tensor, Tensor], None]:
    def fn(a: Tensor, b: Tensor) -> None:
        x_obs.update(a)
        y_obs.update(b)
        if sampler is not None:
            sampler.update(a, b)

    return fn


@torch.no_grad()
def calibrate_sites(ctx: Context, sites: list[str]) -> dict[str, Any]:
    """Per site: AvgMinMax ranges of both operands, and for sv sites the AGQ (tau, scale) per
    log2 width, from one float pass over the calibration images (JSON-ready)."""
    ranges = {s: (RangeObserver(), RangeObserver()) for s in sites}
    pairs = {s: PairSampler() for s in sites if s.endswith("sv_matmul")}
    taps: dict[str, nn.Module] = {}
    for s in sites:
        taps[s] = _PairTap(_observer(*ranges[s], pairs.get(s)))
    with explicit_sites(ctx.model, taps):
        for run in _images(ctx):
            run()
    out: dict[str, Any] = {}
    for s in sites:
        x_obs, y_obs = ranges[s]
        if not x_obs.count:
            continue
        mean = [(o.lo_sum / o.count, o.hi_sum / o.count) for o in (x_obs, y_obs)]
        entry: dict[str, Any] = {"x": list(mean[0]), "y": list(mean[1])}
        if s in pairs and pairs[s].samples:
            entry["agq"] = {}
            for b in _agq_bits(ctx):
                res = agq_search(pairs[s].samples, b)
                entry["agq"][str(b)] = [res.tau, res.scale]
        out[s] = entry
    return out


def _uniform(bits: int, lo_hi: list[float]) -> ActQuantizer:
    """An asymmetric per-tensor quantizer over the averaged range, as ``apply_plan`` sets it."""
    obs = RangeObserver()
    obs.lo_sum, obs.hi_sum, obs.count = float(lo_hi[0]), float(lo_hi[1]), 1
    q = ActQuantizer(bits)
    q.set_qparams(*obs.qparams(bits, False))
    return q


def site_quantizers(site: str, option: str, calib: dict[str, Any]) -> PairQuantizer:
    """The calibrated quantizer pair of ``site`` at ``option`` (as ``apply_plan`` builds it)."""
    bits = int(option[1:].removesuffix("log"))
    if bits >= 16:
        return PairQuantizer(nn.Identity(), nn.Identity())
    entry = calib[site]
    x: nn.Module = _uniform(bits, entry["x"])
    if option.endswith("log"):
        tau, scale = entry["agq"][str(bits)]
        log_q = LogQuantizer(bits)
        log_q.set_log_qparams(float(scale), int(tau))
        x = log_q
    return PairQuantizer(x, _uniform(bits, entry["y"]))


def _site_options(ctx: Context, site: str, calib: dict[str, Any]) -> list[str]:
    kind = "matmul_sv" if site.endswith("sv_matmul") else "matmul_qk"
    have_agq = "agq" in calib.get(site, {})
    return [o for o in option_ids(ctx.options, kind) if have_agq or not o.endswith("log")]


def run_site_kl(ctx: Context, kl_under: Callable[..., float]) -> dict[str, Any]:
    """Exact KL of every site at every option: one unit per site (after a calibration unit)."""
    sites = site_layers(ctx)
    if not sites:
        return {}
    calib = ctx.units(["attn-calib"], lambda _: calibrate_sites(ctx, sites), "attention ranges")
    table = calib["attn-calib"]

    def one(site: str) -> dict[str, Any]:
        losses = {}
        for option in _site_options(ctx, site, table):
            if option == "a16":  # kept in float: no change (the explicit forward's rounding aside)
                losses[option] = 0.0
                continue
            pair = site_quantizers(site, option, table)
            losses[option] = kl_under(ctx, site, explicit_sites(ctx.model, {site: pair}))
        return {"kind": _kind(site), "options": losses}

    measured = [s for s in sites if s in table]
    ids = [f"kl-attn:{s}" for s in measured]
    done = ctx.units(ids, lambda unit: one(unit.partition(":")[2]), "kl attention")
    return {s: done[u] for s, u in zip(measured, ids, strict=True)}


def _kind(site: str) -> str:
    return "matmul_sv" if site.endswith("sv_matmul") else "matmul_qk"


def _fisher_image(
    ctx: Context, index: int, run: Callable[[], list[Tensor]], sites: list[str], table: dict
) -> dict[str, dict[str, float]]:
    """½ Σ g²·Δx² over both operands of every site at every option, for one image."""
    kept: dict[str, list[tuple[Tensor, Tensor]]] = {s: [] for s in sites}

    def keep(site: str) -> Callable[[Tensor, Tensor], None]:
        def fn(a: Tensor, b: Tensor) -> None:
            if a.requires_grad:
                a.retain_grad()
                b.retain_grad()
                kept[site].append((a, b))

        return fn

    gen = torch.Generator(device="cpu").manual_seed(ctx.seed * 7919 + index)
    with ExitStack() as stack, torch.enable_grad():
        stack.enter_context(explicit_sites(ctx.model, {s: _PairTap(keep(s)) for s in sites}))
        surrogate = torch.zeros(())
        for z in run():
            p = torch.sigmoid(z.detach())
            y = torch.bernoulli(p.cpu(), generator=gen).to(p.device)
            surrogate = surrogate + ((y - p) * z).sum() / z.numel() ** 0.5
        leaves = [t for calls in kept.values() for pair in calls for t in pair]
        torch.autograd.backward(surrogate, inputs=leaves)
    n_batches = max(len(ctx.walker.calib.samples[index].prompts), 1)
    out: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for s in sites:
            out[s] = {}
            for option in _site_options(ctx, s, table):
                pair = site_quantizers(s, option, table)
                total = 0.0
                for a, b in kept[s]:
                    for t, q in ((a, pair.x), (b, pair.y)):
                        if t.grad is not None:
                            dx = q(t.detach()) - t.detach()
                            total += float((t.grad.pow(2) * dx.pow(2)).sum())
                out[s][option] = total / (2 * n_batches)
    return out


def run_site_fisher(ctx: Context) -> dict[str, Any]:
    """Fisher-KL of every site at every option: a calibration unit, then one unit per image."""
    sites = site_layers(ctx)
    if not sites:
        return {}
    calib = ctx.units(["attn-calib"], lambda _: calibrate_sites(ctx, sites), "attention ranges")
    table = calib["attn-calib"]
    measured = [s for s in sites if s in table]
    runs = list(_images(ctx))
    ids = [f"fisher-attn:{i}" for i in range(len(runs))]

    def unit(uid: str) -> dict[str, Any]:
        i = int(uid.partition(":")[2])
        return _fisher_image(ctx, i, runs[i], measured, table)

    done = ctx.units(ids, unit, "fisher_kl attention")
    n = max(len(ids), 1)
    return {
        s: {
            "kind": _kind(s),
            "options": {
                o: sum(done[u][s][o] for u in ids) / n for o in _site_options(ctx, s, table)
            },
        }
        for s in measured
    }

"""Fisher-KL: the second-order estimate ½ Σ_k E[g_k²]·Δh_k² of every layer's KL at every
candidate from one forward and one backward per calibration image.

g is the gradient, with respect to a layer's output h, of the log-likelihood of a mask sampled
from the model's own per-pixel Bernoulli output (so E[g gᵀ] is the Fisher information of the
output); Δh is the change of h when the layer's weight (or input) is quantized, computed from
the captured input without re-running the network. Each prompt batch's log-likelihood is
weighted by 1/√P (P = its number of mask pixels) so that the estimate matches the exact KL's
mean-over-pixels reduction; batches are averaged.

Token sampling. For linear layers and ungrouped convolutions the sum over output elements is a
sum over tokens (output positions) of per-token sums over channels. Computing Δh at every token
for every candidate costs several forward passes, so by default the sum over tokens is
estimated from a seeded uniform sample of a share ``fisher_sample`` (default 1/8) of them, never
fewer than ``MIN_TOKENS`` (a call with fewer tokens uses all), scaled by tokens / sampled: an
unbiased estimate of the full sum. ``options={"fisher_sample": 1.0}`` computes every token.
Transposed and grouped convolutions always use every token.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.serialization import config as serialization_config

from profiling.quant.primitives import choose_qparams, fake_quantize
from profiling.quant.spec import PerTensor
from profiling.sensitivity.context import Context
from profiling.sensitivity.perturb import quantized_weight, widen
from profiling.sensitivity.request import sample_fraction
from profiling.sensitivity.sites import run_site_fisher

__all__ = [
    "MIN_TOKENS",
    "Rows",
    "WeightChanges",
    "act_terms",
    "delta_output",
    "layer_terms",
    "run_fisher",
    "sampled_rows",
    "weight_terms",
]

MIN_TOKENS = 128
KEEP_BYTES = 1 << 30  # weight changes kept across images (hiera-tiny needs about 0.5 GiB)


def delta_output(
    mod: Any, x: torch.Tensor, dw: torch.Tensor | None = None, dx: torch.Tensor | None = None
) -> torch.Tensor:
    """Output change of a linear / conv layer for a weight change dw or an input change dx."""
    w: Any = dw if dw is not None else mod.weight
    inp: Any = x if dw is not None else dx
    if isinstance(mod, nn.Linear):
        return F.linear(inp, w)
    if isinstance(mod, nn.ConvTranspose2d):
        padding: Any = mod.padding
        return F.conv_transpose2d(
            inp, w, None, mod.stride, padding, mod.output_padding, mod.groups, mod.dilation
        )
    return F.conv2d(inp, w, None, mod.stride, mod.padding, mod.dilation, mod.groups)


class _Capture:
    """Hooks that keep each layer's inputs and outputs for one image, and the range (min, max)
    of every input the layer saw."""

    def __init__(self, mods: dict[str, nn.Module]) -> None:
        self.calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in mods}
        self.ranges: dict[str, tuple[float, float]] = {}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in mods.items()]

    def _hook(self, name: str) -> Any:
        def hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            x = args[0].detach()
            widen(self.ranges, name, x)
            if out.requires_grad:
                out.retain_grad()
                self.calls[name].append((x, out))

        return hook

    def grads(self, name: str) -> list[tuple[torch.Tensor, torch.Tensor | None]]:
        """``(input, output gradient)`` of each call of ``name`` after the backward."""
        return [(x, h.grad) for x, h in self.calls[name]]

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _image_grads(ctx: Context, index: int, mods: dict[str, nn.Module]) -> _Capture:
    """One forward with capture and one backward of the sampled log-likelihood."""
    walker, sample = ctx.walker, ctx.walker.calib.samples[index]
    pixels = walker.adapter.preprocess(sample.image.pixels)
    hw = sample.image.pixels.shape[:2]
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed * 7919 + index)
    cap = _Capture(mods)
    try:
        with torch.enable_grad():
            feats = walker.adapter.embed(pixels)
            surrogate = torch.zeros(())
            for prompts in sample.prompts:
                z = walker.adapter.decode(feats, prompts, hw).logits
                p = torch.sigmoid(z.detach())
                y = torch.bernoulli(p.cpu(), generator=gen).to(p.device)
                surrogate = surrogate + ((y - p) * z).sum() / z.numel() ** 0.5
            outs = [h for calls in cap.calls.values() for _, h in calls]
            torch.autograd.backward(surrogate, inputs=outs)
    finally:
        cap.remove()
    return cap


def _token_view(mod: Any) -> bool:
    """Whether the layer's output is a per-token product of its (unfolded) input."""
    if isinstance(mod, nn.Linear):
        return True
    return type(mod) is nn.Conv2d and mod.groups == 1 and isinstance(mod.padding, tuple)


def _as_tokens(mod: Any, t: torch.Tensor, is_input: bool) -> torch.Tensor:
    """A layer input (``is_input``) or output gradient as a (tokens, features) matrix whose
    rows line up with the weight as an (out, features) matrix."""
    if isinstance(mod, nn.Linear):
        return t.reshape(-1, t.shape[-1])
    if is_input:
        cols = F.unfold(t, mod.kernel_size, mod.dilation, mod.padding, mod.stride)
        return cols.transpose(1, 2).reshape(-1, cols.shape[1])
    return t.flatten(2).transpose(1, 2).reshape(-1, t.shape[1])


def _rows(n: int, fraction: float, gen: torch.Generator) -> torch.Tensor | None:
    """Seeded uniform sample of token rows, or None for all of them."""
    keep = max(MIN_TOKENS, math.ceil(n * fraction))
    if keep >= n:
        return None
    return torch.randperm(n, generator=gen)[:keep].sort().values


class WeightChanges:
    """ΔW = Q_b(W) − W of each layer at each width below 16, computed once and kept for the
    next images up to ``cap_bytes`` (then recomputed per image). Token-view layers keep the
    widths stacked as one (widths·out, features) matrix."""

    def __init__(self, cap_bytes: int = KEEP_BYTES) -> None:
        self.cap, self.used = cap_bytes, 0
        self.kept: dict[str, Any] = {}

    @torch.no_grad()
    def get(self, name: str, mod: Any, w_bits: list[int]) -> Any:
        if name in self.kept:
            return self.kept[name]
        dws = [quantized_weight(mod, b) - mod.weight for b in w_bits]
        value: Any = dws
        if _token_view(mod) and dws:
            value = torch.cat([dw.reshape(dw.shape[0], -1) for dw in dws])
        tensors = value if isinstance(value, list) else [value]
        size = sum(t.numel() * t.element_size() for t in tensors)
        if self.used + size <= self.cap:
            self.kept[name] = value
            self.used += size
        return value


def _compact(t: torch.Tensor) -> torch.Tensor:
    whole = t.untyped_storage().nbytes()
    return t.clone() if whole > t.numel() * t.element_size() or not t.is_contiguous() else t


class Rows:
    """One layer call's inputs and squared output gradients at the tokens the estimate uses:
    ``x`` (tokens, features) rows for token-view layers (``scale`` = tokens / sampled), or the
    whole input and gradient for the others (``tokens`` False)."""

    def __init__(self, x: torch.Tensor, g2: torch.Tensor, scale: float, tokens: bool) -> None:
        self.x, self.g2, self.scale, self.tokens = x, g2, scale, tokens

    def state(self) -> dict[str, Any]:
        """For ``torch.save``: tensors that own just their elements (a saved view would carry
        its whole base tensor)."""
        return {
            "x": _compact(self.x),
            "g2": _compact(self.g2),
            "scale": self.scale,
            "tokens": self.tokens,
        }

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Rows:
        return cls(d["x"], d["g2"], float(d["scale"]), bool(d["tokens"]))


@torch.no_grad()
def sampled_rows(
    mod: Any,
    calls: list[tuple[torch.Tensor, torch.Tensor | None]],
    fraction: float = 1.0,
    gen: torch.Generator | None = None,
) -> list[Rows]:
    """The rows of each call ``(input, output gradient)`` that the estimate evaluates Δh on."""
    gen = gen if gen is not None else torch.Generator().manual_seed(0)
    out = []
    for x, grad in calls:
        if grad is None:
            continue
        if not _token_view(mod):  # every output element
            out.append(Rows(x, grad.pow(2), 1.0, False))
            continue
        xt, gt = _as_tokens(mod, x, True), _as_tokens(mod, grad, False)
        rows = _rows(xt.shape[0], fraction, gen)
        scale = 1.0 if rows is None else xt.shape[0] / rows.numel()
        if rows is not None:
            xt, gt = xt[rows], gt[rows]
        out.append(Rows(xt.contiguous(), gt.pow(2), scale, True))
    return out


@torch.no_grad()
def weight_terms(mod: Any, rows: list[Rows], w_bits: list[int], changes: Any = None) -> list[float]:
    """Σ g²·Δh² over ``rows`` for each weight width below 16 (the ½ and batch mean not applied).
    ``changes`` are the layer's weight changes from :class:`WeightChanges`."""
    wb = [b for b in w_bits if b < 16]
    if changes is None:
        changes = WeightChanges(0).get("", mod, wb)
    weight = [0.0] * len(wb)
    if not wb:
        return weight
    for r in rows:
        if not r.tokens:  # one pass per width
            for i, dw in enumerate(changes):
                weight[i] += float((r.g2 * delta_output(mod, r.x, dw=dw).pow(2)).sum())
            continue
        dh = (r.x @ changes.T).view(r.x.shape[0], len(wb), r.g2.shape[1])  # widths in one product
        per = torch.einsum("tkc,tc->k", dh.pow(2), r.g2)
        for i in range(len(wb)):
            weight[i] += float(per[i]) * r.scale
    return weight


@torch.no_grad()
def act_terms(
    mod: Any, rows: list[Rows], a_bits: list[int], act_range: tuple[float, float]
) -> list[float]:
    """Σ g²·Δh² over ``rows`` for each activation width below 16, the input quantized per tensor
    over the calibrated ``act_range`` (the ½ and batch mean not applied)."""
    ab = [b for b in a_bits if b < 16]
    lo, hi = act_range
    qparams = [choose_qparams(torch.tensor([lo, hi]), b, False, PerTensor()) for b in ab]
    act = [0.0] * len(ab)
    w = mod.weight.reshape(mod.weight.shape[0], -1)
    for r in rows:
        for i, (b, (s, z)) in enumerate(zip(ab, qparams, strict=True)):
            # 0 is exactly representable, so quantizing unfolded (zero-padded) columns is exact
            dx = fake_quantize(r.x, s.to(r.x.device), z.to(r.x.device), b, False) - r.x
            dh = delta_output(mod, r.x, dx=dx) if not r.tokens else dx @ w.T
            act[i] += float((dh.pow(2) * r.g2).sum()) * r.scale
    return act


def _halved(bits: list[int], sums: list[float], n_batches: int) -> dict[str, float]:
    return {str(b): v / (2 * n_batches) for b, v in zip(bits, sums, strict=True)}


def layer_terms(
    mod: Any,
    calls: list[tuple[torch.Tensor, torch.Tensor | None]],
    w_bits: list[int],
    a_bits: list[int],
    act_range: tuple[float, float],
    n_batches: int = 1,
    fraction: float = 1.0,
    gen: torch.Generator | None = None,
    changes: Any = None,
) -> dict[str, dict[str, float]]:
    """½ Σ g²·Δh² per weight width and activation width, summed over the layer's calls
    ``(input, output gradient)`` and divided by ``n_batches``; the sum over tokens is estimated
    from a ``fraction`` of them (see the module notes). ``changes`` are the layer's weight
    changes from :class:`WeightChanges` (computed here when not given)."""
    rows = sampled_rows(mod, calls, fraction, gen)
    wb = [b for b in w_bits if b < 16]
    ab = [b for b in a_bits if b < 16]
    return {
        "weight": _halved(wb, weight_terms(mod, rows, w_bits, changes), n_batches),
        "act": _halved(ab, act_terms(mod, rows, a_bits, act_range), n_batches),
    }


def _save_rows(path: Path, rows: dict[str, list[Rows]]) -> int:
    """Write one image's rows (tmp file + rename); its size in bytes. The zip's CRC is skipped
    (it cost 10× the write): the rename already keeps a killed run from leaving half a file."""
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with serialization_config.patch({"save.compute_crc32": False}):  # type: ignore[attr-defined]
        torch.save({n: [r.state() for r in rs] for n, rs in rows.items()}, tmp)
    os.replace(tmp, path)
    return path.stat().st_size


def _load_rows(path: Path) -> dict[str, list[Rows]] | None:
    """One image's rows (memory-mapped), or None when the file is missing or unreadable."""
    try:
        kept = torch.load(path, weights_only=True, mmap=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError):
        return None
    return {n: [Rows.from_state(r) for r in rs] for n, rs in kept.items()}


def _merge_ranges(per_image: list[dict[str, list[float]]]) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for ranges in per_image:
        for n, lo_hi in ranges.items():
            widen(out, n, torch.tensor(lo_hi, dtype=torch.float64))
    return out


def run_fisher(ctx: Context) -> dict[str, Any]:
    """Every weight layer at once, in two phases of units.

    Phase 1, one unit per calibration image: one forward (which also records each layer's input
    range: no separate float pass) and one backward; the weight terms; the rows the activation
    terms need, kept in a file in the scratch folder. Phase 2, one unit per image once every
    range is known: the activation terms over the calibrated ranges (then the rows file is
    deleted; a unit that finds no file, e.g. on another machine, makes the same rows again)."""
    names = ctx.candidate_layers()
    if not names:  # only attention sites asked for (``layers`` names no weight layer)
        return {"layers": run_site_fisher(ctx), "unmeasured": []}
    all_mods = ctx.modules()
    mods = {n: all_mods[n] for n in names}
    fraction = sample_fraction(ctx.options)
    samples = ctx.walker.calib.samples
    n_batches = len(samples[0].prompts) or 1
    n_img = len(samples)
    changes = ctx.memo.setdefault("fisher_changes", WeightChanges())  # kept across replays
    wb = [b for b in ctx.w_bits if b < 16]
    ab = [b for b in ctx.a_bits if b < 16]
    rows_dir = ctx.scratch_dir("fisher-rows")

    def image_rows(i: int) -> tuple[dict[str, tuple[float, float]], dict[str, list[Rows]]]:
        """One forward + backward on image ``i``: each layer's input range and sampled rows."""
        cap = _image_grads(ctx, i, mods)
        gen = torch.Generator().manual_seed(ctx.seed * 104729 + i)
        ran = [n for n in names if n in cap.ranges]
        return {n: cap.ranges[n] for n in ran}, {
            n: sampled_rows(mods[n], cap.grads(n), fraction, gen) for n in ran
        }

    def stage1(unit: str) -> dict[str, Any]:
        i = int(unit.partition(":")[2])
        seen, rows = image_rows(i)
        out: dict[str, Any] = {
            "weight": {
                n: _halved(
                    wb, weight_terms(mods[n], rows[n], wb, changes.get(n, mods[n], wb)), n_batches
                )
                for n in rows
            },
            "ranges": {n: list(r) for n, r in seen.items()},
        }
        if ab:
            out["rows_bytes"] = _save_rows(rows_dir / f"{i}.pt", rows)
        return out

    share1 = (0.0, 0.5) if ab else (0.0, 1.0)
    ids1 = [f"fisher:{i}" for i in range(n_img)]
    done1 = ctx.units(ids1, stage1, "fisher_kl images", share1)
    first = [done1[u] for u in ids1]
    ranges = _merge_ranges([u["ranges"] for u in first])
    ctx.ranges = ranges

    def stage2(unit: str) -> dict[str, Any]:
        i = int(unit.partition(":")[2])
        path = rows_dir / f"{i}.pt"
        kept = _load_rows(path)
        if kept is None:  # the file was lost (or made elsewhere): the same seeded rows again
            kept = image_rows(i)[1]
        out = {
            n: _halved(ab, act_terms(mods[n], kept[n], ab, ranges[n]), n_batches)
            for n in first[i]["ranges"]
        }
        del kept
        path.unlink(missing_ok=True)
        return out

    ids2 = [f"fisher-act:{i}" for i in range(n_img)] if ab else []
    done2 = ctx.units(ids2, stage2, "fisher_kl activations", (0.5, 1.0)) if ab else {}
    acts = [done2[u] for u in ids2]
    shutil.rmtree(rows_dir, ignore_errors=True)
    measured = [n for n in names if any(n in u["ranges"] for u in first)]

    def mean(terms: list[dict[str, dict[str, float]]], n: str, bits: list[int]) -> dict:
        return {str(b): sum(t[n][str(b)] for t in terms if n in t) / n_img for b in bits}

    layers = {
        n: {"weight": mean([u["weight"] for u in first], n, wb), "act": mean(acts, n, ab)}
        for n in measured
    }
    unmeasured = [n for n in names if n not in layers]  # never ran on an image (memory path)
    layers |= run_site_fisher(ctx)  # attention sites, with the ``attention`` option
    most = max((u.get("rows_bytes", 0) for u in first), default=0)
    return {"layers": layers, "unmeasured": unmeasured, "stats": {"fisher_rows_bytes": most}}

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
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from profiling.quant.primitives import choose_qparams, fake_quantize
from profiling.quant.spec import PerTensor
from profiling.sensitivity.context import Context
from profiling.sensitivity.perturb import quantized_weight
from profiling.sensitivity.request import sample_fraction

__all__ = ["MIN_TOKENS", "WeightChanges", "delta_output", "layer_terms", "run_fisher"]

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
    """Hooks that keep each layer's inputs and outputs for one image."""

    def __init__(self, mods: dict[str, nn.Module]) -> None:
        self.calls: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in mods}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in mods.items()]

    def _hook(self, name: str) -> Any:
        def hook(m: nn.Module, args: tuple, out: torch.Tensor) -> None:
            if out.requires_grad:
                out.retain_grad()
                self.calls[name].append((args[0].detach(), out))

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _image_grads(ctx: Context, index: int, mods: dict[str, nn.Module]) -> _Capture:
    """One forward with capture and one backward of the sampled log-likelihood."""
    walker, sample = ctx.walker, ctx.walker.calib.samples[index]
    img = walker.images[index]
    gen = torch.Generator(device="cpu").manual_seed(ctx.seed * 7919 + index)
    cap = _Capture(mods)
    try:
        with torch.enable_grad():
            feats = walker.adapter.embed(img.pixels)
            surrogate = torch.zeros(())
            for prompts in sample.prompts:
                z = walker.adapter.decode(feats, prompts, img.hw).logits
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


@torch.no_grad()
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
    wb = [b for b in w_bits if b < 16]
    ab = [b for b in a_bits if b < 16]
    if changes is None:
        changes = WeightChanges(0).get("", mod, wb)
    lo, hi = act_range
    qparams = [choose_qparams(torch.tensor([lo, hi]), b, False, PerTensor()) for b in ab]
    weight = [0.0] * len(wb)
    act = [0.0] * len(ab)
    gen = gen if gen is not None else torch.Generator().manual_seed(0)
    for x, grad in calls:
        if grad is None:
            continue
        if not _token_view(mod):  # every output element, one pass per width
            g2 = grad.pow(2)
            for i, dw in enumerate(changes):
                weight[i] += float((g2 * delta_output(mod, x, dw=dw).pow(2)).sum())
            for i, (b, (s, z)) in enumerate(zip(ab, qparams, strict=True)):
                dx = fake_quantize(x, s.to(x.device), z.to(x.device), b, False) - x
                act[i] += float((g2 * delta_output(mod, x, dx=dx).pow(2)).sum())
            continue
        xt, gt = _as_tokens(mod, x, True), _as_tokens(mod, grad, False)
        rows = _rows(xt.shape[0], fraction, gen)
        scale = 1.0 if rows is None else xt.shape[0] / rows.numel()
        if rows is not None:
            xt, gt = xt[rows], gt[rows]
        g2 = gt.pow(2)
        if wb:  # every weight width in one product
            dh = (xt @ changes.T).view(xt.shape[0], len(wb), g2.shape[1])
            per = torch.einsum("tkc,tc->k", dh.pow(2), g2)
            for i in range(len(wb)):
                weight[i] += float(per[i]) * scale
        w = mod.weight.reshape(mod.weight.shape[0], -1)
        for i, (b, (s, z)) in enumerate(zip(ab, qparams, strict=True)):
            # 0 is exactly representable, so quantizing unfolded (zero-padded) columns is exact
            dxt = fake_quantize(xt, s.to(x.device), z.to(x.device), b, False) - xt
            act[i] += float(((dxt @ w.T).pow(2) * g2).sum()) * scale
    return {
        "weight": {str(b): v / (2 * n_batches) for b, v in zip(wb, weight, strict=True)},
        "act": {str(b): v / (2 * n_batches) for b, v in zip(ab, act, strict=True)},
    }


def run_fisher(ctx: Context) -> dict[str, Any]:
    """Every weight layer at once; one checkpointed unit per calibration image."""
    names = ctx.weight_layers()
    all_mods = ctx.modules()
    mods = {n: all_mods[n] for n in names}
    fraction = sample_fraction(ctx.options)
    n_batches = len(ctx.walker.calib.samples[0].prompts) or 1
    n_img = len(ctx.walker.images)
    changes = WeightChanges()
    wb = [b for b in ctx.w_bits if b < 16]
    per_image = []
    for i in range(n_img):
        ctx.tick(i, n_img, f"fisher_kl image {i + 1}/{n_img}")
        terms = ctx.store.get(f"fisher:{i}")
        if terms is None:
            cap = _image_grads(ctx, i, mods)
            gen = torch.Generator().manual_seed(ctx.seed * 104729 + i)
            terms = {
                n: layer_terms(
                    mods[n],
                    [(x, h.grad) for x, h in cap.calls[n]],
                    ctx.w_bits,
                    ctx.a_bits,
                    ctx.ranges[n],
                    n_batches,
                    fraction,
                    gen,
                    changes.get(n, mods[n], wb),
                )
                for n in names
            }
            del cap
            ctx.store.put(f"fisher:{i}", terms)
        per_image.append(terms)
    ctx.tick(n_img, n_img, "fisher_kl done")
    layers = {
        n: {
            kind: {b: sum(t[n][kind][b] for t in per_image) / n_img for b in per_image[0][n][kind]}
            for kind in ("weight", "act")
        }
        for n in names
    }
    return {"layers": layers}

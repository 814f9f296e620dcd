"""Fisher-KL: the second-order estimate ½ Σ_k E[g_k²]·Δh_k² of every layer's KL at every
candidate from one forward and one backward per calibration image.

g is the gradient, with respect to a layer's output h, of the log-likelihood of a mask sampled
from the model's own per-pixel Bernoulli output (so E[g gᵀ] is the Fisher information of the
output); Δh is the change of h when the layer's weight (or input) is quantized, computed from
the captured input without re-running the network. Each prompt batch's log-likelihood is
weighted by 1/√P (P = its number of mask pixels) so that the estimate matches the exact KL's
mean-over-pixels reduction; batches are averaged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from profiling.quant.primitives import choose_qparams, fake_quantize
from profiling.quant.spec import PerTensor
from profiling.sensitivity.context import Context
from profiling.sensitivity.perturb import quantized_weight

__all__ = ["delta_output", "run_fisher"]


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


@torch.no_grad()
def _layer_terms(
    ctx: Context, mod: Any, name: str, calls: list[tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, dict[str, float]]:
    """½ Σ g²·Δh² per weight and activation candidate, summed over the layer's calls."""
    n_batches = len(ctx.walker.calib.samples[0].prompts) or 1
    weight: dict[str, float] = {}
    for b in (b for b in ctx.w_bits if b < 16):
        dw = quantized_weight(mod, b) - mod.weight
        weight[str(b)] = sum(
            float((h.grad.pow(2) * delta_output(mod, x, dw=dw).pow(2)).sum())
            for x, h in calls
            if h.grad is not None
        ) / (2 * n_batches)
    act: dict[str, float] = {}
    lo, hi = ctx.ranges[name]
    for b in (b for b in ctx.a_bits if b < 16):
        scale, zp = choose_qparams(torch.tensor([lo, hi]), b, False, PerTensor())
        total = 0.0
        for x, h in calls:
            if h.grad is not None:
                dx = fake_quantize(x, scale.to(x.device), zp.to(x.device), b, False) - x
                total += float((h.grad.pow(2) * delta_output(mod, x, dx=dx).pow(2)).sum())
        act[str(b)] = total / (2 * n_batches)
    return {"weight": weight, "act": act}


def run_fisher(ctx: Context) -> dict[str, Any]:
    """Every weight layer at once; one checkpointed unit per calibration image."""
    names = ctx.weight_layers()
    all_mods = ctx.modules()
    mods = {n: all_mods[n] for n in names}
    n_img = len(ctx.walker.images)
    per_image = []
    for i in range(n_img):
        ctx.tick(i, n_img, f"fisher_kl image {i + 1}/{n_img}")
        terms = ctx.store.get(f"fisher:{i}")
        if terms is None:
            cap = _image_grads(ctx, i, mods)
            terms = {n: _layer_terms(ctx, mods[n], n, cap.calls[n]) for n in names}
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

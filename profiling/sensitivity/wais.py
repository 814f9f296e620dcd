"""Mix-QSAM2's weight-activation importance score for every Linear layer:
WAIS_l = mean_ij(|W_ij|·‖X_:,j‖₂), with ‖X_:,j‖₂ the L2 norm of input channel j over all
calibration tokens (the paper's definition; the re-implementation's RMS differs by √tokens)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from profiling.sensitivity.context import Context

__all__ = ["run_wais"]


@torch.no_grad()
def _channel_energy(ctx: Context, index: int, mods: dict[str, nn.Module]) -> dict[str, list[float]]:
    """Σ over tokens of X_j² for each Linear's input channels, on one image."""
    energy: dict[str, torch.Tensor] = {}

    def hook(name: str) -> Any:
        def fn(m: nn.Module, args: tuple) -> None:
            x = args[0].detach().double()
            e = x.reshape(-1, x.shape[-1]).pow(2).sum(0)
            energy[name] = energy[name] + e if name in energy else e

        return fn

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in mods.items()]
    try:
        walker = ctx.walker
        img = walker.images[index]
        feats = walker.adapter.embed(img.pixels)
        for prompts in walker.calib.samples[index].prompts:
            walker.adapter.decode(feats, prompts, img.hw)
    finally:
        for h in handles:
            h.remove()
    return {n: e.tolist() for n, e in energy.items()}


def run_wais(ctx: Context) -> dict[str, Any]:
    """One checkpointed unit per image; scores combine the energies of all images."""
    all_mods = ctx.modules()
    mods = {n: all_mods[n] for n in ctx.weight_layers() if isinstance(all_mods[n], nn.Linear)}
    n_img = len(ctx.walker.images)
    ids = [f"wais:{i}" for i in range(n_img)]
    energies = ctx.units(
        ids, lambda unit: _channel_energy(ctx, int(unit.partition(":")[2]), mods), "wais"
    )
    total: dict[str, torch.Tensor] = {}
    for unit in ids:
        for n, e in energies[unit].items():
            t = torch.tensor(e, dtype=torch.float64)
            total[n] = total[n] + t if n in total else t
    scores = {}
    for n, e in total.items():
        w: Any = mods[n].weight
        scores[n] = float((w.detach().double().abs() * e.sqrt()[None, :]).mean())
    return {"scores": scores}

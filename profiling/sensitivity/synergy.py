"""Measured synergy: for adjacent pairs (execution order and data-flow edges) the interaction
KL(both quantized) − KL(a) − KL(b) at probe weight bit-widths, giving the problem's pair
loss matrices.

To bound the cost, the interaction is measured at up to three probe widths (the lowest, middle
and highest candidate weight widths below 16) for each layer and mapped to every candidate by
its nearest probe; 16-bit options interact with nothing. Only weight quantization interacts
(activation interactions are taken as zero), and negative interactions are clipped to zero
(the problem format takes non-negative pair losses), which keeps the solver conservative.
"""

from __future__ import annotations

from contextlib import ExitStack
from typing import Any

from profiling.quant.spec import parse_candidate
from profiling.sensitivity.context import Context
from profiling.sensitivity.kl import kl_under
from profiling.sensitivity.perturb import quantized_weight, weight_swapped
from profiling.sensitivity.walker import NOT_ON_IMAGES

__all__ = ["adjacent_pairs", "probe_bits", "run_synergy", "pair_matrix"]


def adjacent_pairs(ctx: Context) -> list[tuple[str, str]]:
    """Consecutive weight layers in execution order, plus data-flow edges between them."""
    layers = ctx.weight_layers()
    keep = set(layers)
    pairs = list(zip(layers, layers[1:]))
    seen = set(pairs)
    for a, b in ctx.inventory.graph.edges:
        if a in keep and b in keep and (a, b) not in seen and (b, a) not in seen:
            pairs.append((a, b))
            seen.add((a, b))
    return pairs


def probe_bits(w_bits: list[int]) -> list[int]:
    """Up to three probe widths: lowest, middle and highest below 16."""
    low = sorted(b for b in set(w_bits) if b < 16)
    if len(low) <= 3:
        return low
    return [low[0], low[len(low) // 2], low[-1]]


def _swap(ctx: Context, layer: str, bits: int) -> Any:
    mod: Any = ctx.modules()[layer]
    return weight_swapped(mod, quantized_weight(mod, bits))


def _single(ctx: Context, unit: str) -> float:
    """KL of ``single:<layer>:<bits>``: that layer's weight alone at that width."""
    _, layer, bits = unit.split(":")
    return kl_under(ctx, layer, _swap(ctx, layer, int(bits)))


def _pair(
    ctx: Context, unit: str, probes: list[int], singles: dict[str, float]
) -> dict[str, float]:
    """Interactions of ``pair:<a>|<b>`` at every pair of probe widths."""
    a, b = unit.partition(":")[2].split("|")
    out = {}
    first = a if _order(ctx, a) <= _order(ctx, b) else b  # re-run from the earlier layer
    for wa in probes:
        for wb in probes:
            with ExitStack() as stack:
                stack.enter_context(_swap(ctx, a, wa))
                both = kl_under(ctx, first, _swap(ctx, b, wb))
            out[f"{wa},{wb}"] = both - singles[f"single:{a}:{wa}"] - singles[f"single:{b}:{wb}"]
    return out


def _order(ctx: Context, layer: str) -> float:
    stage = ctx.walker.stage_of(layer)
    return {"image": 1e6, "decode": 2e6, NOT_ON_IMAGES: 3e6}.get(str(stage), stage)  # type: ignore[arg-type]


def pair_matrix(
    inter: dict[str, float], cands_a: list[str], cands_b: list[str], probes: list[int]
) -> list[list[float]]:
    """Candidate × candidate loss matrix from probe interactions (nearest probe, clipped at 0)."""

    def near(bits: int) -> int | None:
        return None if bits >= 16 else min(probes, key=lambda p: (abs(p - bits), p))

    rows = []
    for ca in cands_a:
        pa = near(parse_candidate(ca).w_bits)
        row = []
        for cb in cands_b:
            pb = near(parse_candidate(cb).w_bits)
            row.append(0.0 if pa is None or pb is None else max(0.0, inter[f"{pa},{pb}"]))
        rows.append(row)
    return rows


def run_synergy(ctx: Context) -> dict[str, Any]:
    """Two phases of units: each paired layer alone at each probe width, then each pair."""
    pairs = adjacent_pairs(ctx)
    probes = probe_bits(ctx.w_bits)
    layers = list(dict.fromkeys(name for pair in pairs for name in pair))
    single_ids = [f"single:{n}:{b}" for n in layers for b in probes]
    singles = ctx.units(single_ids, lambda u: _single(ctx, u), "synergy singles", (0.0, 0.25))
    pair_ids = [f"pair:{a}|{b}" for a, b in pairs]
    inter = ctx.units(
        pair_ids, lambda u: _pair(ctx, u, probes, singles), "synergy pairs", (0.25, 1.0)
    )
    out = [{"a": a, "b": b, "interaction": inter[u]} for (a, b), u in zip(pairs, pair_ids)]
    return {"pairs": out, "probes": probes}

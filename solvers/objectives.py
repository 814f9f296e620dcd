"""Builders that turn the literature's objectives (and our profiled default) into a ``Problem``.

* ``profiled_problem``: measured per-layer losses {layer: {option: loss}} plus pair matrices.
* ``mix_qsam_problem``: Mix-QSAM's IQP, max Σ Ω_i·b_i − λ·Σ Ŝ_{l,l+1}·|b_l − b_{l+1}| under a size
  budget Σ p_i·b_i <= P·b̄ and a BOPs budget Σ MACs_i·b_i² <= MACs·b̄² (METHODS.md 1.3), as the
  minimisation of Σ Ω_i·(b_max − b_i) + λ·Σ Ŝ·|b_l − b_m| (same optimum, losses >= 0).
* ``mix_qsam2_problem``: Mix-QSAM2, min Σ WAIS_l·2^(−b_l) under Σ p_l·b_l <= B_avg·Σ p_l
  (METHODS.md 2.2), the bit sum carried by the ``weight_bits`` resource.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from solvers.costs import Hardware, LayerDesc, QuantConfig, candidate_id, cost_table
from solvers.problem import PROBLEM_FORMAT, Problem

__all__ = ["profiled_problem", "mix_qsam_problem", "mix_qsam2_problem"]

PairTable = Mapping[tuple[str, str], Any]


def profiled_problem(
    losses: Mapping[str, Mapping[str, float]],
    costs: Mapping[str, Mapping[str, Mapping[str, float]]],
    *,
    pairs: PairTable | None = None,
    ties: Iterable[Sequence[str]] = (),
    fixed: Mapping[str, float] | None = None,
    budget: Mapping[str, float | None] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Problem:
    """Profiled losses + measured pair terms; pair matrices follow each layer's option order."""
    layers = []
    for name, table in losses.items():
        if name not in costs:
            raise ValueError(f"costs: no entry for layer {name!r}")
        missing = [o for o in table if o not in costs[name]]
        if missing:
            raise ValueError(f"costs[{name!r}]: no costs for options {', '.join(missing)}")
        options = [{"id": o, "loss": float(v), **costs[name][o]} for o, v in table.items()]
        layers.append({"name": name, "options": options})
    raw: dict[str, Any] = {
        "format": PROBLEM_FORMAT,
        "layers": layers,
        "pairs": [
            {"a": a, "b": b, "loss": np.asarray(m, dtype=float).tolist()}
            for (a, b), m in (pairs or {}).items()
        ],
        "ties": [list(t) for t in ties],
        "fixed": dict(fixed or {}),
        "budget": dict(budget or {}),
    }
    if meta:
        raw["meta"] = dict(meta)
    return Problem.from_dict(raw)


def _uniform(layers: Sequence[LayerDesc], values: Sequence[float], what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.shape != (len(layers),) or not np.all(np.isfinite(array)) or np.any(array < 0):
        raise ValueError(f"{what}: need {len(layers)} finite values >= 0, got shape {array.shape}")
    return array


def mix_qsam_problem(
    layers: Sequence[LayerDesc],
    omega: Sequence[float],
    synergy: Sequence[float],
    *,
    bits: Sequence[int] = (4, 5, 6, 7, 8),
    target_bits: float,
    lam: float = 0.1,
    memory_budget: float | None = None,
    hardware: Hardware | None = None,
    config: QuantConfig = QuantConfig(),
) -> Problem:
    """Mix-QSAM (W = A bits per unit): Ω_i importances, Ŝ_{l,l+1} synergies of adjacent layers."""
    om = _uniform(layers, omega, "omega")
    syn = np.asarray(synergy, dtype=float)
    if syn.shape != (max(len(layers) - 1, 0),) or np.any(syn < 0) or not np.all(np.isfinite(syn)):
        raise ValueError(f"synergy: need {len(layers) - 1} finite values >= 0 (adjacent pairs)")
    ids = [candidate_id(b, b) for b in bits]
    b_max = max(bits)
    losses = {
        layer.name: {cid: float(om[i] * (b_max - b)) for cid, b in zip(ids, bits, strict=True)}
        for i, layer in enumerate(layers)
    }
    jump = np.abs(np.subtract.outer(np.asarray(bits, float), np.asarray(bits, float)))
    pairs = {
        (layers[i].name, layers[i + 1].name): lam * syn[i] * jump for i in range(len(layers) - 1)
    }
    budget = {
        "weight_bits": float(sum(layer.numel for layer in layers) * target_bits),
        "bops": float(sum(layer.macs for layer in layers) * target_bits**2),
        "memory_bytes": memory_budget,
    }
    meta = {
        "objective": "mix_qsam",
        "lam": lam,
        "target_bits": target_bits,
        "loss_offset": float(om.sum() * b_max),
    }
    costs = cost_table(layers, ids, hardware=hardware, config=config)
    return profiled_problem(
        _restrict(losses, costs),
        costs,
        pairs=_restrict_pairs(pairs, losses, costs),
        budget=budget,
        meta=meta,
    )


def mix_qsam2_problem(
    layers: Sequence[LayerDesc],
    wais: Sequence[float],
    *,
    bits: Sequence[int] = (3, 4, 5),
    avg_bits: float = 4.0,
    act_bits: int | None = None,
    memory_budget: float | None = None,
    hardware: Hardware | None = None,
    config: QuantConfig = QuantConfig(),
) -> Problem:
    """Mix-QSAM2: loss WAIS_l·2^(−b_l); average weight bits (by parameter count) <= ``avg_bits``."""
    score = _uniform(layers, wais, "wais")
    ids = [candidate_id(b, act_bits or b) for b in bits]
    losses = {
        layer.name: {cid: float(score[i] * 2.0**-b) for cid, b in zip(ids, bits, strict=True)}
        for i, layer in enumerate(layers)
    }
    budget = {
        "weight_bits": float(avg_bits * sum(layer.numel for layer in layers)),
        "memory_bytes": memory_budget,
    }
    costs = cost_table(layers, ids, hardware=hardware, config=config)
    meta = {"objective": "mix_qsam2", "avg_bits": avg_bits}
    return profiled_problem(_restrict(losses, costs), costs, budget=budget, meta=meta)


def _restrict(
    losses: dict[str, dict[str, float]], costs: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, float]]:
    """Drop the options a hardware profile filtered out of the cost table."""
    return {n: {o: v for o, v in table.items() if o in costs[n]} for n, table in losses.items()}


def _restrict_pairs(
    pairs: dict[tuple[str, str], np.ndarray],
    losses: Mapping[str, Mapping[str, float]],
    costs: Mapping[str, Mapping[str, Any]],
) -> dict[tuple[str, str], np.ndarray]:
    out = {}
    for (a, b), matrix in pairs.items():
        rows = [i for i, o in enumerate(losses[a]) if o in costs[a]]
        cols = [j for j, o in enumerate(losses[b]) if o in costs[b]]
        out[(a, b)] = matrix[np.ix_(rows, cols)]
    return out

"""Presolve for the exact backends: the Lagrangian fast path, then reduced-cost fixing.

The fast path gives an incumbent (used as the exact solver's hint) and prices μ; ``fixing`` then
drops every unit choice and pair entry whose Lagrangian lower bound exceeds the incumbent.
Every plan better than the incumbent survives, so the exact backends stay exact, and their
proven bounds stay valid for the full model (dropped plans all cost more than the incumbent).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from solvers.backends.compiled import Compiled, Result
from solvers.backends.fixing import Reduction, fix
from solvers.backends.lagrangian import run_lagrangian

__all__ = ["Presolved", "reduce", "combine"]


@dataclass
class Presolved:
    """The reduction, the fast path's plan in reduced indices (or None), and its lower bound."""

    reduction: Reduction
    incumbent: np.ndarray | None
    lower: float
    prices: list[float] | None = None  # the fast path's final prices (warm-start the next point)


def reduce(
    model: Compiled,
    seconds: float = 1.0,
    *,
    hint: np.ndarray | None = None,
    prices: np.ndarray | None = None,
) -> Presolved:
    """Run the fast path (``seconds`` at most for its swaps), then fix with its final prices.

    ``hint`` (a feasible plan) and ``prices`` (e.g. a neighbouring sweep point's) warm-start it.
    """
    run = run_lagrangian(
        model, time.perf_counter() + seconds, hint, stages=2, prices=prices, pairs=True
    )
    mu = [float(m) for m in run.dual.best_mu]
    if run.choice is None or run.fixed is None:
        return Presolved(
            Reduction(model, [np.arange(k) for k in model.sizes], np.inf), None, run.bound, mu
        )
    dual = run.dual
    shift = float(dual.best_mu @ dual.cap)
    fixed = fix(model, dual.dp, dual.priced(dual.best_mu[None])[0], shift, run.upper, run.fixed)
    total = fixed.reduction(model, run.upper)
    return Presolved(total, total.shrink(run.choice), run.bound, mu)


def combine(model: Compiled, pre: Presolved | None, result: Result) -> Result:
    """A reduced-model result in the full model's indices; the presolve's plan stands in when the
    exact solver found none (or a worse one) within its limit, and its bound is kept if higher."""
    if pre is None:
        return result
    result.extra = {**pre.reduction.stats(), **result.extra}
    if pre.prices is not None:
        result.extra["prices"] = pre.prices
    if result.choice is not None:
        result.choice = pre.reduction.expand(result.choice)
    if pre.incumbent is None or result.status == "infeasible":
        return result
    incumbent = pre.reduction.expand(pre.incumbent)
    if result.choice is None or model.objective(incumbent) < model.objective(result.choice):
        result.choice = incumbent
        result.status = "feasible" if result.status == "unknown" else result.status
    result.bound = max(result.bound if result.bound is not None else -np.inf, pre.lower)
    return result

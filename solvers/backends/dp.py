"""Exact dynamic programme for chains over one discretised resource; one pass gives a whole front.

Units must be joined by pairs only to their neighbours in layer order. The resource is cut into
bins of width δ: when every cost is an integer multiple of one δ within ``max_bins`` bins the
programme is exact; otherwise costs are rounded up (every plan it returns is feasible) and a
second pass with costs rounded down gives a valid lower bound (its relaxation), so the gap is
honest.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from solvers.backends.compiled import Compiled, NotApplicable, Result
from solvers.backends.treedp import TreeDP, pad

__all__ = ["MAX_BINS", "ChainTable", "check_chain", "chain_tables", "solve_dp"]

MAX_BINS = 2048


def check_chain(model: Compiled) -> None:
    """Raise ``NotApplicable`` unless every pair joins consecutive units in layer order."""
    for a, b in model.edges:
        if b != a + 1:
            names = (model.problem.layers[model.units[u].members[0]].name for u in (a, b))
            raise NotApplicable(
                "dp: needs a chain (pairs only between consecutive layers); got a pair "
                f"{' - '.join(names)}; use cpsat or milp"
            )


@dataclass
class ChainTable:
    """best[r] = least objective within r bins; ``back`` recovers the choices."""

    best: np.ndarray
    back: list[np.ndarray]
    last: np.ndarray
    weights: list[np.ndarray]


def _grid(
    model: Compiled, resource: str, top: float, max_bins: int
) -> tuple[list[np.ndarray], float, bool]:
    """Shifted costs (each unit's minimum removed), bin width δ, and whether δ is exact."""
    shifted = [c - c.min() for c in model.cost[resource]]
    top = max(min(top, sum(float(s.max()) for s in shifted)), 0.0)
    if all(np.all(np.floor(s) == s) for s in shifted):
        g = math.gcd(*[int(v) for s in shifted for v in s])
        if g and top / g <= max_bins:
            return shifted, float(g), True
        if not g:
            return shifted, 1.0, True
    return shifted, (top / max_bins if top > 0 else 1.0), False


def _pass(model: Compiled, weights: list[np.ndarray], bins: int) -> ChainTable:
    """One chain DP with integer bin weights; returns the table for backtracking."""
    width = bins + 1
    f = _place(model.loss[0], weights[0], np.zeros((len(model.loss[0]), width)), width)
    back = [np.zeros((0, width), dtype=np.int16)]
    for u in range(1, len(model.units)):
        kp, kc = len(model.loss[u - 1]), len(model.loss[u])
        pair = model.edges.get((u - 1, u), np.zeros((kp, kc)))
        table = f[:, None, :] + pair[:, :, None]
        arg = table.argmin(axis=0).astype(np.int16)
        g = np.take_along_axis(table, arg[None].astype(np.int64), axis=0)[0]
        back.append(arg)
        f = _place(model.loss[u], weights[u], g, width)
    best = f.min(axis=0)
    return ChainTable(best, back, f.argmin(axis=0), weights)


def _place(loss: np.ndarray, weight: np.ndarray, g: np.ndarray, width: int) -> np.ndarray:
    """f[c, r] = loss[c] + g[c, r − weight[c]] (inf where r < weight[c])."""
    out = np.full((len(loss), width), np.inf)
    for c, w in enumerate(weight):
        if w < width:
            out[c, w:] = g[c, : width - w] + loss[c]
    return out


def backtrack(table: ChainTable, r: int) -> np.ndarray:
    """The unit choices behind ``table.best[r]``."""
    n = len(table.weights)
    choice = np.zeros(n, dtype=np.int64)
    choice[-1] = table.last[r]
    for u in range(n - 1, 0, -1):
        r -= int(table.weights[u][choice[u]])
        choice[u - 1] = int(table.back[u][choice[u], r])
    return choice


def chain_tables(
    model: Compiled, resource: str, top: float, max_bins: int = MAX_BINS
) -> tuple[ChainTable, ChainTable | None, float, float]:
    """(feasible table, relaxation table or None when exact, δ, base) for capacities up to top."""
    base = sum(float(c.min()) for c in model.cost[resource])
    top = min(top, base + sum(float(c.max() - c.min()) for c in model.cost[resource]))
    shifted, delta, exact = _grid(model, resource, top - base, max_bins)
    bins = max(0, math.floor((top - base) / delta + 1e-9 * exact))

    def weights(rounding: Callable[[np.ndarray], np.ndarray], nudge: float) -> list[np.ndarray]:
        return [np.minimum(rounding(s / delta + nudge), bins + 1).astype(np.int64) for s in shifted]

    up = _pass(model, weights(np.ceil, -1e-9 * exact), bins)
    if exact:
        return up, None, delta, base
    down = _pass(model, weights(np.floor, 0.0), bins)
    return up, down, delta, base


def answer(tables: tuple[ChainTable, ChainTable | None, float, float], capacity: float) -> Result:
    """Read one capacity (budget − fixed) off the tables."""
    up, down, delta, base = tables
    if capacity < base:
        return Result("infeasible")
    r = min(
        math.floor((capacity - base) / delta + (1e-9 if down is None else 0.0)), len(up.best) - 1
    )
    bound = float((down or up).best[r])
    if not np.isfinite(up.best[r]):
        return Result("unknown", bound=bound, message="dp: no plan fits the rounded-up costs")
    choice = backtrack(up, r)
    status = "optimal" if down is None or up.best[r] <= bound + 1e-12 else "feasible"
    return Result(status, choice, bound, extra={"bin_width": delta})


def solve_dp(
    problem: Compiled,
    *,
    time_limit: float | None = None,
    hint: np.ndarray | None = None,
    max_bins: int = MAX_BINS,
) -> Result:
    """Solve a chain problem with at most one non-null budget."""
    del time_limit, hint
    check_chain(problem)
    if len(problem.capacity) > 1:
        raise NotApplicable(
            f"dp: handles one budget, got {len(problem.capacity)} ({', '.join(problem.capacity)})"
        )
    if not problem.capacity:
        dp = TreeDP(problem)
        values, choices = dp.minimise(pad(problem.loss, np.inf, dp.width)[None])
        return Result("optimal", choices[0], float(values[0]))
    ((resource, capacity),) = problem.capacity.items()
    return answer(chain_tables(problem, resource, capacity, max_bins), capacity)

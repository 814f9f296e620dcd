"""AIMET-style greedy baseline, kept to measure the exact backends against.

Each unit gets a ladder: its (cost, loss) frontier, cost being the sum of the constrained
resources each over its capacity. Start every unit at the top rung (least loss); while a budget
is exceeded, lower the least sensitive unit one rung, sensitivity being the objective increase
(pair terms included) per unit of normalised overrun removed. The bound reported is the
unconstrained minimum (exact on forests, a lower bound otherwise).
"""

from __future__ import annotations

import numpy as np

from solvers.backends.compiled import Compiled, Result
from solvers.backends.localsearch import LocalSearch
from solvers.backends.treedp import TreeDP

__all__ = ["solve_greedy"]


def _ladders(model: Compiled) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, its (cost, loss) frontier from most to least costly (cost = the sum of the
    constrained resources, each over its capacity), padded with -1; and the matching costs."""
    width = max(model.sizes)
    ladder = np.full((len(model.units), width), -1, dtype=np.int64)
    weight = np.full((len(model.units), width), np.inf)
    for u, loss in enumerate(model.loss):
        w = np.zeros(len(loss))
        for r, cap in model.capacity.items():
            w += model.cost[r][u] / max(abs(cap), 1e-300)
        frontier, least = [], np.inf
        for k in np.lexsort((loss, w)):  # cheapest first; keep only options that lower the loss
            if loss[k] < least:
                frontier.append(int(k))
                least = loss[k]
        order = np.array(frontier[::-1], dtype=np.int64)
        ladder[u, : len(order)] = order
        weight[u, : len(order)] = w[order]
    return ladder, weight


def _next_rungs(weight: np.ndarray) -> np.ndarray:
    """For each rung, the next rung down the ladder that is strictly cheaper (-1 if none)."""
    out = np.full(weight.shape, -1, dtype=np.int64)
    for u, row in enumerate(weight):
        for i in range(len(row)):
            below = np.flatnonzero(row[i + 1 :] < row[i])
            out[u, i] = i + 1 + below[0] if below.size and np.isfinite(row[i]) else -1
    return out


def solve_greedy(
    problem: Compiled, *, time_limit: float | None = None, hint: np.ndarray | None = None
) -> Result:
    """Lower the least sensitive unit one rung at a time until every budget holds."""
    del time_limit, hint
    ladder, weight = _ladders(problem)
    nxt = _next_rungs(weight)
    start = ladder[:, 0]
    rung = np.zeros(len(start), dtype=np.int64)
    search = LocalSearch(problem, start)
    rows = search.rows
    while not search.feasible():
        step = nxt[rows, rung]
        target = np.where(step >= 0, ladder[rows, np.maximum(step, 0)], -1)
        ok = target >= 0
        local = search.loss + search.pair
        over = (search.spent > search.cap) / search.norm
        here, there = (
            search.cost[:, rows, search.choice],
            search.cost[:, rows, np.maximum(target, 0)],
        )
        saved = over @ (here - there)
        delta = local[rows, np.maximum(target, 0)] - local[rows, search.choice]
        change = np.where(ok & (saved > 0), delta / np.maximum(saved, 1e-300), np.inf)
        pick = int(np.argmin(change))
        if not np.isfinite(change[pick]):
            break
        rung[pick] = step[pick]
        search.move(pick, int(target[pick]))
    search.refresh()
    bound = float(TreeDP(problem).minimise(problem.loss_pad[None])[0][0])
    if not search.feasible():
        return Result(
            "unknown", bound=bound, message="greedy: every unit at its cheapest rung, still over"
        )
    objective = problem.objective(search.choice)
    status = "optimal" if objective - bound <= 1e-9 * max(1.0, abs(objective)) else "feasible"
    return Result(status, search.choice, bound)

"""Lagrangian fast path: price the budgets, solve the priced problem by tree DP, then repair/swap.

For prices μ >= 0, D(μ) = min_x f(x) + Σ_r μ_r·(c_r(x) − cap_r) is a lower bound on the optimum
(``TreeDP`` gives a valid lower bound of the inner minimum even off forests). D is concave and is
maximised by a zooming grid search (a batched bisection: each pass prices a grid of μ in one DP
sweep, then narrows it around the best). After a coarse pass on the full model, the incumbent
fixes away choices that cannot beat it (``fixing``: their loss becomes +inf), and the fine
passes run on what is left. Bound: max(D_full, min(incumbent, D_reduced)).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass

import numpy as np

from solvers.backends.compiled import Compiled, Result
from solvers.backends.fixing import Fixed, fix
from solvers.backends.localsearch import TRIES, LocalSearch, objective_in_order, static_args
from solvers.backends.native import lib, ptr
from solvers.backends.treedp import price

__all__ = ["Dual", "LagrangianRun", "run_lagrangian", "solve_lagrangian"]

COARSE_POINTS = 8  # prices per pass on the full model
COARSE_PASSES = 1  # passes per resource on the full model
FINE_POINTS = 16  # prices per pass on the reduced model
FINE_PASSES = 2  # passes per resource and stage on the reduced model
POOL = 4  # priced optima with the best bounds kept as extra starts for the final swaps


class Dual:
    """The Lagrangian dual of a compiled problem, costs normalised by each capacity; choices
    outside ``alive`` (n, K) (fixed away) get an infinite loss, so no priced optimum takes them."""

    def __init__(self, model: Compiled, alive: np.ndarray | None = None) -> None:
        self.model = model
        self.dp = model.treedp
        self.resources = list(model.capacity)
        self.loss = model.loss_pad if alive is None else np.where(alive, model.loss_pad, np.inf)
        self.raw = model.cost_pad
        self.capacity = np.array(list(model.capacity.values()))
        norm = np.maximum(np.abs(self.capacity), 1e-300)
        self.cost, self.cap = self.raw / norm[:, None, None], self.capacity / norm
        self.bound, self.best_mu = -np.inf, np.zeros(len(self.resources))
        self.at_best: np.ndarray | None = None  # the priced optimum at best_mu
        self.best: np.ndarray | None = None  # the best feasible choice seen
        self.best_value, self.calls = np.inf, 0
        self.pool: dict[bytes, tuple[float, np.ndarray]] = {}  # priced optima with top bounds

    @functools.cached_property
    def scale(self) -> np.ndarray:
        """Per resource, total loss spread over total cost span: a price's order of magnitude
        (only centres the search of a price still at zero)."""
        finite = np.where(np.isfinite(self.loss), self.loss, np.nan)
        spread = max(float(np.sum(np.nanmax(finite, 1) - np.nanmin(finite, 1))), 1e-12)
        width = np.isfinite(self.loss)[None]
        span = np.sum(
            np.max(np.where(width, self.cost, 0.0), 2)
            - np.min(np.where(width, self.cost, np.inf), 2),
            1,
        )
        return spread / np.maximum(span, 1e-12)

    def priced(self, mu: np.ndarray) -> np.ndarray:
        """Unary terms loss + Σ_r μ_r·cost_r for price vectors mu (M, R): shape (M, n, K)."""
        return price(self.loss, self.cost, mu)

    def evaluate(self, mu: np.ndarray) -> None:
        """Price every row of ``mu``; record the best bound and the best feasible choice."""
        values, choices = self.dp.minimise_priced(self.loss, self.cost, mu)
        self.calls += len(mu)
        bounds = values - mu @ self.cap
        top = int(np.argmax(bounds))
        if bounds[top] > self.bound:
            self.bound, self.best_mu, self.at_best = (
                float(bounds[top]),
                mu[top].copy(),
                choices[top],
            )
        if POOL:
            for i in np.argsort(-bounds)[:POOL]:
                self.pool.setdefault(choices[i].tobytes(), (float(bounds[i]), choices[i]))
            if len(self.pool) > POOL:
                ranked = sorted(self.pool.items(), key=lambda kv: -kv[1][0])[:POOL]
                self.pool = dict(ranked)
        ok = np.ones(len(mu), dtype=bool)
        if self.resources:
            n, width = self.loss.shape
            flat = self.raw.reshape(len(self.raw), -1)
            spent = flat.take(np.arange(n) * width + choices, axis=1).sum(axis=2)  # (R, M)
            ok = np.all(self.capacity >= spent.T, axis=1)
        if ok.any():
            objectives = self.model.objectives(choices[ok])
            i = int(np.argmin(objectives))
            if objectives[i] < self.best_value:
                self.best, self.best_value = choices[ok][i].copy(), float(objectives[i])


def unary_prices(dual: Dual, steps: int = 30) -> np.ndarray:
    """Per resource alone, ignoring pairs: the least μ_r whose priced choice meets budget r."""
    rows = np.arange(dual.loss.shape[0])
    out = np.zeros(len(dual.resources))
    for r in range(len(dual.resources)):
        lo, hi = 0.0, 1.0

        def fits(mu: float, r: int = r) -> bool:
            choice = np.argmin(dual.loss + mu * dual.cost[r], axis=1)
            return bool(dual.cost[r][rows, choice].sum() <= dual.cap[r])

        if fits(0.0):
            continue
        while not fits(hi) and hi < 1e300:
            lo, hi = hi, hi * 16
        for _ in range(steps):
            mid = 0.5 * (lo + hi)
            lo, hi = (lo, mid) if fits(mid) else (mid, hi)
        out[r] = hi
    return out


def pattern_search(dual: Dual, passes: int, points: int, width: float) -> None:
    """Coordinate zoom on D(μ) around ``dual.best_mu``: each pass prices ``points`` values of one
    μ_r (and 0), then narrows that coordinate's range when the best lies inside it."""
    n_res = len(dual.resources)
    if n_res == 0:
        dual.evaluate(np.zeros((1, 0)))
        return
    widths = np.full(n_res, width)
    for k in range(passes):
        r = k % n_res
        centre = dual.best_mu[r] if dual.best_mu[r] > 0 else dual.scale[r]
        values = np.concatenate(
            [[0.0], np.geomspace(centre / widths[r], centre * widths[r], points)]
        )
        grid = np.tile(dual.best_mu, (len(values), 1))
        grid[:, r] = values
        dual.evaluate(grid)
        pick = int(np.argmin(np.abs(values - dual.best_mu[r])))
        if 1 < pick < len(values) - 1:
            widths[r] = max(widths[r] ** (2.0 / (points - 1)), 1.0 + 1e-4)


def polish(
    model: Compiled,
    starts: list[np.ndarray | None],
    deadline: float,
    loss: np.ndarray | None = None,
) -> np.ndarray | None:
    """Repair each start and improve it by swaps; the best feasible result, or None. ``loss``
    (the model's padded losses by default) is +inf at fixed-away choices: starts that use one are
    skipped, and no move takes one."""
    loss = model.loss_pad if loss is None else np.ascontiguousarray(loss, dtype=float)
    rows = np.arange(loss.shape[0])
    given = [np.asarray(s, dtype=np.int64) for s in starts if s is not None]
    if (native := lib()) is not None:
        if not given:
            return None
        best_at = np.zeros(len(rows), dtype=np.int64)
        table = np.ascontiguousarray(given)
        args, held = static_args(model, loss)  # held: the arrays behind args, during the call
        found = native.bb_polish(
            *args, len(table), ptr(table), deadline, TRIES, ptr(model.loss_pad), ptr(best_at)
        )
        del held
        return best_at if found > 0 else None
    best, value = None, np.inf
    seen: set[bytes] = set()  # starts tried
    done: set[bytes] = set()  # repaired starts improved (repairs often converge)
    for start in given:
        if (key := start.tobytes()) in seen:
            continue
        seen.add(key)
        if not np.all(np.isfinite(loss[rows, start])):
            continue
        search = LocalSearch(model, start, loss)
        search.repair()
        if not search.feasible() or (key := search.choice.tobytes()) in done:
            continue
        done.add(key)
        search.improve(deadline)
        if search.feasible() and (v := objective_in_order(model, search.choice)) < value:
            best, value = search.choice.copy(), v
    return best


def _unpriced(dual: Dual) -> list[np.ndarray]:
    """Priced optima with one resource's price dropped: starts that use a slack resource fully."""
    if len(dual.resources) < 2:
        return []
    grid = np.tile(dual.best_mu, (len(dual.resources), 1))
    np.fill_diagonal(grid, 0.0)
    _, choices = dual.dp.minimise_priced(dual.loss, dual.cost, grid)
    return list(choices)


@dataclass
class LagrangianRun:
    """A plan (or None), its objective, a valid lower bound, what fixing left (or None before
    any plan was found) and the final dual (its prices, and its losses masked by the fixing)."""

    choice: np.ndarray | None
    upper: float
    bound: float
    fixed: Fixed | None
    dual: Dual


def run_lagrangian(
    model: Compiled,
    deadline: float,
    hint: np.ndarray | None = None,
    stages: int = 1,
    prices: np.ndarray | None = None,
    pairs: bool = False,
) -> LagrangianRun:
    """Pattern search on the dual, swaps for a plan, fixing; repeated on what fixing leaves.

    ``prices`` (capacity-normalised μ, e.g. a neighbouring sweep point's) warm-start the search.
    The fixing masks choices (their loss becomes +inf) instead of building a smaller model; with
    ``pairs`` it also marks the pair entries that cannot be in a better plan (for the exact
    backends' presolve; the fast path itself never looks at them).
    """
    dual = Dual(model)
    warm = prices is not None and len(prices) == len(dual.resources)
    if warm:
        dual.best_mu = np.asarray(prices, dtype=float).copy()
    if not warm or not np.all(dual.best_mu > 0):  # the scale only centres a zero price
        dual.scale = np.where(unary := unary_prices(dual), unary, dual.scale)
    pattern_search(dual, COARSE_PASSES * len(dual.resources), COARSE_POINTS, 4.0)
    choice = polish(model, [dual.best, dual.at_best, hint], deadline)
    if choice is None:
        return LagrangianRun(None, np.inf, dual.bound, None, dual)
    upper, bound = model.objective(choice), dual.bound
    fixed = Fixed.everything(model)
    for _ in range(stages):
        shift = float(dual.best_mu @ dual.cap)
        fixed = fix(model, dual.dp, dual.priced(dual.best_mu[None])[0], shift, upper, fixed, pairs)
        mu = dual.best_mu
        dual = Dual(model, fixed.alive)
        dual.best_mu = mu.copy()
        pattern_search(dual, FINE_PASSES * len(dual.resources), FINE_POINTS, 2.0)
        bound = max(bound, min(upper, dual.bound))
        pool = [c for _, c in dual.pool.values()]
        starts = [dual.best, dual.at_best, choice, *_unpriced(dual), *pool]
        better = polish(model, starts, deadline, dual.loss)
        if better is not None and (value := model.objective(better)) < upper:
            choice, upper = better, value
    return LagrangianRun(choice, upper, min(bound, upper), fixed, dual)


def solve_lagrangian(
    problem: Compiled,
    *,
    time_limit: float | None = None,
    hint: np.ndarray | None = None,
    prices: list[float] | None = None,
) -> Result:
    """The fast path: a plan, its dual bound, and in ``extra`` the final prices (to warm-start
    the next point of a sweep) and how many price vectors were tried."""
    deadline = time.perf_counter() + (time_limit if time_limit is not None else 1e9)
    run = run_lagrangian(
        problem, deadline, hint, prices=None if prices is None else np.array(prices)
    )
    extra = {"dual_evaluations": run.dual.calls, "prices": [float(m) for m in run.dual.best_mu]}
    if run.choice is None:
        message = "lagrangian: no feasible plan found"
        return Result("unknown", bound=run.bound, message=message, extra=extra)
    status = "optimal" if run.upper - run.bound <= 1e-9 * max(1.0, abs(run.upper)) else "feasible"
    return Result(status, run.choice, run.bound, extra=extra)

"""OR-Tools CP-SAT backend: one-hot choices, pair terms linearised by product booleans.

For each unit pair (a, b) a boolean z_ij per entry stands for x_ai·x_bj, tied to the choices by
the marginal equalities Σ_j z_ij = x_ai and Σ_i z_ij = x_bj (the local-polytope linearisation,
whose LP relaxation is exact on chains without budgets). Losses and costs become integers through
``solvers.backends.scaling``; the proven bound comes back in loss units minus the scaling error.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from ortools.sat.python import cp_model

from solvers.backends.compiled import Compiled, Result
from solvers.backends.presolve import combine, reduce
from solvers.backends.scaling import ScaledCost, ScaledLoss, scale_costs, scale_losses

__all__ = ["solve_cpsat", "CpsatModel"]

# CP-SAT's 8-worker portfolio (its LP-based workers prove these models fastest) needs the cores;
# on small machines one worker with full LP linearisation is faster than a starved portfolio.
WORKERS = 8 if (os.cpu_count() or 1) >= 8 else 1

_STATUS = {
    cp_model.OPTIMAL: "optimal",
    cp_model.FEASIBLE: "feasible",
    cp_model.INFEASIBLE: "infeasible",
    cp_model.UNKNOWN: "unknown",
}


@dataclass
class CpsatModel:
    """The CP-SAT model of a compiled problem, with its variables and scalings."""

    model: cp_model.CpModel
    x: list[list[cp_model.IntVar]]
    z: dict[tuple[int, int], np.ndarray]
    loss: ScaledLoss
    offset: float
    costs: dict[str, ScaledCost]


def _split_offsets(problem: Compiled) -> tuple[list[np.ndarray], float]:
    """Shift every loss array to min 0 (better conditioned integers); return arrays and offset."""
    arrays = [loss - loss.min() for loss in problem.loss]
    offset = sum(float(loss.min()) for loss in problem.loss)
    for matrix in problem.edges.values():
        arrays.append(matrix - matrix.min())
        offset += float(matrix.min())
    return arrays, offset


def build_model(problem: Compiled) -> CpsatModel:
    """Build the CP-SAT model: one-hot units, marginal-linked pair booleans, budget rows."""
    arrays, offset = _split_offsets(problem)
    loss = scale_losses(arrays, terms=len(problem.units) + len(problem.edges))
    model = cp_model.CpModel()
    x = [[model.new_bool_var(f"x{u}_{k}") for k in range(n)] for u, n in enumerate(problem.sizes)]
    for row in x:
        model.add_exactly_one(row)
    terms: list[Any] = []
    coeffs: list[int] = []
    for u, row in enumerate(x):
        terms += row
        coeffs += loss.ints[u].tolist()
    z = _pair_vars(model, problem, x, loss, terms, coeffs)
    model.minimize(cp_model.LinearExpr.weighted_sum(terms, coeffs))
    costs = _budget_rows(model, problem, x)
    return CpsatModel(model, x, z, loss, offset, costs)


def _pair_vars(
    model: cp_model.CpModel,
    problem: Compiled,
    x: list[list[cp_model.IntVar]],
    loss: ScaledLoss,
    terms: list[Any],
    coeffs: list[int],
) -> dict[tuple[int, int], np.ndarray]:
    """Add z_ij with marginal links for every non-constant pair matrix; extend the objective."""
    z: dict[tuple[int, int], np.ndarray] = {}
    for e, (a, b) in enumerate(problem.edges):
        ints = loss.ints[len(problem.units) + e]
        allowed = ~problem.forbid.get((a, b), np.zeros(ints.shape, dtype=bool))
        if not ints.any() and allowed.all():
            continue
        grid: np.ndarray = np.full(ints.shape, None, dtype=object)
        for i, j in zip(*np.nonzero(allowed), strict=True):
            grid[i, j] = model.new_bool_var(f"z{a}_{b}_{i}_{j}")
        rows, cols_n = grid.shape
        for i in range(rows):
            model.add(sum(v for v in grid[i, :] if v is not None) == x[a][i])
        for j in range(cols_n):
            model.add(sum(v for v in grid[:, j] if v is not None) == x[b][j])
        mask = allowed & (ints != 0)
        terms += grid[mask].tolist()
        coeffs += ints[mask].tolist()
        z[(a, b)] = grid
    return z


def _budget_rows(
    model: cp_model.CpModel, problem: Compiled, x: list[list[cp_model.IntVar]]
) -> dict[str, ScaledCost]:
    """One integer knapsack row per constrained resource (per-unit minima moved to the capacity)."""
    out = {}
    for r, capacity in problem.capacity.items():
        shifted = [c - c.min() for c in problem.cost[r]]
        rest = capacity - sum(float(c.min()) for c in problem.cost[r])
        scaled = scale_costs(shifted, rest)
        flat = [v for row in x for v in row]
        weights = np.concatenate(scaled.ints).tolist()
        model.add(cp_model.LinearExpr.weighted_sum(flat, weights) <= scaled.capacity)
        out[r] = scaled
    return out


def _add_hint(built: CpsatModel, hint: np.ndarray) -> None:
    for u, row in enumerate(built.x):
        for k, var in enumerate(row):
            built.model.add_hint(var, k == hint[u])
    for (a, b), grid in built.z.items():
        for (i, j), var in np.ndenumerate(grid):
            if var is not None:
                built.model.add_hint(var, i == hint[a] and j == hint[b])


def solve_cpsat(
    problem: Compiled,
    *,
    time_limit: float | None = None,
    hint: np.ndarray | None = None,
    workers: int | None = None,
    presolve: bool = True,
    prices: list[float] | None = None,
) -> Result:
    """Solve exactly with CP-SAT (``time_limit`` seconds in all); status from the solver.

    With ``presolve`` the Lagrangian fast path first gives an incumbent (used as the hint) and
    drops choices and pair entries that cannot beat it (``solvers.backends.presolve``); a feasible
    ``hint`` and ``prices`` (a neighbouring sweep point's) warm-start that fast path.
    """
    start = time.perf_counter()
    pre = None
    if presolve:
        feasible_hint = hint if hint is not None and problem.feasible(hint) else None
        pre = reduce(
            problem,
            min(1.0, 0.3 * time_limit) if time_limit else 1.0,
            hint=feasible_hint,
            prices=None if prices is None else np.asarray(prices, dtype=float),
        )
    model = pre.reduction.model if pre else problem
    start_hint = pre.incumbent if pre else None
    if hint is not None and problem.feasible(hint):
        mapped = pre.reduction.shrink(hint) if pre else hint
        if mapped is not None and (pre is None or problem.objective(hint) < pre.reduction.upper):
            start_hint = mapped
    built = build_model(model)
    if start_hint is not None:
        _add_hint(built, start_hint)
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = workers or WORKERS
    solver.parameters.linearization_level = 2
    if time_limit is not None:
        solver.parameters.max_time_in_seconds = max(
            0.01, float(time_limit) - (time.perf_counter() - start)
        )
    code = solver.solve(built.model)
    return combine(problem, pre, _result(solver, code, built))


def _result(solver: cp_model.CpSolver, code: Any, built: CpsatModel) -> Result:
    """Read status, choice and bound back from the solver."""
    if code == cp_model.MODEL_INVALID:
        raise RuntimeError(f"cpsat: model invalid: {built.model.validate()}")
    errors = {"loss": built.loss.error, **{r: c.error for r, c in built.costs.items()}}
    status = _STATUS[code]
    if status == "infeasible" and any(c.error for c in built.costs.values()):
        rounded = ", ".join(
            f"{r} by at most {c.error:.3g}" for r, c in built.costs.items() if c.error
        )
        return Result(status, scaling_error=errors, message=f"with costs rounded up ({rounded})")
    if status not in ("optimal", "feasible"):
        return Result(status, scaling_error=errors)
    choice = np.array([int(np.argmax([solver.boolean_value(v) for v in row])) for row in built.x])
    bound = built.loss.to_float(solver.best_objective_bound) + built.offset - built.loss.error
    return Result(status, choice, bound, errors)

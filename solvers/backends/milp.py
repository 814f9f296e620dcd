"""cvxpy + HiGHS backend: the same model as CP-SAT, as a MILP in float.

Binary x per unit choice; continuous z per pair entry linked by the marginal equalities (given
binary x, the marginals force z to the product, so z need not be integer). Budget rows are divided
by their capacity for conditioning; HiGHS's dual bound is the plan's bound.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from solvers.backends.compiled import Compiled, Result
from solvers.backends.presolve import combine, reduce

__all__ = ["solve_milp", "MIP_REL_GAP"]

MIP_REL_GAP = 1e-9
_TOL = 1e-9


@dataclass
class _Rows:
    """Sparse equality rows A·[x; z] = rhs under construction."""

    rows: list[int]
    cols: list[int]
    vals: list[float]
    rhs: list[float]

    def add(self, cols: list[int], vals: list[float], rhs: float) -> None:
        r = len(self.rhs)
        self.rows += [r] * len(cols)
        self.cols += cols
        self.vals += vals
        self.rhs.append(rhs)


def _equalities(
    problem: Compiled, starts: np.ndarray, nx: int
) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray, float]:
    """One-hot rows, marginal rows and the z part of the objective (with its constant)."""
    eq = _Rows([], [], [], [])
    for u, n in enumerate(problem.sizes):
        eq.add(list(range(starts[u], starts[u] + n)), [1.0] * n, 1.0)
    z_cost: list[np.ndarray] = []
    offset, nz = 0.0, 0
    for (a, b), matrix in problem.edges.items():
        offset += float(matrix.min())
        shifted = matrix - matrix.min()
        allowed = ~problem.forbid.get((a, b), np.zeros(matrix.shape, dtype=bool))
        if not shifted.any() and allowed.all():
            continue
        grid: np.ndarray = np.full(matrix.shape, -1, dtype=np.int64)
        grid[allowed] = nx + nz + np.arange(int(allowed.sum()))
        rows, cols_n = grid.shape
        for i in range(rows):
            cols = grid[i, allowed[i]].tolist()
            eq.add([*cols, int(starts[a] + i)], [1.0] * len(cols) + [-1.0], 0.0)
        for j in range(cols_n):
            cols = grid[allowed[:, j], j].tolist()
            eq.add([*cols, int(starts[b] + j)], [1.0] * len(cols) + [-1.0], 0.0)
        z_cost.append(shifted[allowed])
        nz += int(allowed.sum())
    shape = (len(eq.rhs), nx + nz)
    matrix_eq = sp.csr_matrix((eq.vals, (eq.rows, eq.cols)), shape=shape)
    zc = np.concatenate(z_cost) if z_cost else np.zeros(0)
    return matrix_eq, np.array(eq.rhs), zc, offset


def _budget(problem: Compiled, nvar: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Budget rows, each divided by max(capacity, 1) for conditioning."""
    rows, rhs = [], []
    for r, capacity in problem.capacity.items():
        scale = max(abs(capacity), 1.0)
        row = np.zeros(nvar)
        row[: sum(problem.sizes)] = np.concatenate(problem.cost[r]) / scale
        rows.append(row)
        rhs.append(capacity / scale)
    return sp.csr_matrix(np.array(rows).reshape(len(rows), nvar)), np.array(rhs)


@functools.cache
def _mute_banner() -> None:
    """HiGHS prints a banner to fd 1 when its first instance is made; make that one muted."""
    import highspy

    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def solve_milp(
    problem: Compiled,
    *,
    time_limit: float | None = None,
    hint: np.ndarray | None = None,
    presolve: bool = True,
) -> Result:
    """Solve exactly with HiGHS through cvxpy (after the Lagrangian presolve unless disabled)."""
    del hint
    _mute_banner()
    start = time.perf_counter()
    pre = reduce(problem, min(1.0, 0.3 * time_limit) if time_limit else 1.0) if presolve else None
    if time_limit is not None:
        time_limit = max(0.01, time_limit - (time.perf_counter() - start))
    result = _solve(pre.reduction.model if pre else problem, time_limit)
    return combine(problem, pre, result)


def _solve(problem: Compiled, time_limit: float | None) -> Result:
    """Build and solve the MILP of one (possibly reduced) model."""
    starts = np.concatenate([[0], np.cumsum(problem.sizes)]).astype(np.int64)
    nx = int(starts[-1])
    a_eq, b_eq, z_cost, offset = _equalities(problem, starts, nx)
    c = np.concatenate([*problem.loss, z_cost])
    x = cp.Variable(nx, boolean=True)
    z = cp.Variable(len(z_cost))
    v = cp.hstack([x, z]) if len(z_cost) else x
    constraints = [a_eq @ v == b_eq, z >= 0] if len(z_cost) else [a_eq @ v == b_eq]
    if problem.capacity:
        a_le, b_le = _budget(problem, nx + len(z_cost))
        constraints.append(a_le @ v <= b_le)
    prob = cp.Problem(cp.Minimize(c @ v), constraints)
    opts = {
        "mip_rel_gap": MIP_REL_GAP,
        "mip_abs_gap": 1e-12,
        "mip_feasibility_tolerance": _TOL,
        "primal_feasibility_tolerance": _TOL,
    }
    if time_limit is not None:
        opts["time_limit"] = float(time_limit)
    prob.solve(solver=cp.HIGHS, **opts)
    return _result(problem, prob, x, starts, offset)


def _result(
    problem: Compiled, prob: cp.Problem, x: cp.Variable, starts: np.ndarray, offset: float
) -> Result:
    """Map cvxpy/HiGHS status, solution and dual bound to a ``Result``."""
    info: Any = prob.solver_stats.extra_stats if prob.solver_stats else None
    if prob.status == cp.INFEASIBLE:
        return Result("infeasible")
    has_point = x.value is not None and (info is None or int(info.primal_solution_status) == 2)
    if prob.status not in (cp.OPTIMAL, cp.USER_LIMIT, cp.OPTIMAL_INACCURATE) or not has_point:
        return Result("unknown", message=f"milp: HiGHS status {prob.status}")
    values = np.asarray(x.value)
    choice = np.array(
        [int(np.argmax(values[s:e])) for s, e in zip(starts[:-1], starts[1:], strict=True)]
    )
    bound = float(info.mip_dual_bound) + offset if info is not None else None
    status = "optimal" if prob.status == cp.OPTIMAL else "feasible"
    return Result(status, choice, bound)

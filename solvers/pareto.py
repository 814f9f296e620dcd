"""Pareto fronts: least loss against one resource over a range of budgets.

``dp`` gives the whole front in one pass where it applies (a chain, no other budget); otherwise
``cpsat`` sweeps the budgets upwards, each point hinted with the previous point's plan (still
feasible at a larger budget) — or ``lagrangian`` does, warm-started with the previous prices,
for a fast approximate front with honest bounds. Only non-dominated points are returned.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from solvers.backends import make_plan, solve_compiled
from solvers.backends.compiled import Compiled, NotApplicable, Result
from solvers.backends.dp import MAX_BINS, answer, chain_tables, check_chain
from solvers.problem import RESOURCES, Plan, Problem

__all__ = ["PARETO_FORMAT", "FrontPoint", "Front", "pareto_front", "budget_range"]

PARETO_FORMAT = "bitbudget.pareto/v1"
METHODS = ("auto", "dp", "cpsat", "milp", "lagrangian")
WARM = ("cpsat", "lagrangian")  # backends that take a neighbouring point's prices
MIN_POINT_SECONDS = 0.02  # least time a point gets under ``total_time``
TIME_SHARE = 0.85  # of a point's even share, the rest covers model building and plan checks


@dataclass(frozen=True)
class FrontPoint:
    """The plan found for one budget of the swept resource."""

    budget: float
    plan: Plan

    def to_dict(self, resource: str) -> dict[str, Any]:
        """JSON-ready point: budget, the plan's total of the resource, status, loss, bound."""
        p = self.plan
        return {
            "budget": self.budget,
            "total": p.totals.get(resource),
            "status": p.status,
            "objective": p.objective,
            "bound": p.bound,
            "gap": p.gap,
            "totals": p.totals,
            "choices": p.choices,
        }


@dataclass
class Front:
    """A front over ``resource``: non-dominated points by (total, objective), ascending."""

    resource: str
    method: str
    points: list[FrontPoint] = field(default_factory=list)
    solve_seconds: float = 0.0
    requested: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The ``bitbudget.pareto/v1`` document."""
        return {
            "format": PARETO_FORMAT,
            "resource": self.resource,
            "method": self.method,
            "requested_points": self.requested,
            "solve_seconds": round(self.solve_seconds, 6),
            "points": [p.to_dict(self.resource) for p in self.points],
        }


def budget_range(model: Compiled, resource: str) -> tuple[float, float]:
    """(least the resource can reach, its total at the (near-)least-loss plan without its budget).

    The top end comes from ``dp`` where it applies, else from the Lagrangian fast path: it only
    places the sweep's upper end, past which the loss cannot fall any more.
    """
    fixed = model.problem.fixed.get(resource, 0)
    least = fixed + sum(float(c.min()) for c in model.cost[resource])
    plan = solve_compiled(model, "dp" if _chain_alone(model, resource) else "lagrangian")
    if plan.has_solution:
        top = float(plan.totals[resource])
    else:
        top = fixed + sum(float(c.max()) for c in model.cost[resource])
    return least, max(top, least)


def _chain_alone(model: Compiled, resource: str) -> bool:
    """True when ``dp`` applies: a chain and no budget other than ``resource``."""
    try:
        check_chain(model)
    except NotApplicable:
        return False
    return set(model.problem.constrained()) <= {resource}


def pareto_front(
    problem: Problem,
    resource: str,
    points: int = 20,
    *,
    lo: float | None = None,
    hi: float | None = None,
    method: str = "auto",
    time_limit: float | None = None,
    max_bins: int = MAX_BINS,
    total_time: float | None = None,
) -> Front:
    """Least loss for ``points`` budgets of ``resource`` between lo and hi (default: its range).

    ``time_limit`` caps each point; ``total_time`` caps the whole sweep: each point gets an even
    share of what is left (at most ``time_limit``). A point cut short by either reports the
    status and bound its backend proved (``feasible`` with an honest gap), never more.
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"unknown front method {method!r}; known: {', '.join(METHODS)}")
    if resource not in RESOURCES:
        raise ValueError(f"resource {resource!r}: unknown; known: {', '.join(RESOURCES)}")
    model = Compiled(problem.with_budget(**{resource: None}))
    if resource not in model.reported:
        raise ValueError(
            f"resource {resource!r}: not carried by every option; have {', '.join(model.reported)}"
        )
    deadline = None if total_time is None else start + total_time
    least, top = budget_range(model, resource)
    lo, hi = least if lo is None else lo, top if hi is None else hi
    budgets = [float(b) for b in np.linspace(lo, hi, max(points, 1))] if hi > lo else [float(hi)]
    if method == "auto":
        method = "dp" if _chain_alone(model, resource) else "cpsat"
    model = model.rebudget(**{resource: hi})
    if method == "dp":
        found = _dp_sweep(model, resource, budgets, max_bins)
    else:
        found = _sweep(model, resource, budgets, method, time_limit, deadline)
    front = Front(resource, method, _non_dominated(found, resource), requested=len(budgets))
    front.solve_seconds = time.perf_counter() - start
    return front


def _dp_sweep(
    model: Compiled, resource: str, budgets: list[float], max_bins: int
) -> list[FrontPoint]:
    """One chain DP pass up to the largest budget, read off at every budget."""
    model = model.rebudget(**{resource: max(budgets)})
    check_chain(model)
    if not _chain_alone(model, resource):
        others = ", ".join(r for r in model.capacity if r != resource)
        raise NotApplicable(
            f"dp: a front over {resource} needs the other budgets lifted ({others})"
        )
    fixed = model.problem.fixed.get(resource, 0)
    tables = chain_tables(model, resource, max(budgets) - fixed, max_bins)
    out = []
    for b in budgets:
        t = time.perf_counter()
        at = model.rebudget(**{resource: b})
        result = answer(tables, b - fixed)
        if result.status == "infeasible":
            result = Result("infeasible")
        out.append(FrontPoint(b, make_plan(at, "dp", result, time.perf_counter() - t)))
    return out


def _sweep(
    model: Compiled,
    resource: str,
    budgets: list[float],
    method: str,
    time_limit: float | None,
    deadline: float | None = None,
) -> list[FrontPoint]:
    """Solve budget by budget, upwards; each point starts from the previous point's plan (still
    feasible at a larger budget) and, for ``cpsat`` and ``lagrangian``, its Lagrangian prices."""
    out: list[FrontPoint] = []
    hint: np.ndarray | None = None
    prices: list[float] | None = None
    for name in ("loss_pad", "cost_pad", "edge_stack", "adjacency", "neighbours", "treedp"):
        getattr(model, name)  # budget-independent: built once, shared by every point's copy
    for i, b in enumerate(budgets):
        at = model.rebudget(**{resource: b})
        opts: dict[str, Any] = {"prices": prices} if method in WARM and prices else {}
        limit = time_limit
        if deadline is not None:
            left = max(deadline - time.perf_counter(), 0.0)
            share = TIME_SHARE * left / (len(budgets) - i)
            limit = max(MIN_POINT_SECONDS, share if limit is None else min(limit, share))
        plan = solve_compiled(at, method, time_limit=limit, hint=hint, **opts)
        if plan.has_solution:
            hint = at.decode(plan.choices)
            prices = plan.extra.get("prices", prices)
        out.append(FrontPoint(b, plan))
    return out


def _non_dominated(found: list[FrontPoint], resource: str) -> list[FrontPoint]:
    """Points with a plan, sorted by total; keep each only if it strictly lowers the loss."""
    solved = [p for p in found if p.plan.has_solution]
    solved.sort(key=lambda p: (p.plan.totals[resource], p.plan.objective))
    out: list[FrontPoint] = []
    for point in solved:
        if not out or point.plan.objective < out[-1].plan.objective:  # type: ignore[operator]
            out.append(point)
    return out

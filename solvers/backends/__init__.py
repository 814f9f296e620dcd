"""Backends by name, and ``solve``: the one entry point from a ``Problem`` to a ``Plan``."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from solvers.backends.compiled import Compiled, NotApplicable, Result
from solvers.problem import Plan, Problem

__all__ = [
    "BACKENDS",
    "EXACT",
    "NotApplicable",
    "get_backend",
    "solve",
    "solve_compiled",
    "make_plan",
]

Backend = Callable[..., Result]


def _cpsat(*args: Any, **kw: Any) -> Result:
    from solvers.backends.cpsat import solve_cpsat

    return solve_cpsat(*args, **kw)


def _milp(*args: Any, **kw: Any) -> Result:
    from solvers.backends.milp import solve_milp

    return solve_milp(*args, **kw)


def _dp(*args: Any, **kw: Any) -> Result:
    from solvers.backends.dp import solve_dp

    return solve_dp(*args, **kw)


def _lagrangian(*args: Any, **kw: Any) -> Result:
    from solvers.backends.lagrangian import solve_lagrangian

    return solve_lagrangian(*args, **kw)


def _greedy(*args: Any, **kw: Any) -> Result:
    from solvers.backends.greedy import solve_greedy

    return solve_greedy(*args, **kw)


BACKENDS: Mapping[str, Backend] = {
    "cpsat": _cpsat,
    "milp": _milp,
    "dp": _dp,
    "lagrangian": _lagrangian,
    "greedy": _greedy,
}
EXACT = ("cpsat", "milp", "dp")


def get_backend(name: str) -> Backend:
    """The backend called ``name``; an unknown name lists the known ones."""
    if name not in BACKENDS:
        raise ValueError(f"unknown solver {name!r}; known: {', '.join(BACKENDS)}")
    return BACKENDS[name]


def solve(
    problem: Problem,
    solver: str = "cpsat",
    *,
    time_limit: float | None = None,
    hint: Mapping[str, str] | None = None,
    **options: Any,
) -> Plan:
    """Solve ``problem`` with the named backend; ``hint`` is a previous plan's choices."""
    start = time.perf_counter()
    model = Compiled(problem)
    start_choice = model.decode(dict(hint)) if hint else None
    return solve_compiled(
        model, solver, time_limit=time_limit, hint=start_choice, start=start, **options
    )


def solve_compiled(
    model: Compiled,
    solver: str,
    *,
    time_limit: float | None = None,
    hint: np.ndarray | None = None,
    start: float | None = None,
    **options: Any,
) -> Plan:
    """Solve an already compiled problem (lets sweeps reuse the compilation)."""
    backend = get_backend(solver)
    start = time.perf_counter() if start is None else start
    least = model.least()
    if any(least[r] > model.problem.budget[r] for r in least):  # type: ignore[operator]
        result = Result("infeasible", message="a budget is below the least its resource can reach")
    else:
        result = backend(model, time_limit=time_limit, hint=hint, **options)
    return make_plan(model, solver, result, time.perf_counter() - start)


def _infeasible_message(model: Compiled) -> str:
    parts = [
        f"{r}: least {v['least']} vs budget {v['budget']}" for r, v in model.explanation().items()
    ]
    over = [
        p
        for p, (r, v) in zip(parts, model.explanation().items(), strict=True)
        if v["least"] > v["budget"]
    ]
    if over:
        return "infeasible: " + "; ".join(over)
    return (
        "infeasible: each budget is reachable alone but not all together (" + "; ".join(parts) + ")"
    )


def make_plan(model: Compiled, solver: str, result: Result, seconds: float) -> Plan:
    """Turn a backend result into a ``Plan``, checking the choices against the float budgets."""
    common: dict[str, Any] = {"solver": solver, "solve_seconds": round(seconds, 6)}
    common |= {"scaling_error": result.scaling_error, "extra": result.extra}
    if result.status == "infeasible":
        message = _infeasible_message(model) + (f"; {result.message}" if result.message else "")
        return Plan(
            "infeasible",
            {},
            None,
            None,
            {},
            explanation=model.explanation(),
            message=message,
            **common,
        )
    if result.choice is None or result.status == "unknown":
        message = (
            result.message or "no feasible plan found within the limit, and no proof there is none"
        )
        return Plan(
            "unknown",
            {},
            None,
            result.bound,
            {},
            explanation=model.explanation(),
            message=message,
            **common,
        )
    totals = model.totals(result.choice)
    if not model.feasible(result.choice, totals):
        raise RuntimeError(f"{solver}: returned a plan over budget ({totals})")
    objective = model.objective(result.choice)
    bound = None if result.bound is None else min(result.bound, objective)
    gap = None if bound is None else (objective - bound) / max(abs(objective), 1e-12)
    return Plan(
        result.status,
        model.names(result.choice),
        objective,
        bound,
        totals,
        gap=gap,
        message=result.message,
        **common,
    )

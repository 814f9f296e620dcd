"""The one solve a plan request needs, as a plain function of picklable arguments, so that it can
run in a worker process of the API server's solver pool (``searchsvc.plans.memo``)."""

from __future__ import annotations

from typing import Any

__all__ = ["solve_budget", "fast_front"]


def solve_budget(
    profile: Any,
    inventory: dict[str, Any],
    limits: dict[str, float | None],
    hardware: str | dict[str, Any] | None,
    solver: str,
    time_limit: float,
) -> Any:
    """The solver's plan (``solvers.Plan``) for a parsed profile under ``limits``."""
    from profiling.sensitivity import problem_from_profile
    from solvers import solve

    problem = problem_from_profile(profile, inventory, limits, hardware)
    return solve(problem, solver, time_limit=time_limit)


def fast_front(
    profile: Any,
    inventory: dict[str, Any],
    resource: str,
    hardware: str | dict[str, Any] | None,
    points: int,
) -> dict[str, Any]:
    """The ``bitbudget.pareto/v1`` document of the Lagrangian fast path over ``resource``: every
    point with the bound its prices prove (an honest gap), in milliseconds per point."""
    from profiling.sensitivity import problem_from_profile
    from solvers.pareto import pareto_front

    problem = problem_from_profile(profile, inventory, {}, hardware)
    return pareto_front(problem, resource, points, method="lagrangian").to_dict()

"""The one solve a plan request needs, as a plain function of picklable arguments, so that it can
run in a worker process of the API server's solver pool (``searchsvc.plans.memo``)."""

from __future__ import annotations

from typing import Any

__all__ = ["solve_budget"]


def solve_budget(
    profile: Any,
    inventory: dict[str, Any],
    limits: dict[str, float | None],
    hardware: str | None,
    solver: str,
    time_limit: float,
) -> Any:
    """The solver's plan (``solvers.Plan``) for a parsed profile under ``limits``."""
    from profiling.sensitivity import problem_from_profile
    from solvers import solve

    problem = problem_from_profile(profile, inventory, limits, hardware)
    return solve(problem, solver, time_limit=time_limit)

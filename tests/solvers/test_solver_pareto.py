"""Pareto fronts: every point is the optimum at its budget, and no point dominates another."""

from __future__ import annotations

import pytest
from solver_helpers import brute_force, random_problem

from solvers.backends import NotApplicable
from solvers.pareto import pareto_front


def _assert_non_dominated(front, resource: str) -> None:
    totals = [p.plan.totals[resource] for p in front.points]
    losses = [p.plan.objective for p in front.points]
    assert totals == sorted(totals) and len(set(totals)) == len(totals)
    assert all(a > b for a, b in zip(losses, losses[1:], strict=False))


def test_dp_front_is_exact_at_every_point() -> None:
    problem = random_problem(8, 3, 4, chain_only=True, budgets=())
    front = pareto_front(problem, "memory_bytes", 12)
    assert front.method == "dp" and front.requested == 12 and len(front.points) >= 3
    _assert_non_dominated(front, "memory_bytes")
    for point in front.points:
        best, _ = brute_force(problem.with_budget(memory_bytes=point.budget))
        assert point.plan.status == "optimal"
        assert point.plan.objective == pytest.approx(best, rel=1e-9)
        assert point.plan.totals["memory_bytes"] <= point.budget


def test_cpsat_sweep_keeps_other_budgets_and_is_exact() -> None:
    problem = random_problem(7, 3, 6)
    front = pareto_front(problem, "memory_bytes", 6)
    assert front.method == "cpsat"
    _assert_non_dominated(front, "memory_bytes")
    for point in front.points:
        at = problem.with_budget(memory_bytes=point.budget)
        assert point.plan.objective == pytest.approx(brute_force(at)[0], rel=1e-6)
        assert point.plan.totals["latency_ms"] <= problem.budget["latency_ms"]


def test_lagrangian_front_bounds_are_valid() -> None:
    problem = random_problem(8, 3, 8)
    front = pareto_front(problem, "latency_ms", 8, method="lagrangian")
    for point in front.points:
        best, _ = brute_force(problem.with_budget(latency_ms=point.budget))
        assert point.plan.bound <= best + 1e-9 <= point.plan.objective + 2e-9


def test_front_document_and_errors() -> None:
    problem = random_problem(6, 3, 1, chain_only=True, budgets=())
    doc = pareto_front(problem, "bops", 4, lo=1e6 * 6, hi=1e6 * 30).to_dict()
    assert doc["format"] == "bitbudget.pareto/v1" and doc["resource"] == "bops"
    assert doc["requested_points"] == 4 and doc["points"]
    assert all(6e6 <= p["budget"] <= 3e7 and p["total"] <= p["budget"] for p in doc["points"])
    with pytest.raises(ValueError, match="resource 'weight_bits': not carried by every option"):
        pareto_front(problem, "weight_bits", 4)
    with pytest.raises(ValueError, match="unknown front method 'exact'"):
        pareto_front(problem, "bops", 4, method="exact")
    with pytest.raises(NotApplicable, match="needs the other budgets lifted"):
        pareto_front(random_problem(6, 3, 1, chain_only=True), "bops", 4, method="dp")


def test_cpsat_sweep_warm_starts_with_prices() -> None:
    problem = random_problem(10, 4, 11)
    front = pareto_front(problem, "memory_bytes", 6, method="cpsat")
    warm = [p for p in front.points if "prices" in p.plan.extra]
    assert warm and all(len(p.plan.extra["prices"]) == 2 for p in warm)
    for point in front.points:
        best, _ = brute_force(problem.with_budget(memory_bytes=point.budget))
        assert point.plan.status == "optimal"
        assert point.plan.objective == pytest.approx(best, rel=1e-6)


def test_time_boxed_front_reports_honest_statuses() -> None:
    problem = random_problem(8, 3, 12)
    front = pareto_front(problem, "memory_bytes", 6, method="cpsat", total_time=0.0)
    assert front.points
    for point in front.points:
        best, _ = brute_force(problem.with_budget(memory_bytes=point.budget))
        plan = point.plan
        assert plan.status in ("optimal", "feasible")
        assert plan.bound <= best + 1e-9 <= plan.objective + 2e-9
        if plan.status == "optimal":
            assert plan.objective == pytest.approx(best, rel=1e-6)
        else:
            assert plan.gap is not None and plan.gap >= 0

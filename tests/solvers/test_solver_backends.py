"""Every backend against brute force on small random problems; cpsat against milp on big ones."""

from __future__ import annotations

import numpy as np
import pytest
from solver_helpers import brute_force, random_doc, random_problem

from solvers import BACKENDS, NotApplicable, Problem, get_backend, solve

SEEDS = range(10)


def _close(a: float, b: float, tol: float = 1e-6) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("solver", ["cpsat", "milp"])
def test_exact_backends_match_brute_force(seed: int, solver: str) -> None:
    problem = random_problem(8 if seed % 2 else 6, 3, seed)
    best, _ = brute_force(problem)
    plan = solve(problem, solver)
    assert plan.status == "optimal"
    assert _close(plan.objective, best), (plan.objective, best)
    assert plan.bound <= best + 1e-9
    for r, budget in problem.constrained().items():
        assert plan.totals[r] <= budget


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("resource", ["memory_bytes", "latency_ms"])
def test_dp_matches_brute_force_on_chains(seed: int, resource: str) -> None:
    problem = random_problem(8, 3, seed, chain_only=True, budgets=(resource,))
    best, _ = brute_force(problem)
    plan = solve(problem, "dp")
    assert plan.has_solution
    assert plan.bound <= best + 1e-9 <= plan.objective + 2e-9
    if plan.status == "optimal":
        assert _close(plan.objective, best)
    if resource == "memory_bytes":  # integer costs: the grid is exact
        assert plan.status == "optimal"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("solver", ["lagrangian", "greedy"])
def test_approximate_backends_stay_within_their_gap(seed: int, solver: str) -> None:
    problem = random_problem(8, 3, seed)
    best, _ = brute_force(problem)
    plan = solve(problem, solver)
    if plan.status == "unknown":
        assert plan.choices == {}
        return
    assert plan.bound <= best + 1e-9, "the reported bound must be a valid lower bound"
    assert plan.objective >= best - 1e-9
    assert plan.objective - plan.bound == pytest.approx(plan.gap * plan.objective, abs=1e-12)
    if plan.status == "optimal":
        assert _close(plan.objective, best)


def test_lagrangian_is_usually_optimal_on_small_problems() -> None:
    hits = 0
    for seed in SEEDS:
        problem = random_problem(8, 3, seed)
        hits += _close(solve(problem, "lagrangian").objective, brute_force(problem)[0])
    assert hits >= 6


def _large(seed: int) -> Problem:
    doc = random_doc(100, 4, seed, ties=True, tight=0.5)
    rng = np.random.default_rng(seed)
    for layer in doc["layers"]:
        for opt in layer["options"]:
            opt["memory_bytes"] = int(opt["memory_bytes"] * rng.integers(50, 5000))
    for r in ("memory_bytes", "latency_ms"):
        lo = sum(min(o[r] for o in x["options"]) for x in doc["layers"])
        hi = sum(max(o[r] for o in x["options"]) for x in doc["layers"])
        doc["budget"][r] = lo + 0.5 * (hi - lo)
    return Problem.from_dict(doc)


@pytest.mark.parametrize("seed", [0, 1])
def test_cpsat_and_milp_agree_on_100_layers(seed: int) -> None:
    problem = _large(seed)
    fast = solve(problem, "cpsat", time_limit=30)
    plain = solve(problem, "milp", time_limit=30, presolve=False)  # no shared presolve
    assert fast.status == plain.status == "optimal"
    assert abs(fast.objective - plain.objective) <= 1e-6 * abs(plain.objective)


def test_jointly_infeasible_budgets_are_proven_by_the_exact_backends() -> None:
    doc = random_doc(6, 3, 3, ties=False, budgets=("memory_bytes", "latency_ms"))
    cheap_mem = [min(x["options"], key=lambda o: o["memory_bytes"]) for x in doc["layers"]]
    doc["budget"]["memory_bytes"] = 7 + sum(o["memory_bytes"] for o in cheap_mem)
    doc["budget"]["latency_ms"] = sum(
        min(o["latency_ms"] for o in x["options"]) for x in doc["layers"]
    )
    for layer in doc["layers"]:  # the cheapest in memory is the slowest
        lat = sorted(o["latency_ms"] for o in layer["options"])
        for opt, value in zip(
            sorted(layer["options"], key=lambda o: o["memory_bytes"]), lat[::-1], strict=True
        ):
            opt["latency_ms"] = value
    problem = Problem.from_dict(doc)
    assert brute_force(problem)[1] is None
    for solver in ("cpsat", "milp"):
        plan = solve(problem, solver)
        assert plan.status == "infeasible"
        assert set(plan.explanation) == {"memory_bytes", "latency_ms"}
        for entry in plan.explanation.values():
            assert entry["least"] <= entry["budget"]
        assert "not all together" in plan.message


def test_budget_below_least_is_infeasible_for_every_backend() -> None:
    problem = random_problem(6, 3, 1).with_budget(memory_bytes=20)
    for solver in BACKENDS:
        plan = solve(problem, solver)
        assert plan.status == "infeasible"
        least = plan.explanation["memory_bytes"]["least"]
        assert least > 20 and plan.explanation["memory_bytes"]["budget"] == 20
        assert least == 7 + sum(
            min(o.costs["memory_bytes"] for o in x.options) for x in problem.layers
        )


def test_dp_refuses_non_chains_and_two_budgets() -> None:
    with pytest.raises(NotApplicable, match="chain"):
        solve(random_problem(6, 3, 0, chain_only=False, budgets=("memory_bytes",)), "dp")
    with pytest.raises(NotApplicable, match="one budget"):
        solve(random_problem(6, 3, 0, chain_only=True), "dp")


def test_unknown_backend_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match="known: cpsat, milp, dp, lagrangian, greedy"):
        get_backend("gurobi")


def test_ties_are_honoured() -> None:
    problem = random_problem(8, 3, 5)
    for solver in ("cpsat", "milp", "lagrangian", "greedy"):
        plan = solve(problem, solver)
        for tie in problem.ties:
            assert len({plan.choices[name] for name in tie}) == 1


def test_hint_from_a_previous_plan_is_accepted() -> None:
    problem = random_problem(8, 3, 2)
    first = solve(problem, "cpsat")
    again = solve(
        problem.with_budget(memory_bytes=problem.budget["memory_bytes"] + 50),
        "cpsat",
        hint=first.choices,
    )
    assert again.objective <= first.objective + 1e-12


def test_budget_exactly_at_the_least_and_a_single_layer() -> None:
    problem = random_problem(6, 3, 1, chain_only=True, ties=False, budgets=("memory_bytes",))
    least = 7 + sum(min(o.costs["memory_bytes"] for o in x.options) for x in problem.layers)
    tight = problem.with_budget(memory_bytes=least)
    best, _ = brute_force(tight)
    doc = random_doc(1, 1, 0, chain_only=True, ties=False, budgets=("memory_bytes",))
    single = Problem.from_dict({**doc, "pairs": []})
    for solver in BACKENDS:
        plan = solve(tight, solver)
        assert plan.has_solution and plan.totals["memory_bytes"] == least
        assert _close(plan.objective, best)
        assert solve(single, solver).status == "optimal"

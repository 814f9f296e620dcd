"""A plan's predicted memory is the packer's size, to the byte, for every solver and option:
the whole model counted (weights, biases, float leftovers, buffers, pinned layers), not only
the layers a solver chooses for. Losses are seeded stand-ins: the sizes do not depend on them."""

from __future__ import annotations

import random
from typing import Any

import pytest

from profiling.inventory import build_inventory
from profiling.quant.pack import predict_bytes
from profiling.quant.plan import plan_from_json
from profiling.sensitivity import Profile, problem_from_profile
from profiling.sensitivity.problem import fixed_memory_bytes, layer_descs
from solvers import BACKENDS, solve

CANDIDATES = ["w8a8", "w6a8", "w4a8", "w8a16", "w4a16", "w2a16", "w16a8", "w16a16"]


def _profile(inventory: dict[str, Any], skip_every: int = 0) -> Profile:
    """Seeded losses for every weight layer (every ``skip_every``-th left unmeasured: pinned)."""
    rng = random.Random(0)
    names = list(layer_descs(inventory))
    measured = [n for i, n in enumerate(names) if not skip_every or i % skip_every]
    layers = {
        name: {
            "weight": {str(w): rng.random() * (9 - w) ** 2 for w in (2, 4, 6, 8)},
            "act": {"8": rng.random() * 0.1},
        }
        for name in measured
    }
    return Profile("test", {}, "kl", list(CANDIDATES), True, "seeded", {}, layers=layers)


@pytest.fixture(scope="module", params=["sam2_micro", "sam_micro"])
def model(request: pytest.FixtureRequest) -> tuple[Any, dict[str, Any]]:
    loaded = request.getfixturevalue(request.param)
    return loaded, build_inventory(loaded).to_json()


def test_inventory_counts_buffers(model: tuple[Any, dict[str, Any]]) -> None:
    loaded, inventory = model
    state = loaded.module.state_dict()
    floats = sum(t.numel() for t in state.values() if t.is_floating_point())
    assert inventory["state_float_numel"] == floats > inventory["total_params"]  # a buffer too
    empty = plan_from_json({"choices": {}})  # everything in float
    assert fixed_memory_bytes(inventory) + sum(
        2 * (d.numel + d.bias_numel) for d in layer_descs(inventory).values()
    ) == predict_bytes(loaded.module, empty)


@pytest.mark.parametrize("solver", sorted(BACKENDS))
def test_predicted_memory_is_packed_size(model: tuple[Any, dict[str, Any]], solver: str) -> None:
    loaded, inventory = model
    profile = _profile(inventory, skip_every=5)  # measured layers and pinned ones
    free = problem_from_profile(profile, inventory, {})
    spans = [[o.costs["memory_bytes"] for o in x.options] for x in free.layers]
    least = free.fixed["memory_bytes"] + sum(min(c) for c in spans)
    most = free.fixed["memory_bytes"] + sum(max(c) for c in spans)
    for fraction in (0.02, 0.4):  # a tight budget (as 0.926 MB on sam2-micro was) and a loose one
        budget = least + fraction * (most - least)
        problem = problem_from_profile(profile, inventory, {"memory_bytes": budget})
        plan = solve(problem, solver, time_limit=10)
        assert plan.status in ("optimal", "feasible"), plan.message
        doc = plan.to_dict()
        packed = predict_bytes(loaded.module, plan_from_json(doc))
        assert doc["totals"]["memory_bytes"] == packed, (solver, budget)
        assert packed <= budget


def test_solved_plan_with_every_option_packs_to_its_prediction(sam2_micro, tmp_path) -> None:
    """The artifact on disk, not only the packer's rule: a solved plan with every candidate in
    it (float weights with quantized inputs, 2-bit weights, pinned layers) packs to its totals."""
    from profiling.calibration import load_source, make_sets
    from profiling.quant.apply import apply_plan
    from profiling.quant.pack import save_artifact

    inventory = build_inventory(sam2_micro).to_json()
    problem = problem_from_profile(_profile(inventory, 5), inventory, {"avg_bits": 6})
    doc = solve(problem, "cpsat", time_limit=10).to_dict()
    names = sorted(x.name for x in problem.layers if x.name not in problem.extra["meta"]["pinned"])
    for name, cid in zip(names, CANDIDATES):  # one layer at each option
        doc["choices"][name] = cid
    costs = {x.name: {o.id: o.costs["memory_bytes"] for o in x.options} for x in problem.layers}
    predicted = problem.fixed["memory_bytes"] + sum(costs[n][c] for n, c in doc["choices"].items())
    calib, _ = make_sets(load_source("shipped"), holdout=1, n_calib=1, n_points=1, n_boxes=0)
    qplan = plan_from_json(doc)
    measured = save_artifact(apply_plan(sam2_micro, qplan, calib), qplan, tmp_path / "a.st")
    assert measured == predicted == predict_bytes(sam2_micro.module, qplan)

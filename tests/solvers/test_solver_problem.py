"""The problem and plan JSON formats: round trips, and validation errors that name their field."""

from __future__ import annotations

import copy
import json
import math

import pytest
from solver_helpers import random_doc

from solvers import Plan, Problem, ProblemError, solve

DESIGN_EXAMPLE = {
    "format": "bitbudget.problem/v1",
    "layers": [
        {
            "name": "blocks.0.attn.qkv",
            "options": [
                {
                    "id": "w8a8",
                    "loss": 0.0012,
                    "memory_bytes": 124416,
                    "bops": 1.2e9,
                    "latency_ms": 0.31,
                },
                {
                    "id": "w4a8",
                    "loss": 0.0150,
                    "memory_bytes": 62208,
                    "bops": 0.6e9,
                    "latency_ms": 0.22,
                },
            ],
        },
        {
            "name": "blocks.0.attn.proj",
            "options": [
                {"id": "w8a8", "loss": 0.001, "memory_bytes": 1000, "bops": 1e8, "latency_ms": 0.1},
                {"id": "w4a8", "loss": 0.004, "memory_bytes": 500, "bops": 5e7, "latency_ms": 0.05},
            ],
        },
        {
            "name": "blocks.1.attn.q",
            "options": [
                {"id": "w8a8", "loss": 0.1, "memory_bytes": 10, "bops": 1, "latency_ms": 0.1}
            ],
        },
        {
            "name": "blocks.1.attn.k",
            "options": [
                {"id": "w8a8", "loss": 0.1, "memory_bytes": 10, "bops": 1, "latency_ms": 0.1}
            ],
        },
    ],
    "pairs": [
        {"a": "blocks.0.attn.qkv", "b": "blocks.0.attn.proj", "loss": [[0.0, 0.001], [0.002, 0.0]]}
    ],
    "ties": [["blocks.1.attn.q", "blocks.1.attn.k"]],
    "fixed": {"memory_bytes": 120000, "bops": 0, "latency_ms": 0.0},
    "budget": {"memory_bytes": 190000, "bops": None, "latency_ms": None},
}


def test_design_example_round_trips_exactly() -> None:
    problem = Problem.from_json(json.dumps(DESIGN_EXAMPLE))
    assert problem.to_dict() == DESIGN_EXAMPLE
    assert Problem.from_json(problem.to_json()) == problem


def test_unknown_fields_are_kept() -> None:
    doc = copy.deepcopy(DESIGN_EXAMPLE)
    doc["meta"] = {"model": "sam2.1-hiera-tiny"}
    doc["layers"][0]["kind"] = "linear"
    doc["layers"][0]["options"][0]["w_bits"] = 8
    assert Problem.from_dict(doc).to_dict() == doc


def test_plan_round_trips_and_carries_the_design_fields(tmp_path) -> None:
    problem = Problem.from_dict(DESIGN_EXAMPLE)
    plan = solve(problem, "cpsat")
    doc = json.loads(plan.to_json())
    for key in (
        "format",
        "status",
        "choices",
        "objective",
        "bound",
        "totals",
        "solver",
        "solve_seconds",
    ):
        assert key in doc
    assert doc["format"] == "bitbudget.plan/v1"
    assert Plan.from_json(plan.to_json()) == plan
    assert plan.choices == {
        "blocks.0.attn.qkv": "w4a8",
        "blocks.0.attn.proj": "w8a8",
        "blocks.1.attn.q": "w8a8",
        "blocks.1.attn.k": "w8a8",
    }
    assert plan.totals["memory_bytes"] == 120000 + 62208 + 1000 + 20
    assert math.isclose(plan.objective, 0.0150 + 0.001 + 0.2 + 0.002)


def test_infeasible_plan_round_trips() -> None:
    problem = Problem.from_dict(DESIGN_EXAMPLE).with_budget(memory_bytes=100)
    plan = solve(problem, "milp")
    assert plan.status == "infeasible"
    assert plan.explanation == {"memory_bytes": {"least": 120000 + 62208 + 500 + 20, "budget": 100}}
    assert Plan.from_json(plan.to_json()) == plan


def _broken(edit) -> dict:
    doc = copy.deepcopy(random_doc(5, 3, 0))
    edit(doc)
    return doc


def _set(path: list, value):
    def edit(doc: dict) -> None:
        node = doc
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


CASES = [
    (
        _set(["layers", 3, "options", 1, "memory_bytes"], -4),
        r"^layers\[3\]\.options\[1\]\.memory_bytes: must be finite and >= 0",
    ),
    (
        _set(["layers", 2, "options", 0, "loss"], float("nan")),
        r"^layers\[2\]\.options\[0\]\.loss: must be finite and >= 0",
    ),
    (
        _set(["layers", 1, "options", 2, "latency_ms"], float("inf")),
        r"^layers\[1\]\.options\[2\]\.latency_ms: must be finite",
    ),
    (
        _set(["layers", 0, "options", 0, "loss"], "high"),
        r"^layers\[0\]\.options\[0\]\.loss: must be a number",
    ),
    (
        _set(["layers", 4, "options"], []),
        r"^layers\[4\]\.options: a layer needs at least one option",
    ),
    (_set(["layers", 2, "name"], "blocks.0"), r"^layers\[2\]\.name: duplicate 'blocks.0'"),
    (
        _set(["layers", 1, "options", 1, "id"], "w2a8"),
        r"^layers\[1\]\.options\[1\]\.id: duplicate option id",
    ),
    (_set(["pairs", 1, "a"], "blocks.9"), r"^pairs\[1\]\.a: unknown layer 'blocks.9'"),
    (_set(["pairs", 0, "loss"], [[0.0, 0.1], [0.0, 0.1]]), r"^pairs\[0\]\.loss: must be 3x3"),
    (
        _set(["pairs", 2, "loss", 1, 2], -1.0),
        r"^pairs\[2\]\.loss\[1\]\[2\]: must be finite and >= 0",
    ),
    (_set(["ties"], [["blocks.0", "blocks.7"]]), r"^ties\[0\]\[1\]: unknown layer 'blocks.7'"),
    (_set(["ties"], [["blocks.0"]]), r"^ties\[0\]: a tie needs at least two different layers"),
    (_set(["budget", "memory"], 10), r"^budget\.memory: unknown resource; known: memory_bytes"),
    (_set(["budget", "bops"], -1), r"^budget\.bops: must be finite and >= 0"),
    (_set(["fixed", "latency_ms"], float("nan")), r"^fixed\.latency_ms: must be finite and >= 0"),
    (_set(["format"], "bitbudget.problem/v0"), r"^format: must be 'bitbudget.problem/v1'"),
    (_set(["layers"], []), r"^layers: must list at least one layer"),
]


@pytest.mark.parametrize("edit, message", CASES)
def test_each_validation_error_names_its_field(edit, message: str) -> None:
    with pytest.raises(ProblemError, match=message):
        Problem.from_dict(_broken(edit))


def test_missing_cost_for_a_budgeted_resource_is_named() -> None:
    doc = random_doc(4, 3, 0)
    del doc["layers"][2]["options"][1]["latency_ms"]
    with pytest.raises(
        ProblemError,
        match=r"^layers\[2\]\.options\[1\]\.latency_ms: missing, but budget\.latency_ms is set",
    ):
        Problem.from_dict(doc)


def test_tied_layers_without_a_common_id() -> None:
    doc = random_doc(4, 3, 0, ties=False)
    for opt, new in zip(doc["layers"][3]["options"], ["w3a8", "w5a8", "w6a8"], strict=True):
        opt["id"] = new
    doc["ties"] = [["blocks.0", "blocks.1"], ["blocks.1", "blocks.3"]]
    with pytest.raises(
        ProblemError,
        match=r"^ties\[0\]: tied layers blocks.0, blocks.1, blocks.3 share no option id",
    ):
        Problem.from_dict(doc)


def test_bad_json_is_a_problem_error() -> None:
    with pytest.raises(ProblemError, match="^problem: not valid JSON"):
        Problem.from_json("{'format': ")


def test_direct_construction_is_validated_too() -> None:
    problem = Problem.from_dict(random_doc(3, 3, 0))
    with pytest.raises(ProblemError, match=r"^pairs\[0\]\.b: a pair needs two different layers"):
        Problem(problem.layers, [type(problem.pairs[0])("blocks.0", "blocks.0", [[0.0] * 3] * 3)])


def test_unknown_plan_status_is_refused() -> None:
    with pytest.raises(
        ProblemError, match="^status: must be one of optimal, feasible, infeasible, unknown"
    ):
        Plan("done", {}, None, None, {}, "cpsat", 0.0)

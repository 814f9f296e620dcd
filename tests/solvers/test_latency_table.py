"""Measured latency tables: format checks that name the field, the solver's latency from a table
and a plan's predicted latency recomputed from its table."""

from __future__ import annotations

import copy
import json
import math
import random
from typing import Any

import pytest

from solvers import Problem, solve
from solvers.costs import LayerDesc, MeasuredProfile, cost_table, load_hardware
from solvers.latency_table import (
    TableError,
    apply_table,
    check_table,
    predict_latency,
    timed_layers,
)

OPTIONS = ("w8a8", "w4a8", "w16a16")


def _inventory() -> dict[str, Any]:
    layers = [
        {"name": f"blocks.{i}.fc", "kind": "linear", "weight_numel": 64 * (i + 1), "ran": True}
        for i in range(6)
    ] + [{"name": "never.ran", "kind": "linear", "weight_numel": 10, "ran": False}]
    return {"model": "toy", "image_size": 64, "layers": layers}


def _table(inventory: dict[str, Any], seed: int = 0) -> dict[str, Any]:
    rng = random.Random(seed)
    cells = {
        n: {o: {"median_ms": rng.uniform(0.1, 2.0), "spread": 0.01, "repeats": 5} for o in OPTIONS}
        for n in timed_layers(inventory)
    }
    return {
        "format": "bitbudget.hardware/v1",
        "kind": "measured",
        "name": "toy-table",
        "model": "toy",
        "image_size": 64,
        "measured": {
            "runtime": "torch",
            "runtime_version": "x",
            "threads": 2,
            "host": "h",
            "date": "2026-12-05",
            "repeats": 5,
        },
        "float_ms": {"median_ms": 9.0, "spread": 0.1, "repeats": 5},
        "fixed_ms": 0.731,
        "latency_table": cells,
    }


def test_timed_layers_skip_layers_that_never_ran() -> None:
    assert timed_layers(_inventory()) == [f"blocks.{i}.fc" for i in range(6)]


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda t: t["latency_table"].pop("blocks.3.fc"), "latency_table.blocks.3.fc"),
        (lambda t: t["latency_table"]["blocks.2.fc"].pop("w4a8"), "latency_table.blocks.2.fc.w4a8"),
        (
            lambda t: t["latency_table"]["blocks.1.fc"]["w8a8"].update(median_ms=-0.5),
            "latency_table.blocks.1.fc.w8a8.median_ms",
        ),
        (
            lambda t: t["latency_table"]["blocks.1.fc"]["w8a8"].update(median_ms=math.nan),
            "latency_table.blocks.1.fc.w8a8.median_ms",
        ),
        (
            lambda t: t["latency_table"]["blocks.0.fc"]["w16a16"].update(spread=math.inf),
            "latency_table.blocks.0.fc.w16a16.spread",
        ),
        (lambda t: t.update(model="sam2-micro"), "model"),
        (lambda t: t.update(image_size=1024), "image_size"),
        (lambda t: t["measured"].pop("threads"), "measured.threads"),
        (lambda t: t.update(fixed_ms=-1.0), "fixed_ms"),
        (lambda t: t.update(format="bitbudget.hardware/v2"), "format"),
    ],
)
def test_check_table_names_the_field(edit: Any, field: str) -> None:
    inventory = _inventory()
    table = _table(inventory)
    check_table(table, inventory, OPTIONS)  # the unedited table is fine
    edit(table)
    with pytest.raises(TableError) as err:
        check_table(table, inventory, OPTIONS)
    assert str(err.value).startswith(f"{field}:"), str(err.value)


def test_shipped_rooflines_are_labelled_estimates() -> None:
    from solvers.costs import hardware_profiles

    for name in hardware_profiles():
        hw = load_hardware(name)
        assert hw.kind == "estimate", name


def test_measured_table_is_the_latency_cost(tmp_path: Any) -> None:
    inventory = _inventory()
    table = _table(inventory)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table))
    hw = load_hardware(str(path))
    assert isinstance(hw, MeasuredProfile) and hw.fixed_ms == 0.731
    descs = [LayerDesc(n, "linear", 64) for n in timed_layers(inventory)]
    costs = cost_table(descs, ["w8a8", "w4a8", "w2a8"], hardware=hw)
    for name, options in costs.items():
        assert sorted(options) == ["w4a8", "w8a8"]  # w2a8 was not timed: not offered
        assert options["w4a8"]["latency_ms"] == table["latency_table"][name]["w4a8"]["median_ms"]


def _problem(inventory: dict[str, Any]) -> dict[str, Any]:
    rng = random.Random(1)
    layers = [
        {
            "name": n,
            "options": [
                {"id": o, "loss": rng.random() * (16 - int(o[1:].split("a")[0])), "latency_ms": 1}
                for o in OPTIONS
            ],
        }
        for n in timed_layers(inventory)
    ]
    return {
        "format": "bitbudget.problem/v1",
        "layers": layers,
        "budget": {"latency_ms": None},
    }


@pytest.mark.parametrize("solver", ["cpsat", "milp", "dp", "greedy"])
def test_predicted_latency_recomputes_exactly(solver: str) -> None:
    inventory = _inventory()
    table = _table(inventory, seed=3)
    raw = apply_table(_problem(inventory), table)
    assert raw["fixed"]["latency_ms"] == table["fixed_ms"]
    fastest = table["fixed_ms"] + sum(
        min(c["median_ms"] for c in v.values()) for v in table["latency_table"].values()
    )
    budget = fastest * 1.15
    raw["budget"]["latency_ms"] = budget
    plan = solve(Problem.from_dict(raw), solver, time_limit=10)
    assert plan.status in ("optimal", "feasible"), plan.message
    assert plan.totals["latency_ms"] == predict_latency(table, plan.choices)
    assert plan.totals["latency_ms"] <= budget * (1 + 1e-9)


def test_apply_table_names_an_untimed_option() -> None:
    inventory = _inventory()
    table = _table(inventory)
    raw = _problem(inventory)
    raw["layers"][2]["options"].append({"id": "w2a8", "loss": 0.0})
    with pytest.raises(TableError, match=r"latency_table\.blocks\.2\.fc\.w2a8: missing"):
        apply_table(raw, table)
    assert copy.deepcopy(raw) == raw


def test_attention_sites_on_a_measured_table() -> None:
    """A site the table times costs its cell; one it does not time has no option (stays float,
    inside fixed_ms) — never a roofline figure taken from a table that has none."""
    from solvers.costs import site_option_costs

    site = LayerDesc("blocks.0.attn.qk_matmul", "matmul_qk", 0, macs=4096, act_numel=512)
    cells = {site.name: {"a8": {"median_ms": 0.25, "spread_ms": 0.01, "repeats": 5}}}
    hw = MeasuredProfile("t", cells)
    assert site_option_costs(site, "a8", hardware=hw)["latency_ms"] == 0.25
    assert site_option_costs(site, "a4", hardware=hw) is None
    other = LayerDesc("blocks.1.attn.qk_matmul", "matmul_qk", 0, macs=4096, act_numel=512)
    assert site_option_costs(other, "a8", hardware=hw) is None

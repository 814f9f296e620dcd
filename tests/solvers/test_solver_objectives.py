"""Mix-QSAM, Mix-QSAM2 and the profiled default as problems, checked against hand-worked answers."""

from __future__ import annotations

import numpy as np
import pytest

from solvers import solve
from solvers.costs import LayerDesc
from solvers.objectives import mix_qsam2_problem, mix_qsam_problem, profiled_problem

LAYERS = [
    LayerDesc(f"blocks.{i}.mlp", "linear", numel=100, channels=10, macs=1000) for i in range(3)
]


def test_mix_qsam_synergy_moves_the_8_bit_layer() -> None:
    """Ω = (0.40, 0.35, 0.25), Ŝ = (5.0, 0.1), λ = 0.1, bits {4, 8}, b̄ = 6: the size budget
    (Σ p·b <= 1800) and BOPs budget (Σ MACs·b² <= 108000) allow one layer at 8 bits. Gains in
    Σ Ω·b − λ Σ Ŝ|Δb| over all-4: layer 0: 1.6 − 0.1·5·4 = −0.4; layer 1: 1.4 − 0.1·5.1·4 =
    −0.64; layer 2: 1.0 − 0.1·0.1·4 = +0.96. So layer 2 gets 8 bits; loss = 3.0 + 0.04."""
    problem = mix_qsam_problem(
        LAYERS, [0.40, 0.35, 0.25], [5.0, 0.1], bits=(4, 8), target_bits=6, lam=0.1
    )
    assert problem.budget["weight_bits"] == 1800 and problem.budget["bops"] == 108000
    assert problem.pairs[0].loss == [[0.0, 2.0], [2.0, 0.0]]
    for solver in ("cpsat", "milp", "lagrangian"):
        plan = solve(problem, solver)
        assert plan.choices == {
            "blocks.0.mlp": "w4a4",
            "blocks.1.mlp": "w4a4",
            "blocks.2.mlp": "w8a8",
        }
        assert plan.objective == pytest.approx(3.04)


def test_mix_qsam_without_synergy_picks_the_most_important_layer() -> None:
    problem = mix_qsam_problem(
        LAYERS, [0.40, 0.35, 0.25], [5.0, 0.1], bits=(4, 8), target_bits=6, lam=0.0
    )
    plan = solve(problem, "cpsat")
    assert plan.choices["blocks.0.mlp"] == "w8a8" and plan.objective == pytest.approx(
        3.0 - 1.6 + 1.6 - 1.6 + 1.0 + 0.0
    )


def test_mix_qsam_checks_its_inputs() -> None:
    with pytest.raises(ValueError, match="synergy: need 2"):
        mix_qsam_problem(LAYERS, [0.4, 0.3, 0.3], [1.0], target_bits=6)
    with pytest.raises(ValueError, match="omega: need 3 finite values"):
        mix_qsam_problem(LAYERS, [0.4, -0.3, 0.3], [1.0, 1.0], target_bits=6)


def test_mix_qsam2_spends_bits_on_the_high_wais_layer() -> None:
    """WAIS = (8, 1), equal sizes, bits {3, 4, 5}, average <= 4: (5, 3) costs 8/32 + 1/8 = 0.375,
    (4, 4) 0.5625, (3, 5) 1.03125."""
    layers = LAYERS[:2]
    problem = mix_qsam2_problem(layers, [8.0, 1.0], bits=(3, 4, 5), avg_bits=4.0)
    assert problem.budget["weight_bits"] == 800
    plan = solve(problem, "cpsat")
    assert plan.choices == {"blocks.0.mlp": "w5a5", "blocks.1.mlp": "w3a3"}
    assert plan.objective == pytest.approx(0.375)
    assert plan.totals["weight_bits"] / 200 <= 4.0


def test_mix_qsam2_weights_the_average_by_parameters() -> None:
    layers = [
        LayerDesc("a", "linear", numel=300, channels=10),
        LayerDesc("b", "linear", numel=100, channels=10),
    ]
    plan = solve(
        mix_qsam2_problem(layers, [1.0, 1.0], bits=(3, 4, 5), avg_bits=3.5, act_bits=8), "cpsat"
    )
    assert plan.choices == {"a": "w3a8", "b": "w5a8"}  # 300·3 + 100·5 = 1400 = 3.5·400


def test_profiled_builder_keeps_option_order_for_pair_matrices() -> None:
    losses = {"a": {"w8a8": 0.0, "w4a8": 1.0}, "b": {"w8a8": 0.0, "w4a8": 1.0}}
    costs = {n: {"w8a8": {"memory_bytes": 8}, "w4a8": {"memory_bytes": 4}} for n in losses}
    pairs = {("a", "b"): np.array([[0.0, 5.0], [0.0, 0.0]])}
    problem = profiled_problem(losses, costs, pairs=pairs, budget={"memory_bytes": 12})
    plan = solve(problem, "milp")  # (w8a8, w4a8) would cost 1 + 5 (pair[0][1]); (w4a8, w8a8) 1
    assert plan.choices == {"a": "w4a8", "b": "w8a8"} and plan.objective == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"costs\['b'\]: no costs for options w4a8"):
        profiled_problem(losses, {"a": costs["a"], "b": {"w8a8": {"memory_bytes": 8}}})

"""The integer-scaling helper's error bound, and that the solvers never import torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from solvers.backends.scaling import scale_costs, scale_losses

ROOT = Path(__file__).resolve().parents[2]


def test_loss_scaling_error_bound_holds_for_any_pick() -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.uniform(0, 1e-3, size=5) for _ in range(40)] + [
        rng.uniform(0, 1e-4, (5, 5)) for _ in range(39)
    ]
    scaled = scale_losses(arrays, terms=79)
    assert scaled.error > 0 and max(int(a.max()) for a in scaled.ints) < 2**36
    for _ in range(200):
        picks = [rng.integers(0, a.size) for a in arrays]
        exact = sum(float(a.flat[i]) for a, i in zip(arrays, picks, strict=True))
        approx = sum(int(a.flat[i]) for a, i in zip(scaled.ints, picks, strict=True)) / scaled.scale
        assert abs(exact - approx) <= scaled.error
    dyadic = scale_losses([np.array([0.5, 0.25, 1.0])], terms=1)
    assert (
        dyadic.error == 0.0
        and scaled.to_float(float(scaled.ints[0][0])) == scaled.ints[0][0] / scaled.scale
    )


def test_cost_scaling_never_overstates_feasibility() -> None:
    rng = np.random.default_rng(1)
    arrays = [rng.uniform(0, 3.7, size=4) for _ in range(30)]
    capacity = 40.123
    scaled = scale_costs(arrays, capacity)
    assert scaled.scale > 1 and scaled.error == 30 / scaled.scale
    for _ in range(500):
        picks = [rng.integers(0, 4) for _ in arrays]
        if sum(int(a[i]) for a, i in zip(scaled.ints, picks, strict=True)) <= scaled.capacity:
            assert sum(float(a[i]) for a, i in zip(arrays, picks, strict=True)) <= capacity
    exact = scale_costs([np.array([10.0, 20.0]), np.array([3.0, 0.0])], 25.0)
    assert exact.scale == 1.0 and exact.error == 0.0 and exact.capacity == 25


def test_importing_solvers_does_not_import_torch() -> None:
    code = (
        "import solvers, solvers.costs, solvers.pareto, solvers.objectives, sys; "
        "import solvers.backends.cpsat, solvers.backends.milp, solvers.backends.dp; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr

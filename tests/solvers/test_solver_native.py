"""The compiled kernels (``solvers/backends/_native.c``) against the numpy code they replace."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from solver_helpers import random_doc, random_problem

from solvers import Problem, solve
from solvers.backends import native
from solvers.backends.compiled import Compiled
from solvers.backends.localsearch import LocalSearch
from solvers.backends.treedp import TreeDP, price
from solvers.pareto import pareto_front


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The library ``make`` built, or one built here (skipped without a C compiler)."""
    if native.default_path().is_file() and native.load(native.default_path()) is not None:
        return native.default_path()
    if not (shutil.which("cc") or shutil.which("gcc")):
        pytest.skip("no C compiler")
    return native.build(tmp_path_factory.mktemp("native") / "lib.so")


class Switch:
    """Selects the numpy path (``numpy()``) or the compiled one (``compiled()``)."""

    def __init__(self, library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.library, self.monkeypatch = library, monkeypatch

    def use(self, name: str) -> None:
        self.monkeypatch.setenv("BITBUDGET_NATIVE", "0" if name == "numpy" else str(self.library))
        assert (native.lib() is None) == (name == "numpy")


@pytest.fixture
def both(library: Path, monkeypatch: pytest.MonkeyPatch) -> Switch:
    return Switch(library, monkeypatch)


def _model(seed: int, n: int = 12, k: int = 4, chain_only: bool = False) -> Compiled:
    """A random model: one off-chain pair unless ``chain_only``; for every third seed one
    layer has a single option (the DP folds such units into their neighbours)."""
    doc = random_doc(n, k, seed, chain_only=chain_only)
    if seed % 3 == 0:
        doc["ties"] = []
        doc["layers"][2]["options"] = doc["layers"][2]["options"][-1:]
        for pair in doc["pairs"]:
            rows = pair["loss"][-1:] if pair["a"] == "blocks.2" else pair["loss"]
            pair["loss"] = [r[-1:] if pair["b"] == "blocks.2" else r for r in rows]
    return Compiled(Problem.from_dict(doc))


@pytest.mark.parametrize("seed", range(8))
def test_tree_dp_matches_numpy(both: Switch, seed: int) -> None:
    model = _model(seed, chain_only=seed % 2 == 0)
    rng = np.random.default_rng(seed)
    loss = model.loss_pad + rng.normal(0, 0.5, model.loss_pad.shape)
    loss[rng.integers(0, len(model.units), 3), rng.integers(0, 2, 3)] = np.inf  # fixed away
    cost = model.cost_pad / model.cost_pad.max(axis=(1, 2))[:, None, None]
    mu = rng.uniform(0, 2, (7, len(cost)))
    unary = price(loss, cost, mu)
    out = {}
    for name in ("numpy", "compiled"):
        both.use(name)
        dp = TreeDP(model)
        values, choices = dp.minimise_priced(loss, cost, mu)
        plain = dp.minimise(unary.copy())
        assert np.array_equal(plain[0], values) and np.array_equal(plain[1], choices)
        nodes, edges = dp.marginals(unary[0].copy())
        nodes_only, none = dp.marginals(unary[0].copy(), pairs=False)
        assert none == {} and np.array_equal(nodes_only, nodes)
        out[name] = (values, choices, nodes, edges)
    (v0, c0, n0, e0), (v1, c1, n1, e1) = out["numpy"], out["compiled"]
    assert np.array_equal(v0, v1) and np.array_equal(c0, c1)
    assert np.array_equal(n0, n1)
    assert e0.keys() == e1.keys()
    for key in e0:
        assert np.array_equal(e0[key], e1[key])


@pytest.mark.parametrize("seed", range(8))
def test_local_search_matches_numpy(both: Switch, seed: int) -> None:
    model = _model(seed, n=14, k=4)
    rng = np.random.default_rng(seed)
    loss = model.loss_pad.copy()
    if seed % 2:  # fix a few choices away, as the Lagrangian fast path does
        loss[rng.integers(0, len(model.units), 4), rng.integers(1, 3, 4)] = np.inf
    start = np.array([int(np.argmax(np.where(np.isfinite(row), row, -np.inf))) for row in loss])
    start = np.array([0 if np.isinf(loss[u, c]) else c for u, c in enumerate(start)])
    for u in range(len(start)):  # the most expensive alive choice: over budget, to repair
        alive = np.flatnonzero(np.isfinite(loss[u]))
        start[u] = alive[np.argmax(model.cost_pad[0, u, alive])]
    out = {}
    for name in ("numpy", "compiled"):
        both.use(name)
        search = LocalSearch(model, start, loss)
        search.repair()
        repaired = search.choice.copy()
        search.improve(float("inf"))
        out[name] = (repaired, search.choice.copy(), search.pair.copy(), search.spent.copy())
    for a, b in zip(out["numpy"], out["compiled"], strict=True):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("seed", range(4))
def test_lagrangian_plans_match_numpy(both: Switch, seed: int) -> None:
    problem = random_problem(30, 4, seed, tight=0.3)
    plans = {}
    for name in ("numpy", "compiled"):
        both.use(name)
        plans[name] = [
            solve(problem, "lagrangian"),
            solve(problem, "cpsat", time_limit=20),
        ]
    for a, b in zip(plans["numpy"], plans["compiled"], strict=True):
        assert a.status == b.status and a.objective == b.objective and a.bound == b.bound
        assert a.choices == b.choices


def test_lagrangian_front_matches_numpy(both: Switch) -> None:
    problem = random_problem(40, 4, 3, tight=0.3)
    fronts = {}
    for name in ("numpy", "compiled"):
        both.use(name)
        front = pareto_front(problem, "memory_bytes", 8, method="lagrangian")
        fronts[name] = [(p.budget, p.plan.objective, p.plan.bound) for p in front.points]
    assert fronts["numpy"] == fronts["compiled"]


def test_a_missing_or_stale_library_falls_back_to_numpy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BITBUDGET_NATIVE", str(tmp_path / "absent.so"))
    assert native.lib() is None
    stale = tmp_path / "stale.so"
    stale.write_bytes(b"not a shared library")
    monkeypatch.setenv("BITBUDGET_NATIVE", str(stale))
    assert native.lib() is None
    plan = solve(Problem.from_dict(random_doc(6, 3, 1)), "lagrangian")
    assert plan.has_solution


@pytest.mark.parametrize("seed", range(6))
def test_polish_matches_numpy(both: Switch, seed: int) -> None:
    """Several starts (a duplicate, one on a fixed-away choice): the same best plan."""
    from solvers.backends.lagrangian import polish

    model = _model(seed, n=16, k=4)
    rng = np.random.default_rng(seed)
    loss = model.loss_pad.copy()
    loss[rng.integers(0, len(model.units), 3), 3] = np.inf
    sizes = np.array(model.sizes)
    starts = [rng.integers(0, sizes) for _ in range(5)]
    starts += [starts[0].copy(), None]
    starts[1][0] = 3 if np.isinf(loss[0, 3]) else starts[1][0]
    out = {}
    for name in ("numpy", "compiled"):
        both.use(name)
        out[name] = polish(model, [None if s is None else s.copy() for s in starts], 1e18, loss)
    assert (out["numpy"] is None) == (out["compiled"] is None)
    if out["numpy"] is not None:
        assert np.array_equal(out["numpy"], out["compiled"])
        assert model.feasible(out["numpy"])


def test_concurrent_solves_match_serial(library: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernels release the GIL and share a small address cache: threads solving different
    problems at once get the serial plans."""
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv("BITBUDGET_NATIVE", str(library))
    problems = [random_problem(30, 4, seed, tight=0.3) for seed in range(4)] * 3
    serial = [solve(p, "lagrangian").objective for p in problems]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda p: solve(p, "lagrangian").objective, problems))
    assert threaded == serial

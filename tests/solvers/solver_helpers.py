"""Random small problems and a brute-force enumerator, shared by the solver tests."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from solvers import Problem

__all__ = ["random_problem", "brute_force", "random_doc"]

IDS = ["w2a8", "w4a8", "w8a8", "w16a16"]


def random_doc(
    n: int = 8,
    k: int = 3,
    seed: int = 0,
    *,
    chain_only: bool = False,
    ties: bool = True,
    budgets: tuple[str, ...] = ("memory_bytes", "latency_ms"),
    tight: float = 0.45,
) -> dict[str, Any]:
    """A random problem document: losses falling and costs rising with bits, random pairs."""
    rng = np.random.default_rng(seed)
    layers = []
    for i in range(n):
        sizes = rng.integers(1, 4, size=k).cumsum()
        loss = np.sort(rng.uniform(0, 1, size=k))[::-1]
        options = [
            {
                "id": IDS[j],
                "loss": float(loss[j]),
                "memory_bytes": int(10 * sizes[j]),
                "bops": float(sizes[j] * 1e6),
                "latency_ms": float(rng.uniform(0.5, 1.5) * sizes[j]),
            }
            for j in range(k)
        ]
        layers.append({"name": f"blocks.{i}", "options": options})
    pairs = [
        {"a": f"blocks.{i}", "b": f"blocks.{i + 1}", "loss": rng.uniform(0, 0.3, (k, k)).tolist()}
        for i in range(n - 1)
    ]
    if not chain_only:
        a, b = rng.choice(n, size=2, replace=False)
        pairs.append(
            {"a": f"blocks.{a}", "b": f"blocks.{b}", "loss": rng.uniform(0, 0.3, (k, k)).tolist()}
        )
    tie = []
    if ties:
        start = int(rng.integers(0, n - 1))
        tie = [
            [
                f"blocks.{start}",
                f"blocks.{start + 1}"
                if chain_only
                else f"blocks.{(start + (3 if n > 4 else 2)) % n}",
            ]
        ]
    budget: dict[str, float | None] = {"memory_bytes": None, "bops": None, "latency_ms": None}
    for r in budgets:
        lo = sum(min(o[r] for o in layer["options"]) for layer in layers)
        hi = sum(max(o[r] for o in layer["options"]) for layer in layers)
        budget[r] = lo + tight * (hi - lo) + (7 if r == "memory_bytes" else 0)
        if r == "memory_bytes":
            budget[r] = int(budget[r])
    return {
        "format": "bitbudget.problem/v1",
        "layers": layers,
        "pairs": pairs,
        "ties": tie,
        "fixed": {"memory_bytes": 7},
        "budget": budget,
    }


def random_problem(*args: Any, **kwargs: Any) -> Problem:
    """``random_doc`` parsed into a ``Problem``."""
    return Problem.from_dict(random_doc(*args, **kwargs))


def brute_force(problem: Problem) -> tuple[float, dict[str, str] | None]:
    """The exact optimum by enumerating every plan straight from the problem's fields
    (independent of the solvers' compilation): (inf, None) when no plan fits."""
    layers = problem.layers
    index = {layer.name: i for i, layer in enumerate(layers)}
    combos = np.array(list(itertools.product(*[range(len(x.options)) for x in layers])))
    value = sum(np.array([o.loss for o in x.options])[combos[:, i]] for i, x in enumerate(layers))
    for pair in problem.pairs:
        value = value + np.array(pair.loss)[combos[:, index[pair.a]], combos[:, index[pair.b]]]
    ok = np.ones(len(combos), dtype=bool)
    for tie in problem.ties:
        ids = [np.array(layers[index[n]].option_ids())[combos[:, index[n]]] for n in tie]
        for other in ids[1:]:
            ok &= other == ids[0]
    for r, budget in problem.constrained().items():
        spent = sum(
            np.array([o.costs[r] for o in x.options])[combos[:, i]] for i, x in enumerate(layers)
        )
        ok &= problem.fixed.get(r, 0) + spent <= budget * (1 + 1e-12)
    if not ok.any():
        return float("inf"), None
    best = int(np.flatnonzero(ok)[np.argmin(value[ok])])
    return float(value[best]), {x.name: x.options[combos[best, i]].id for i, x in enumerate(layers)}

"""Reduced-cost fixing: drop unit choices and pair entries that cannot beat an incumbent.

For prices μ >= 0 and any plan x meeting the budgets, f(x) >= L(x, μ) = f(x) + Σ μ_r·(c_r(x) −
cap_r). The min-marginal of L with one unit choice (or one pair entry) forced is a lower bound on
every plan using it; one above the incumbent's objective cannot be in a better plan. So every plan
better than the incumbent survives, and min(incumbent, any lower bound over the reduced model) is
a valid lower bound for the full one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from solvers.backends.compiled import Compiled
from solvers.backends.treedp import TreeDP

__all__ = ["Fixed", "Reduction", "fix"]

_RTOL = 1e-9


@dataclass
class Reduction:
    """A reduced model and, per unit, which original choices it kept."""

    model: Compiled
    keep: list[np.ndarray]
    upper: float

    def expand(self, choice: np.ndarray) -> np.ndarray:
        """A reduced-model choice in the original model's indices."""
        return np.array([int(k[c]) for k, c in zip(self.keep, choice, strict=True)])

    def shrink(self, choice: np.ndarray) -> np.ndarray | None:
        """An original-model choice in reduced indices, or None if it uses a dropped choice."""
        out = np.zeros(len(self.keep), dtype=np.int64)
        for u, (k, c) in enumerate(zip(self.keep, choice, strict=True)):
            hit = np.searchsorted(k, c)
            if hit >= k.size or k[hit] != c:
                return None
            out[u] = hit
        return out

    def then(self, inner: Reduction) -> Reduction:
        """This reduction followed by one of its model."""
        keep = [k[i] for k, i in zip(self.keep, inner.keep, strict=True)]
        return Reduction(inner.model, keep, min(self.upper, inner.upper))

    def stats(self) -> dict[str, int]:
        """How many unit choices and pair entries the reduced model still has."""
        forbidden = sum(int(f.sum()) for f in self.model.forbid.values())
        entries = sum(m.size for m in self.model.edges.values()) - forbidden
        return {"kept_choices": sum(self.model.sizes), "kept_pair_entries": entries}


@dataclass
class Fixed:
    """What fixing left of a model: the unit choices still allowed, ``alive`` (units, widest
    unit; padding is never alive), and per pair (the model's ``edges`` keys) the forbidden
    entries, full size (only filled where the fixing was asked for pair entries)."""

    alive: np.ndarray
    forbid: dict[tuple[int, int], np.ndarray]

    @classmethod
    def everything(cls, model: Compiled) -> Fixed:
        """Nothing fixed yet: every real choice alive, the model's own forbidden entries."""
        return cls(np.isfinite(model.loss_pad), dict(model.forbid))

    def reduction(self, model: Compiled, upper: float) -> Reduction:
        """The smaller model keeping only what is alive (and its pair entries not forbidden)."""
        keep = [np.flatnonzero(self.alive[u, :k]) for u, k in enumerate(model.sizes)]
        return Reduction(model.restrict(keep, self.forbid), keep, upper)


def fix(
    model: Compiled,
    dp: TreeDP,
    priced: np.ndarray,
    shift: float,
    upper: float,
    fixed: Fixed | None = None,
    pairs: bool = True,
) -> Fixed:
    """Keep the choices of ``fixed`` whose min-marginals of ``priced`` (n, K; minus ``shift``;
    +inf where not alive) allow a plan below ``upper``; with ``pairs`` also forbid the pair
    entries whose min-marginals do not. A unit left with nothing keeps what it had."""
    fixed = Fixed.everything(model) if fixed is None else fixed
    limit = upper + _RTOL * max(1.0, abs(upper)) + shift
    nodes, edges = dp.marginals(priced, pairs=pairs)
    ok = (nodes <= limit) & fixed.alive
    empty = ~ok.any(axis=1)
    ok[empty] = fixed.alive[empty]
    forbid = fixed.forbid
    if pairs:
        forbid = {}
        for key, matrix in model.edges.items():
            old = fixed.forbid.get(key)
            old = np.zeros(matrix.shape, dtype=bool) if old is None else old
            forbid[key] = (
                old | (edges[key][: matrix.shape[0], : matrix.shape[1]] > limit)
                if key in edges
                else old
            )
    return Fixed(ok, forbid)

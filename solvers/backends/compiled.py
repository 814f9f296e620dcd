"""A ``Problem`` compiled to arrays every backend shares: tie groups merged into units.

A *unit* is a tie group (or a single untied layer). Its choices are the option ids every member
has; choosing one fixes every member's option. Pair terms between members of one unit fold into
the unit's loss; pair terms between two units are summed into one matrix per unit pair.
"""

from __future__ import annotations

import copy
import functools
import itertools
import operator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from solvers.problem import Problem

__all__ = ["Unit", "Compiled", "Result", "FEAS_RTOL", "NotApplicable"]

FEAS_RTOL = 1e-9  # relative slack allowed when checking a plan against a float budget


class NotApplicable(ValueError):
    """A backend that cannot take this problem's shape (e.g. ``dp`` on a non-chain)."""


@dataclass(frozen=True)
class Unit:
    """A tie group: member layer indices, shared choice ids, member option index per choice."""

    members: list[int]
    ids: list[str]
    index: np.ndarray  # shape (len(members), len(ids))


@dataclass
class Result:
    """What a backend returns; ``solvers.backends.solve`` turns it into a ``Plan``."""

    status: str
    choice: np.ndarray | None = None
    bound: float | None = None
    scaling_error: dict[str, float] | None = None
    message: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _tie_groups(problem: Problem) -> list[list[int]]:
    index = {layer.name: i for i, layer in enumerate(problem.layers)}
    parent = list(range(len(problem.layers)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for tie in problem.ties:
        for name in tie[1:]:
            parent[root(index[name])] = root(index[tie[0]])
    groups: dict[int, list[int]] = {}
    for i in range(len(problem.layers)):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda g: g[0])


@functools.lru_cache(maxsize=64)
def _identity(count: int) -> np.ndarray:
    """The (1, count) index of an untied layer's unit (shared, read-only)."""
    out = np.arange(count)[None, :]
    out.flags.writeable = False
    return out


def _make_unit(problem: Problem, members: list[int]) -> Unit:
    if len(members) == 1:
        count = len(problem.layers[members[0]].options)
        return Unit(members, problem.layers[members[0]].option_ids(), _identity(count))
    positions = [{o: k for k, o in enumerate(problem.layers[i].option_ids())} for i in members]
    ids = [o for o in positions[0] if all(o in p for p in positions[1:])]
    return Unit(members, ids, np.array([[p[o] for o in ids] for p in positions], dtype=np.int64))


class Compiled:
    """Array form of a problem; choices are one index per unit into that unit's ``ids``."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.units = [_make_unit(problem, g) for g in _tie_groups(problem)]
        self.unit_of = np.zeros(len(problem.layers), dtype=np.int64)
        self.row_of = np.zeros(len(problem.layers), dtype=np.int64)
        for u, unit in enumerate(self.units):
            self.unit_of[unit.members] = u
            self.row_of[unit.members] = np.arange(len(unit.members))
        options = [o for layer in problem.layers for o in layer.options]
        starts = np.cumsum([0] + [len(layer.options) for layer in problem.layers])
        self.reported = list(problem.carried)
        self._gather: np.ndarray | None = None
        self.loss = self._unit_sums(np.array([o.loss for o in options], dtype=float), starts)
        get = operator.itemgetter(*self.reported) if len(self.reported) > 1 else None
        values = (
            itertools.chain.from_iterable(map(get, (o.costs for o in options)))
            if get is not None
            else (o.costs[r] for o in options for r in self.reported)
        )
        table = np.fromiter(values, dtype=float, count=len(options) * len(self.reported))
        table = table.reshape(len(options), len(self.reported))
        self.cost = {
            r: self._unit_sums(np.ascontiguousarray(table[:, i]), starts)
            for i, r in enumerate(self.reported)
        }
        self.capacity = {r: b - problem.fixed.get(r, 0) for r, b in problem.constrained().items()}
        self.edges: dict[tuple[int, int], np.ndarray] = {}
        self.forbid: dict[tuple[int, int], np.ndarray] = {}  # pair entries no plan may take
        self._fold_pairs()

    def _unit_sums(self, flat: np.ndarray, starts: np.ndarray) -> list[np.ndarray]:
        """Per unit, Σ over members of each member's values at the unit's choices; ``flat``
        holds every layer's values end to end, layer i's from ``starts[i]``."""
        if self._gather is None:  # where each unit's first member's values are, end to end
            self._gather = np.concatenate(
                [starts[u.members[0]] + u.index[0] for u in self.units]
            ).astype(np.int64)
        total = flat.take(self._gather)
        out, at = [], 0
        for unit in self.units:
            part, at = total[at : at + len(unit.ids)], at + len(unit.ids)
            for row, m in enumerate(unit.members[1:], start=1):
                part += flat[starts[m] + unit.index[row]]  # a view of total: summed in place
            out.append(part)
        return out

    def rebudget(self, **budget: float | None) -> Compiled:
        """The same compiled problem under other budget values (same constrained resources)."""
        out = copy.copy(self)
        out.problem = self.problem.with_budget(**budget)
        out.capacity = {
            r: b - out.problem.fixed.get(r, 0) for r, b in out.problem.constrained().items()
        }
        if set(out.capacity) != set(self.capacity):
            out.__dict__.pop("cost_pad", None)
        return out

    def _fold_pairs(self) -> None:
        index = {layer.name: i for i, layer in enumerate(self.problem.layers)}
        for pair in self.problem.pairs:
            la, lb = index[pair.a], index[pair.b]
            ua, ub = int(self.unit_of[la]), int(self.unit_of[lb])
            matrix = pair.matrix
            if len(self.units[ua].members) > 1 or len(self.units[ub].members) > 1:
                rows = self.units[ua].index[self.row_of[la]]
                cols = self.units[ub].index[self.row_of[lb]]
                matrix = matrix[np.ix_(rows, cols)]  # (an untied layer's unit has all its options)
            if ua == ub:
                self.loss[ua] = self.loss[ua] + np.diag(matrix)
                continue
            key, matrix = ((ua, ub), matrix) if ua < ub else ((ub, ua), matrix.T)
            self.edges[key] = self.edges.get(key, 0) + matrix

    def restrict(
        self, keep: list[np.ndarray], forbid: dict[tuple[int, int], np.ndarray]
    ) -> Compiled:
        """A copy keeping choices ``keep[u]`` (index arrays) and forbidding pair entries."""
        out = copy.copy(self)
        out.units = [
            Unit(u.members, [u.ids[k] for k in idx], u.index[:, idx])
            for u, idx in zip(self.units, keep, strict=True)
        ]
        out.loss = [loss[idx] for loss, idx in zip(self.loss, keep, strict=True)]
        out.cost = {
            r: [c[idx] for c, idx in zip(cs, keep, strict=True)] for r, cs in self.cost.items()
        }
        out.edges = {(a, b): m[keep[a]][:, keep[b]] for (a, b), m in self.edges.items()}
        out.forbid = {(a, b): f[keep[a]][:, keep[b]] for (a, b), f in forbid.items()}
        cached = (
            "loss_pad",
            "cost_pad",
            "edge_stack",
            "treedp",
            "neighbours",
            "adjacency",
            "_least",
            "_flat_cost",
        )
        for name in cached:
            out.__dict__.pop(name, None)
        return out

    @functools.cached_property
    def cost_pad(self) -> np.ndarray:
        """Constrained-resource costs as (resources, units, widest unit), zero padding."""
        out = np.zeros((len(self.capacity), len(self.loss), max(self.sizes)))
        for i, r in enumerate(self.capacity):
            for u, cost in enumerate(self.cost[r]):
                out[i, u, : len(cost)] = cost
        return out

    @functools.cached_property
    def loss_pad(self) -> np.ndarray:
        """Losses as (units, widest unit) with +inf padding."""
        out = np.full((len(self.loss), max(self.sizes)), np.inf)
        for u, loss in enumerate(self.loss):
            out[u, : len(loss)] = loss
        return out

    @functools.cached_property
    def edge_stack(self) -> tuple[np.ndarray, np.ndarray]:
        """Pair matrices as (edges, K, K) zero-padded, and their (a, b) unit indices (edges, 2)."""
        width = max(self.sizes)
        ends = np.array(list(self.edges), dtype=np.int64).reshape(len(self.edges), 2)
        matrices = list(self.edges.values())
        if all(m.shape == (width, width) for m in matrices):  # nothing to pad: one copy
            return np.array(matrices, dtype=float).reshape(len(matrices), width, width), ends
        stack = np.zeros((len(self.edges), width, width))
        for e, matrix in enumerate(matrices):
            stack[e, : matrix.shape[0], : matrix.shape[1]] = matrix
        return stack, ends

    @functools.cached_property
    def treedp(self) -> Any:
        """The ``TreeDP`` of this model's pair graph (budget-independent: shared by sweeps)."""
        from solvers.backends.treedp import TreeDP

        return TreeDP(self)

    @functools.cached_property
    def neighbours(self) -> list[list[tuple[int, np.ndarray]]]:
        """Per unit, (neighbour, pair matrix oriented [own choice, neighbour choice])."""
        out: list[list[tuple[int, np.ndarray]]] = [[] for _ in self.units]
        for (a, b), matrix in self.edges.items():
            out[a].append((b, matrix))
            out[b].append((a, matrix.T))
        return out

    @functools.cached_property
    def adjacency(self) -> tuple[np.ndarray, np.ndarray]:
        """Per unit, its edges' indices into ``edge_stack`` in ``neighbours`` order, as CSR
        (offsets (units + 1,), edge indices): the compiled local search's neighbour lists."""
        incident: list[list[int]] = [[] for _ in self.units]
        for e, (a, b) in enumerate(self.edges):
            incident[a].append(e)
            incident[b].append(e)
        offsets = np.zeros(len(self.units) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(x) for x in incident])
        flat = np.array([e for x in incident for e in x], dtype=np.int64)
        return offsets, flat

    @property
    def sizes(self) -> list[int]:
        """Number of choices of each unit."""
        return [len(u.ids) for u in self.units]

    def objective(self, choice: np.ndarray) -> float:
        """Σ chosen loss + Σ chosen pair loss, in float."""
        return float(self.objectives(np.asarray(choice, dtype=np.int64)[None])[0])

    def objectives(self, choices: np.ndarray) -> np.ndarray:
        """``objective`` for every row of choices (M, n) at once."""
        choices = np.asarray(choices, dtype=np.int64)
        n, width = self.loss_pad.shape
        out = self.loss_pad.reshape(-1).take(np.arange(n) * width + choices).sum(axis=1)
        stack, ends = self.edge_stack
        if len(ends):
            at = (np.arange(len(ends)) * width + choices[:, ends[:, 0]]) * width
            out += stack.reshape(-1).take(at + choices[:, ends[:, 1]]).sum(axis=1)
        return out

    @functools.cached_property
    def _flat_cost(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per reported resource, every unit's costs end to end and where each unit starts."""
        starts = np.concatenate([[0], np.cumsum(self.sizes)[:-1]]).astype(np.int64)
        return {r: (np.concatenate(self.cost[r]), starts) for r in self.reported}

    def totals(self, choice: np.ndarray) -> dict[str, float]:
        """fixed + Σ chosen cost for every resource all options carry (summed unit by unit)."""
        out = {}
        for r, (flat, starts) in self._flat_cost.items():
            spent = sum(flat[starts + np.asarray(choice, dtype=np.int64)].tolist())
            out[r] = _tidy(self.problem.fixed.get(r, 0) + spent)
        return out

    def feasible(self, choice: np.ndarray, totals: dict[str, float] | None = None) -> bool:
        """True when every non-null budget holds (to FEAS_RTOL relative); ``totals`` are the
        choice's ``totals`` when the caller has them already."""
        totals = self.totals(choice) if totals is None else totals
        return all(
            totals[r] <= b * (1 + FEAS_RTOL) + 1e-12 for r, b in self.problem.constrained().items()
        )

    def names(self, choice: np.ndarray) -> dict[str, str]:
        """Unit choices as {layer name: option id}, in layer order."""
        out = {}
        for i, layer in enumerate(self.problem.layers):
            out[layer.name] = self.units[self.unit_of[i]].ids[int(choice[self.unit_of[i]])]
        return out

    def decode(self, choices: dict[str, str]) -> np.ndarray | None:
        """The unit choice array for a plan's {layer: id}, or None if it does not fit the ties."""
        out = np.zeros(len(self.units), dtype=np.int64)
        for u, unit in enumerate(self.units):
            ids = {choices.get(self.problem.layers[m].name) for m in unit.members}
            if len(ids) != 1 or (only := ids.pop()) not in unit.ids:
                return None
            out[u] = unit.ids.index(only)
        return out

    def least(self) -> dict[str, float]:
        """The least each constrained resource can reach alone, given ties (fixed included)."""
        return {r: self._least[r] for r in self.capacity}

    @functools.cached_property
    def _least(self) -> dict[str, float]:
        """``least`` for every reported resource (budget-independent: shared by ``rebudget``)."""
        out = {}
        for r, (flat, starts) in self._flat_cost.items():
            least = sum(np.minimum.reduceat(flat, starts).tolist())  # unit by unit, as totals
            out[r] = _tidy(self.problem.fixed.get(r, 0) + least)
        return out

    def explanation(self) -> dict[str, dict[str, float]]:
        """{resource: {"least": …, "budget": …}} for every constrained resource."""
        budget = self.problem.constrained()
        return {r: {"least": v, "budget": _tidy(budget[r])} for r, v in self.least().items()}


def _tidy(value: float) -> float:
    """Integral floats print as ints (byte counts stay exact in JSON)."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)

"""Exact min-sum over a forest of units, batched over many price vectors at once.

Pair edges are taken into a spanning forest in order; an edge that would close a cycle is
replaced by its row minima added to the first unit's loss, which can only lower the minimum.
So ``minimise`` returns a valid lower bound on min Σ unary + Σ pairs (exact when the pair graph
is a forest) and a choice whose true objective the caller evaluates. Arrays are padded to the
widest unit (padding carries +inf unary terms, so it is never chosen).
"""

from __future__ import annotations

import numpy as np

from solvers.backends.compiled import Compiled
from solvers.backends.native import lib, ptr

__all__ = ["TreeDP", "pad", "price"]


def pad(arrays: list[np.ndarray], fill: float, width: int | None = None) -> np.ndarray:
    """Stack ragged 1-d arrays into (len, width), filling the tail with ``fill``."""
    width = width or max(len(a) for a in arrays)
    out = np.full((len(arrays), width), fill)
    for i, a in enumerate(arrays):
        out[i, : len(a)] = a
    return out


def price(loss: np.ndarray, cost: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """Unary terms loss + Σ_r μ_r·cost_r for losses (n, K), costs (R, n, K) and price vectors
    mu (M, R): shape (M, n, K). Summed resource by resource (the compiled kernel's order)."""
    if cost.shape[0] == 0:
        return np.broadcast_to(loss, (len(mu), *loss.shape)).copy()
    terms = mu[:, 0, None, None] * cost[0]
    for r in range(1, cost.shape[0]):
        terms = terms + mu[:, r, None, None] * cost[r]
    return loss[None] + terms


class TreeDP:
    """Leaf-to-root min-sum messages over a spanning forest of the unit pair graph."""

    def __init__(self, model: Compiled) -> None:
        n, self.width = len(model.units), max(model.sizes)
        self.exact, self.const = True, 0.0
        fixed = np.array(model.sizes) == 1  # single-choice units fold into their neighbours
        self.fixed = np.flatnonzero(fixed)
        extra = [np.zeros(k) for k in model.sizes]
        parent = list(range(n))
        adjacency: list[list[tuple[int, np.ndarray]]] = [[] for _ in range(n)]
        for (a, b), matrix in model.edges.items():
            if fixed[a] or fixed[b]:
                self.const += float(matrix[0, 0]) if fixed[a] and fixed[b] else 0.0
                if fixed[a] != fixed[b]:
                    end, row = (b, matrix[0, :]) if fixed[a] else (a, matrix[:, 0])
                    extra[end] = extra[end] + row
                continue
            ra, rb = _root(parent, a), _root(parent, b)
            if ra == rb:
                self.exact = False
                extra[a] = extra[a] + matrix.min(axis=1)
                continue
            parent[ra] = rb
            adjacency[a].append((b, matrix))
            adjacency[b].append((a, matrix.T))
        self.extra = pad(extra, 0.0, self.width)
        self._orient(adjacency, n, fixed)

    def _orient(
        self, adjacency: list[list[tuple[int, np.ndarray]]], n: int, fixed: np.ndarray
    ) -> None:
        """Parents before children; ``up[v]`` is the padded (K, K) matrix [x_v, x_parent]."""
        self.order: list[int] = []
        self.parent = np.full(n, -1, dtype=np.int64)
        self.up = np.zeros((n, self.width, self.width))
        self.tree = np.arange(n)
        seen = fixed.copy()
        for root in range(n):
            if seen[root]:
                continue
            seen[root] = True
            stack = [root]
            while stack:
                v = stack.pop()
                self.order.append(v)
                for w, matrix in adjacency[v]:
                    if not seen[w]:
                        seen[w] = True
                        self.parent[w], self.tree[w] = v, root
                        self.up[w, : matrix.shape[1], : matrix.shape[0]] = matrix.T
                        stack.append(w)
        self._roots = [v for v in self.order if self.parent[v] < 0]
        self._downward = [(v, int(self.parent[v])) for v in self.order if self.parent[v] >= 0]
        self._upward = self._downward[::-1]
        self._up_kkm = self.up[:, :, :, None]  # [x_v, x_parent, price vector] broadcast
        # the same edges as int64 arrays for the compiled kernels (native.py)
        down = np.array(self._downward, dtype=np.int64).reshape(-1, 2)
        self._down_child, self._down_par = down[:, 0].copy(), down[:, 1].copy()
        self._up_child, self._up_par = down[::-1, 0].copy(), down[::-1, 1].copy()
        self._root_arr = np.array(self._roots, dtype=np.int64)
        self.extra = np.ascontiguousarray(self.extra)
        self._ptrs = [ptr(a) for a in (self.extra, self.up, self._up_child, self._up_par)]
        self._ptrs.append(ptr(self._root_arr))

    def minimise(self, unary: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For unary (M, n, K): (lower bounds (M,), choices (M, n)) of Σ unary + pairs."""
        m = unary.shape[0]
        acc = np.ascontiguousarray((unary + self.extra[None]).transpose(1, 2, 0))  # (n, K, M)
        value = acc[self.fixed, 0, :].sum(axis=0) + self.const
        up, reduce = self._up_kkm, np.minimum.reduce
        for v, p in self._upward:
            acc[p] += reduce(acc[v][:, None, :] + up[v], axis=0)
        choice = np.zeros((acc.shape[0], m), dtype=np.int64)
        for v in self._roots:
            choice[v] = acc[v].argmin(axis=0)
            value += reduce(acc[v], axis=0)
        for v, p in self._downward:
            choice[v] = (acc[v] + self.up[v][:, choice[p]]).argmin(axis=0)
        return value, np.ascontiguousarray(choice.T)

    def minimise_priced(
        self, loss: np.ndarray, cost: np.ndarray, mu: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """``minimise(price(loss, cost, mu))``, priced inside the compiled kernel when it is
        there (rows of ``loss`` that are +inf are skipped: padding, fixed-away choices)."""
        native = lib()
        if native is None:
            return self.minimise(price(loss, cost, mu))
        m, n = len(mu), loss.shape[0]
        loss, cost = (
            np.ascontiguousarray(loss, dtype=float),
            np.ascontiguousarray(cost, dtype=float),
        )
        mu = np.ascontiguousarray(mu, dtype=float)
        if len(self.fixed):  # as minimise: the same (units, M) rows summed the same way
            rows = price(loss[self.fixed], cost[:, self.fixed], mu)[:, :, 0].T
            value = (rows + self.extra[self.fixed, 0][:, None]).sum(axis=0) + self.const
        else:
            value = np.full(m, self.const + 0.0)
        value = np.ascontiguousarray(value, dtype=float)
        choice = np.zeros((m, n), dtype=np.int64)
        native.bb_tree_minimise(
            n, self.width, m, cost.shape[0], ptr(loss), self._ptrs[0], ptr(cost), ptr(mu),
            self._ptrs[1], len(self._up_child), self._ptrs[2], self._ptrs[3],
            len(self._root_arr), self._ptrs[4], ptr(value), ptr(choice),
        )  # fmt: skip
        return value, choice

    def marginals(
        self, unary: np.ndarray, pairs: bool = True
    ) -> tuple[np.ndarray, dict[tuple[int, int], np.ndarray]]:
        """Min-marginals for unary (n, K): per unit choice (n, K) and (with ``pairs``) per forest
        edge entry the least of Σ unary + pairs with it forced (off-forest pairs relaxed as in
        ``minimise``)."""
        acc = np.ascontiguousarray(unary + self.extra, dtype=float)
        msg = np.zeros_like(acc)
        native = lib()
        if native is not None:
            native.bb_marginals_up(
                self.width,
                ptr(acc),
                ptr(self.up),
                ptr(msg),
                len(self._up_child),
                ptr(self._up_child),
                ptr(self._up_par),
            )
        else:
            for v in reversed(self.order):
                p = int(self.parent[v])
                if p >= 0:
                    msg[v] = (acc[v][:, None] + self.up[v]).min(axis=0)
                    acc[p] = acc[p] + msg[v]
        roots = [v for v in self.order if self.parent[v] < 0]
        tree_min = np.zeros(len(acc))
        tree_min[roots] = acc[roots].min(axis=1)
        total = tree_min.sum() + acc[self.fixed, 0].sum() + self.const
        down = np.zeros_like(acc)
        edges = {}
        if native is not None:
            offset = np.ascontiguousarray(total - tree_min[self.tree])
            matrices = np.zeros((len(acc), self.width, self.width) if pairs else (0, 0, 0))
            native.bb_marginals_down(
                self.width,
                ptr(acc),
                ptr(self.up),
                ptr(msg),
                ptr(down),
                ptr(matrices) if pairs else None,
                ptr(offset),
                len(self._down_child),
                ptr(self._down_child),
                ptr(self._down_par),
            )
            for v, p in self._downward if pairs else ():
                edges[(v, p) if v < p else (p, v)] = matrices[v] if v < p else matrices[v].T
            nodes = acc + down + offset[:, None]
            nodes[self.fixed] = total
            return nodes, edges
        for v in self.order:
            p = int(self.parent[v])
            if p < 0:
                continue
            outside = acc[p] + down[p] - msg[v]
            down[v] = (self.up[v] + outside[None, :]).min(axis=1)
            if not pairs:
                continue
            matrix = (
                acc[v][:, None] + self.up[v] + outside[None, :] + (total - tree_min[self.tree[v]])
            )
            edges[(v, p) if v < p else (p, v)] = matrix if v < p else matrix.T
        nodes = acc + down + (total - tree_min[self.tree])[:, None]
        nodes[self.fixed] = total
        return nodes, edges


def _root(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i

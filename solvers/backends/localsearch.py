"""Repair and swap passes over a unit choice, shared by the Lagrangian and greedy backends.

All moves are scored on padded (units × choices) arrays: ``delta_loss`` is the exact objective
change of switching one unit (pair terms with its current neighbours included), ``delta_cost``
the change in each constrained resource. Budgets are checked against the exact capacity.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from solvers.backends.compiled import Compiled
from solvers.backends.native import lib, ptr

__all__ = ["LocalSearch", "objective_in_order", "static_args"]

_EPS = 1e-12
TRIES = 16  # over-budget improvements ``exchange`` tries to pay for


_LAST: tuple[Any, ...] | None = None  # (model, loss, addresses, arrays) of the last search


def static_args(
    model: Compiled,
    loss: np.ndarray,
    cap: np.ndarray | None = None,
    norm: np.ndarray | None = None,
) -> tuple[tuple[int, ...], tuple[np.ndarray, ...]]:
    """Sizes and data addresses of a model's arrays (with ``loss`` for its padded losses) for
    the compiled kernels: (n, K, R, E, loss, cost, cap, norm, stack, ends, offsets, incident),
    and the arrays themselves, which the caller must hold while a kernel uses the addresses
    (another thread may replace the cache meanwhile). Kept for the next call on the same model
    and losses (a polish runs several searches)."""
    global _LAST
    last = _LAST
    if last is None or last[0] is not model or last[1] is not loss:
        if cap is None:
            cap = np.array(list(model.capacity.values()), dtype=float)
        norm = np.maximum(np.abs(cap), 1e-300) if norm is None else norm
        stack, ends = model.edge_stack
        offsets, incident = model.adjacency
        arrays = (loss, model.cost_pad, cap, norm, stack, ends, offsets, incident)
        args = (*loss.shape, len(cap), len(ends), *(ptr(a) for a in arrays))
        last = _LAST = (model, loss, args, arrays)
    return last[2], last[3]


def objective_in_order(model: Compiled, choice: np.ndarray) -> float:
    """``model.objective`` summed unit by unit and pair by pair (the compiled polish's order)."""
    n, width = model.loss_pad.shape
    total = np.add.accumulate(model.loss_pad.reshape(-1).take(np.arange(n) * width + choice))[-1]
    stack, ends = model.edge_stack
    if len(ends):
        at = (np.arange(len(ends)) * width + choice[ends[:, 0]]) * width + choice[ends[:, 1]]
        total = total + np.add.accumulate(stack.reshape(-1).take(at))[-1]
    return float(total)


class LocalSearch:
    """A current choice with incremental pair contributions and resource totals."""

    def __init__(self, model: Compiled, choice: np.ndarray, loss: np.ndarray | None = None) -> None:
        """``loss`` replaces the model's padded losses (e.g. +inf at choices fixed away)."""
        self.model = model
        self.choice = np.array(choice, dtype=np.int64)
        n = len(model.units)
        self.rows = np.arange(n)
        self.loss = model.loss_pad if loss is None else np.ascontiguousarray(loss, dtype=float)
        self.cost = model.cost_pad
        self.cap = np.array(list(model.capacity.values()), dtype=float)
        self.norm = np.maximum(np.abs(self.cap), 1e-300)
        self.neighbours = model.neighbours
        self.pair = np.zeros_like(self.loss)  # updated in place (the compiled kernels hold it)
        self.spent = np.zeros(len(self.cap))
        self._state: tuple[int, ...] | None = None
        self.refresh()

    def _static(self) -> tuple[int, ...]:
        """``static_args`` of this search's model and losses (their arrays held by self)."""
        args, self._held = static_args(self.model, self.loss, self.cap, self.norm)
        return args

    def _native_args(self) -> tuple[int, ...]:
        """``_static`` and this search's own state (choice, pair terms, totals)."""
        if self._state is None:
            self._state = (ptr(self.choice), ptr(self.pair), ptr(self.spent))
        return (*self._static(), *self._state)

    def _native(self, mode: int, deadline: float) -> bool:
        """Run ``repair`` (mode 0) or ``improve``'s loop (mode 1) compiled; False without it."""
        native = lib()
        if native is None:
            return False
        native.bb_local_search(mode, *self._native_args(), deadline, TRIES)
        return True

    def refresh(self) -> None:
        """Recompute pair contributions and totals from scratch (no drift)."""
        stack, ends = self.model.edge_stack
        if len(ends) and (native := lib()) is not None:
            n, k, _, count, _, _, _, _, stack_at, ends_at, _, _, choice_at, pair_at, _ = (
                self._native_args()
            )
            native.bb_pair_refresh(n, k, count, stack_at, ends_at, choice_at, pair_at)
        else:
            self.pair.fill(0.0)
            if len(ends):
                e = np.arange(len(ends))
                np.add.at(self.pair, ends[:, 0], stack[e, :, self.choice[ends[:, 1]]])
                np.add.at(self.pair, ends[:, 1], stack[e, self.choice[ends[:, 0]], :])
        width = self.loss.shape[1]
        flat = self.cost.reshape(len(self.cost), -1)
        chosen = flat.take(self.rows * width + self.choice, axis=1)
        self.spent[:] = np.add.accumulate(chosen, axis=1)[:, -1]  # unit by unit, as compiled

    def deltas(self) -> tuple[np.ndarray, np.ndarray]:
        """(Δ objective, Δ cost per resource) of every single-unit switch."""
        local = self.loss + self.pair
        delta_loss = local - local[self.rows, self.choice][:, None]
        delta_cost = self.cost - self.cost[:, self.rows, self.choice][:, :, None]
        return delta_loss, delta_cost

    def move(self, u: int, k: int) -> None:
        """Switch unit u to choice k, updating neighbours' pair contributions and totals."""
        old = int(self.choice[u])
        for v, matrix in self.neighbours[u]:
            column = matrix[k, :] - matrix[old, :]
            self.pair[v, : column.shape[0]] += column
        self.spent += self.cost[:, u, k] - self.cost[:, u, old]
        self.choice[u] = k

    def feasible(self) -> bool:
        """Every constrained resource within its capacity."""
        return bool(np.all(self.spent <= self.cap))

    def repair(self) -> None:
        """Move units to cheaper choices, least Δloss per unit of removed overrun first."""
        if self._native(0, 0.0):
            return
        for _ in range(self.loss.size):
            over = np.maximum(self.spent - self.cap, 0.0) / self.norm
            if not over.any():
                return
            delta_loss, delta_cost = self.deltas()
            after = np.maximum(
                self.spent[:, None, None] + delta_cost - self.cap[:, None, None], 0.0
            )
            gain = over.sum() - (after / self.norm[:, None, None]).sum(axis=0)
            score = np.where(
                gain > _EPS, (delta_loss - delta_loss.min()) / np.maximum(gain, _EPS), np.inf
            )
            u, k = np.unravel_index(int(np.argmin(score)), score.shape)
            if not np.isfinite(score[u, k]):
                return
            self.move(int(u), int(k))

    def _fits(self, delta_cost: np.ndarray) -> np.ndarray:
        return np.all(self.spent[:, None, None] + delta_cost <= self.cap[:, None, None], axis=0)

    def one_opt(self) -> bool:
        """Apply the best single switch that lowers the objective and keeps every budget."""
        delta_loss, delta_cost = self.deltas()
        score = np.where(self._fits(delta_cost), delta_loss, np.inf)
        u, k = np.unravel_index(int(np.argmin(score)), score.shape)
        if score[u, k] >= -_EPS * max(1.0, abs(float(self.loss[u, k]))):
            return False
        self.move(int(u), int(k))
        return True

    def exchange(self, tries: int = TRIES) -> bool:
        """Pair an over-budget improvement with the cheapest non-adjacent switch paying for it."""
        delta_loss, delta_cost = self.deltas()
        fits = self._fits(delta_cost)
        candidates = np.argsort(np.where(fits, np.inf, delta_loss), axis=None)[:tries]
        for flat in candidates:
            u, k = np.unravel_index(int(flat), delta_loss.shape)
            if not delta_loss[u, k] < -_EPS:
                break
            room = self.cap - self.spent - delta_cost[:, u, k]
            ok = np.all(delta_cost <= room[:, None, None], axis=0)
            ok[u, :] = False
            for v, _ in self.neighbours[u]:
                ok[v, :] = False
            pay = np.where(ok, delta_loss, np.inf)
            w, j = np.unravel_index(int(np.argmin(pay)), pay.shape)
            if delta_loss[u, k] + pay[w, j] < -_EPS:
                self.move(int(u), int(k))
                self.move(int(w), int(j))
                return True
        return False

    def improve(self, deadline: float) -> None:
        """Single switches, then exchanges, until neither helps or the deadline passes."""
        if self._native(1, deadline):
            self.refresh()
            return
        while time.perf_counter() < deadline:
            if self.one_opt():
                continue
            if not self.exchange():
                break
        self.refresh()

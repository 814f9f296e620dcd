"""Solved plans by request key: each distinct request is solved once per process, even when many
clients send it at the same moment, and at most ``slots`` solves run at once (the rest of the
API keeps its share of the CPU)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

__all__ = ["SolveMemo"]


class SolveMemo:
    """A bounded, thread-safe memo with one computation in flight per key."""

    def __init__(self, size: int, slots: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._done: OrderedDict[str, Any] = OrderedDict()
        self._flights: dict[str, threading.Lock] = {}
        self._slots = threading.BoundedSemaphore(max(slots, 1))

    def _cached(self, key: str) -> tuple[bool, Any]:
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                return True, self._done[key]
            return False, None

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        """The value for ``key``, computing it (once, under a solve slot) when missing."""
        hit, value = self._cached(key)
        if hit:
            return value
        with self._lock:
            flight = self._flights.setdefault(key, threading.Lock())
        with flight:
            hit, value = self._cached(key)
            if hit:
                return value
            with self._slots:
                value = compute()
            with self._lock:
                self._done[key] = value
                while len(self._done) > self.size:
                    self._done.popitem(last=False)
                self._flights.pop(key, None)
        return value

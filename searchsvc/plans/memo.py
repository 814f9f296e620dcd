"""Solved plans by request key: each distinct request is solved once per process, even when many
clients send it at the same moment, and at most ``slots`` solves run at once (the rest of the
API keeps its share of the CPU).

A solve runs on an executor and every caller gets a ``concurrent.futures.Future``: a thread
(the job runner, the CLI) waits on ``result()``; the API awaits it (``asyncio.wrap_future``)
without holding a worker thread. By default the executor is a pool of ``slots`` threads; the
API server switches to a pool of worker *processes* (``use_processes``) so that a CPU-bound
solve never holds the server's GIL while it answers other requests; they run at a lower
priority (``SOLVER_NICENESS``) so that, on a busy machine, requests get the CPU before solves.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import (
    CancelledError,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
)
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from profiling.procs import stop_pool

__all__ = ["SolveMemo"]

log = logging.getLogger(__name__)


SOLVER_NICENESS = 10  # worker processes' niceness, above the server's
RETRIES = 1  # a computation whose worker process died is sent to a fresh pool this many times


def _in_the_background(parent: int) -> None:
    """A solver process gives way to the server's own work: on a busy machine the CPU goes to
    answering requests (milliseconds each) first, to solves (tens to hundreds of ms) after. It
    also exits when the server is gone, however the server went (``profiling.procs``)."""
    import contextlib

    from profiling.procs import guard_parent

    guard_parent(parent=parent)  # the server's pid, passed in: it may die while we import
    with contextlib.suppress(OSError, AttributeError):
        os.nice(SOLVER_NICENESS)


class SolveMemo:
    """A bounded, thread-safe memo of futures with one computation in flight per key."""

    def __init__(self, size: int, slots: int) -> None:
        self.size = size
        self.slots = max(slots, 1)
        self._lock = threading.RLock()  # a done-callback may run at once, in the same thread
        self._done: OrderedDict[str, Any] = OrderedDict()
        self._flights: dict[str, Future[Any]] = {}
        self._executor: Executor | None = None
        self._processes = 0
        self._stops = 0  # pools stopped on purpose (shutdown, a new process count): no retry

    @property
    def processes(self) -> int:
        """Worker processes solving (0: threads of this process)."""
        return self._processes

    def use_processes(self, processes: int) -> None:
        """Solve in ``processes`` worker processes (started on the first solve); 0: threads."""
        with self._lock:
            if processes == self._processes:
                return
            old, self._executor, self._processes = self._executor, None, max(processes, 0)
            self._stops += 1
        stop_pool(old)

    def shutdown(self) -> None:
        """Stop the executor and end its worker processes now (a later solve starts a new one)."""
        with self._lock:
            old, self._executor = self._executor, None
            self._stops += 1
        stop_pool(old)

    def _pool(self) -> Executor:
        """The executor (under ``_lock``), created on first use."""
        if self._executor is None:
            if self._processes:
                # spawn: the server has threads, and forking a threaded process is unsafe
                context = multiprocessing.get_context("spawn")
                self._executor = ProcessPoolExecutor(
                    self._processes,
                    mp_context=context,
                    initializer=_in_the_background,
                    initargs=(os.getpid(),),
                )
            else:
                self._executor = ThreadPoolExecutor(self.slots, thread_name_prefix="solve")
        return self._executor

    def clear(self) -> None:
        """Forget every finished value (in-flight solves finish and are kept)."""
        with self._lock:
            self._done.clear()

    def submit(self, key: str, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        """A future of ``fn(*args)`` for ``key``: done when memoised, the running one when in
        flight, else a new computation. ``fn`` and ``args`` must pickle (worker processes).

        A worker process that dies mid-solve (killed, out of memory) breaks the whole pool: the
        computation is then sent once more to a fresh pool (``RETRIES``) before its future fails
        with ``BrokenProcessPool`` (the API's 503)."""
        with self._lock:
            if key in self._done:
                self._done.move_to_end(key)
                ready: Future[Any] = Future()
                ready.set_result(self._done[key])
                return ready
            flight = self._flights.get(key)
            if flight is not None:
                return flight
            flight = Future()
            flight.set_running_or_notify_cancel()
            self._flights[key] = flight
            self._send(flight, fn, args, RETRIES)
        flight.add_done_callback(lambda f: self._land(key, f))
        return flight

    def _send(
        self, flight: Future[Any], fn: Callable[..., Any], args: tuple[Any, ...], retries: int
    ) -> None:
        """Run ``fn(*args)`` on the pool (under ``_lock``); its outcome settles ``flight``."""
        try:
            attempt = self._pool().submit(fn, *args)
        except BrokenProcessPool:  # a worker died while idle: start afresh
            log.warning("the solver process pool broke; starting a new one")
            stop_pool(self._executor, timeout=1.0)
            self._executor = None
            attempt = self._pool().submit(fn, *args)
        pool, stops = self._executor, self._stops
        attempt.add_done_callback(
            lambda done: self._relay(done, flight, (fn, args), retries, (pool, stops))
        )

    def _relay(
        self,
        done: Future[Any],
        flight: Future[Any],
        call: tuple[Callable[..., Any], tuple[Any, ...]],
        retries: int,
        origin: tuple[Executor | None, int],
    ) -> None:
        """Settle ``flight`` with an attempt's outcome, or try again on a fresh pool when a
        worker died under it (the broken pool has already ended its workers) — unless the pool
        was stopped on purpose meanwhile (the server is stopping)."""
        error = None if done.cancelled() else done.exception()
        with self._lock:
            again = isinstance(error, BrokenProcessPool) and retries > 0
            if again and self._stops == origin[1]:
                log.warning("a solver process died mid-solve; solving again on a fresh pool")
                if self._executor is origin[0]:
                    self._executor = None  # the next _pool() starts a fresh one
                self._send(flight, *call, retries - 1)
                return
        if done.cancelled():
            flight.set_exception(CancelledError())
        elif error is not None:
            flight.set_exception(error)
        else:
            flight.set_result(done.result())

    def _land(self, key: str, future: Future[Any]) -> None:
        """Keep a successful value; a failure is not memoised (the next request tries again)."""
        with self._lock:
            if self._flights.get(key) is future:
                del self._flights[key]
            if future.cancelled() or future.exception() is not None:
                return
            self._done[key] = future.result()
            self._done.move_to_end(key)
            while len(self._done) > self.size:
                self._done.popitem(last=False)

    def get(self, key: str, compute: Callable[[], Any]) -> Any:
        """The value for ``key``, computing it (once, on the executor) when missing."""
        return self.submit(key, compute).result()

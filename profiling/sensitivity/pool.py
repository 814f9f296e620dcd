"""Units on a local process pool: the embedded service's and the command line's fan-out.

The calling process hands out a phase's missing units one at a time to ``processes - 1`` helper
processes and computes units itself meanwhile (from the other end of the queue), so
``processes`` units run at once and nothing waits on an idle helper. Each helper builds the
model, calibration data and float pass once (``helper_context``) and replays the metric to each
unit it is given (``compute_unit``); the caller writes every result to the store as it arrives,
so a crash loses only the units in flight. Every process runs ``cores // processes`` torch
threads. Helpers use ``profiling.procs``: they exit when the caller dies, and ``close`` ends
them at once.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch

from profiling.procs import guard_parent, stop_pool
from profiling.sensitivity.context import Context
from profiling.sensitivity.request import ProfileRequest
from profiling.sensitivity.store import Store
from profiling.sensitivity.units import UnitTally, compute_unit, process_name, report

__all__ = ["LocalPool", "threads_per_process", "helper_context"]

_HELPER: dict[str, Context] = {}  # a helper process's context, by profile key


def threads_per_process(processes: int) -> int:
    """Torch threads for each of ``processes`` processes sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(processes, 1))


def _init_helper(threads: int, parent: int) -> None:
    guard_parent(parent=parent)
    torch.set_num_threads(threads)


def helper_context(req: ProfileRequest, store: Store, scratch: Path | None) -> Context:
    """This process's context for ``req`` (built on first use, kept for the next units)."""
    from profiling.sensitivity.runner import build_context

    key = json.dumps(req.to_dict(), sort_keys=True)
    if key not in _HELPER:
        _HELPER.clear()  # one profile at a time: drop the previous one's model and caches
        _HELPER[key], _ = build_context(req, store, "cpu", scratch=scratch)
    return _HELPER[key]


def _helper_unit(
    req: ProfileRequest, store: Store, scratch: Path | None, unit: str
) -> tuple[Any, str, float]:
    """In a helper: ``(value, worker, seconds)`` of one unit."""
    from profiling.sensitivity.runner import PROCESSORS

    ctx = helper_context(req, store, scratch)
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(req.seed)
        value = compute_unit(ctx, PROCESSORS[req.metric], unit)
    return value, process_name(), time.perf_counter() - started


class LocalPool:
    """A phase's units shared between this process and ``processes - 1`` helpers."""

    def __init__(
        self, processes: int, threads: int, req: ProfileRequest, store: Store, scratch: Path | None
    ) -> None:
        self.req, self.store, self.scratch = req, store, scratch
        self.threads = threads
        self.executor = ProcessPoolExecutor(
            processes - 1,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_helper,
            initargs=(self.threads, os.getpid()),
        )
        self.helpers = processes - 1

    def close(self) -> None:
        """End the helpers now."""
        stop_pool(self.executor)

    def phase(
        self,
        ctx: Context,
        ids: list[str],
        compute: Callable[[str], Any],
        label: str,
        share: tuple[float, float],
    ) -> dict[str, Any]:
        stored = ctx.store.get_many(ids)
        tally = UnitTally(total=len(ids), done=len(stored), resumed=len(stored))
        ctx.counts["resumed"] += len(stored)
        run = _Phase(self, ctx, [u for u in ids if u not in stored], tally)
        run.start()
        while not run.finished():
            report(ctx, tally, label, share)  # raises Cancelled on a stop request
            unit = run.take_last()
            if unit is None:
                run.wait(0.2)
                continue
            started = time.perf_counter()
            value = compute(unit)
            run.record(unit, value, process_name(), time.perf_counter() - started)
        run.raise_failure()
        report(ctx, tally, label, share, check=False)
        return ctx.store.get_many(ids)


class _Phase:
    """The queue of one phase's missing units, fed to the helpers as they free up."""

    def __init__(self, pool: LocalPool, ctx: Context, missing: list[str], tally: UnitTally):
        self.pool, self.ctx, self.tally = pool, ctx, tally
        self.queue: deque[str] = deque(missing)
        self.running: set[Future] = set()
        self.failure: BaseException | None = None
        self.cond = threading.Condition()

    def start(self) -> None:
        for _ in range(self.pool.helpers):
            self._feed()

    def _feed(self) -> None:
        with self.cond:
            if not self.queue or self.failure is not None:
                return
            unit = self.queue.popleft()
            p = self.pool
            try:
                future = p.executor.submit(_helper_unit, p.req, p.store, p.scratch, unit)
            except RuntimeError:  # the pool was closed (the run stopped): hand out no more
                self.queue.appendleft(unit)
                return
            self.running.add(future)
        future.add_done_callback(lambda f: self._done(unit, f))

    def _done(self, unit: str, future: Future) -> None:
        try:
            value, worker, seconds = future.result()
            self.record(unit, value, worker, seconds)
        except BaseException as exc:  # a helper's error ends the phase with that error
            with self.cond:
                self.failure = self.failure or exc
        with self.cond:
            self.running.discard(future)
            self.cond.notify_all()
        self._feed()

    def record(self, unit: str, value: Any, worker: str, seconds: float) -> None:
        """Store one result (thread-safe) and count it."""
        self.ctx.store.put(unit, value, worker=worker, seconds=seconds)
        with self.cond:
            self.tally.add(worker)
            self.ctx.counts["computed"] += 1
            self.ctx.counts_by_worker[worker] += 1

    def take_last(self) -> str | None:
        with self.cond:
            return self.queue.pop() if self.queue and self.failure is None else None

    def wait(self, seconds: float) -> None:
        with self.cond:
            self.cond.wait(seconds)

    def finished(self) -> bool:
        with self.cond:
            idle = not self.running
            return idle and (not self.queue or self.failure is not None)

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

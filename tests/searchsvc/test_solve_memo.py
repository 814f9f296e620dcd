"""The API's solver pool (``searchsvc.plans.memo``) with real worker processes: a worker killed
mid-solve is solved again on a fresh pool; killed twice, the request gets a 503 with
``Retry-After`` (``solve_outcome_of``), never a 500."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest

from searchsvc.errors import Unavailable
from searchsvc.plans.memo import SolveMemo
from searchsvc.plans.service import solve_outcome_of


def _slow_pid(seconds: float) -> int:
    """Runs in a worker process: sleeps, then says which process it ran in."""
    time.sleep(seconds)
    return os.getpid()


@pytest.fixture
def memo() -> Iterator[SolveMemo]:
    memo = SolveMemo(size=8, slots=1)
    memo.use_processes(1)
    yield memo
    memo.shutdown()


def _worker(memo: SolveMemo, key: str) -> int:
    return int(memo.submit(key, os.getpid).result(timeout=120))


def _kill_mid_solve(memo: SolveMemo, key: str) -> tuple[int, Future[Any]]:
    worker = _worker(memo, f"{key}-pid")
    future = memo.submit(key, _slow_pid, 2.0)
    time.sleep(0.8)  # it runs in that (only) worker now
    os.kill(worker, signal.SIGKILL)
    return worker, future


def test_a_worker_killed_mid_solve_is_solved_again(memo: SolveMemo) -> None:
    killed, future = _kill_mid_solve(memo, "solve")
    solved_in = future.result(timeout=120)
    assert solved_in != killed
    assert _worker(memo, "after") == solved_in  # the fresh pool stays in use


def test_a_worker_killed_twice_is_a_503(memo: SolveMemo) -> None:
    killed, future = _kill_mid_solve(memo, "solve")
    deadline = time.monotonic() + 60
    fresh: list[int] = []
    while not fresh and time.monotonic() < deadline:  # the retry's fresh worker
        pool = memo._executor  # the pool's own table of its workers (CPython)
        fresh = [p for p in (getattr(pool, "_processes", None) or {}) if p != killed]
        time.sleep(0.05)
    assert fresh, "no fresh pool was started"
    time.sleep(0.8)  # mid-solve again
    for pid in fresh:
        os.kill(pid, signal.SIGKILL)
    with pytest.raises(Unavailable) as caught:
        solve_outcome_of(future)
    assert caught.value.retry_after > 0

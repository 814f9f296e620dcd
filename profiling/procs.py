"""Worker processes that never outlive the process that started them.

A ``ProcessPoolExecutor``'s workers block on their call queue, whose pipe they hold both ends of:
when the parent dies without shutting the pool down (SIGKILL, a crash, uvicorn re-raising
SIGTERM after its shutdown, which skips ``atexit``) they never see EOF and stay, re-parented to
PID 1, each holding what it imported (hundreds of MB). Two guards close that:

- ``guard_parent`` (a pool's ``initializer``) starts a watchdog thread in the worker that exits
  the worker as soon as its parent pid changes, i.e. the parent is gone, however it went. The
  kernel's parent-death signal (``PR_SET_PDEATHSIG``) is not used: it fires when the *thread*
  that spawned the child exits, and pools spawn workers from whatever thread submits first.
- ``stop_pool`` ends a pool's workers now (terminate, join, kill what lingers) instead of
  leaving them to finish on their own after the parent has moved on.

No torch here: the solver pool (which never imports torch for itself) uses it too.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from concurrent.futures import Executor

__all__ = ["guard_parent", "stop_pool", "WATCHDOG_INTERVAL_S"]

WATCHDOG_INTERVAL_S = 0.5  # how often a worker checks that its parent is alive


def _watch(parent: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != parent:  # re-parented: the process that started us is gone
            os._exit(0)


def guard_parent(interval: float = WATCHDOG_INTERVAL_S, parent: int | None = None) -> None:
    """In a child process: exit within ``interval`` seconds of the parent's death. Pass the
    ``parent`` pid the pool was made by (``os.getpid()`` there, in ``initargs``): a spawned child
    imports for seconds before its initializer runs, and a parent that died meanwhile would
    otherwise leave it watching its new parent, PID 1."""
    parent = os.getppid() if parent is None else parent
    if os.getppid() != parent:
        os._exit(0)
    thread = threading.Thread(
        target=_watch, args=(parent, interval), name="parent-watchdog", daemon=True
    )
    thread.start()


def stop_pool(executor: Executor | None, timeout: float = 10.0) -> None:
    """Shut ``executor`` down and, for a process pool, end its workers now (a running task is
    abandoned): terminate, wait up to ``timeout`` s, then kill."""
    if executor is None:
        return
    # the pool's own table of its workers (CPython's ProcessPoolExecutor; absent for threads)
    processes = list((getattr(executor, "_processes", None) or {}).values())
    executor.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.terminate()
    deadline = time.monotonic() + timeout
    for proc in processes:
        with contextlib.suppress(Exception):
            proc.join(max(deadline - time.monotonic(), 0.0))
            if proc.is_alive():
                proc.kill()
                proc.join(1.0)

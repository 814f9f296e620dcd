"""The profile job as the coordinator of its units on Celery.

Completion is database-driven, not a Celery chord: for each phase the coordinator writes the
missing units as ``pending`` rows, sends one ``profiling.unit`` message per row on the
``profile-units`` queue, and then, until every row is ``done``, claims units itself (from the end
of the phase; message-fed workers take them from the front), re-opens units whose worker went
silent and sends them again, and fails the job when a worker refused a unit. The table is the
truth: a message delivered twice, late or never costs nothing but a re-send.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from profiling.errors import BitbudgetError
from searchsvc.db.session import session_scope
from searchsvc.jobs.repository import older_than
from searchsvc.profiles import units
from searchsvc.settings import QUEUES, Settings

__all__ = ["CeleryFanOut", "UnitRefused", "UNIT_TASK", "UNITS_QUEUE", "beating", "send_units"]

UNIT_TASK = "profiling.unit"
UNITS_QUEUE = QUEUES[1]


class UnitRefused(BitbudgetError):
    """A worker refused a unit: it built other weights or calibration data."""

    http_status = 409


def send_units(settings: Settings, unit_ids: list[int]) -> None:
    """One ``profiling.unit`` message per unit row on the units queue."""
    from searchsvc.jobs.dispatch import get_dispatcher

    app = getattr(get_dispatcher(settings), "app", None)
    if app is None:  # the embedded runner has no queue: the coordinator computes them
        return
    for unit_id in unit_ids:
        app.send_task(UNIT_TASK, args=[unit_id], queue=UNITS_QUEUE)


@contextmanager
def beating(settings: Settings, unit_id: int, worker: str) -> Iterator[None]:
    """Refresh the claim on a unit while it is computed."""
    done = threading.Event()
    interval = min(settings.heartbeat_timeout_s / 4, 2.0)

    def beat() -> None:
        while not done.wait(interval):
            try:
                with session_scope(settings.database) as session:
                    units.heartbeat(session, unit_id, worker)
            except Exception:  # a database hiccup must not stop the work; retry next beat
                continue

    thread = threading.Thread(target=beat, name=f"bb-unit-{unit_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)


class CeleryFanOut:
    """A phase runner (``profiling.sensitivity.units``) that shares units with Celery workers."""

    def __init__(self, settings: Settings, job_id: int, key: str, worker: str) -> None:
        self.settings, self.job_id, self.key, self.me = settings, job_id, key, worker
        self.phase_no = 0

    def _stale(self) -> Any:
        return older_than(self.settings.heartbeat_timeout_s)

    def _prepare(self, ctx: Any, missing: list[str]) -> None:
        with session_scope(self.settings.database) as session:
            ids = units.prepare(
                session,
                key=self.key,
                units=missing,
                phase=self.phase_no,
                job_id=self.job_id,
                weights_hash=ctx.weights_hash,
                calibration_key=ctx.calibration_key,
            )
        send_units(self.settings, ids)

    def _check(self, ids: list[str], tally: Any) -> int:
        """Done units of the phase (and by whom, into ``tally``); re-sends stale ones; raises
        on a refusal."""
        with session_scope(self.settings.database) as session:
            counts, errors, per_worker = units.states(session, self.key, ids)
            stale = units.reclaim_stale(session, self.key, ids, self._stale())
        if errors:
            raise UnitRefused(errors[0])
        send_units(self.settings, stale)
        tally.done, tally.per_worker = counts["done"], per_worker
        return counts["done"]

    def _compute_one(self, ids: list[str], compute: Callable[[str], Any]) -> bool:
        with session_scope(self.settings.database) as session:
            row = units.claim_next(session, self.key, ids, self.me, self._stale())
            claimed = (row.id, row.unit) if row is not None else None
        if claimed is None:
            return False
        started = time.perf_counter()
        with beating(self.settings, claimed[0], self.me):
            value = compute(claimed[1])
        with session_scope(self.settings.database) as session:
            seconds = time.perf_counter() - started
            units.upsert_result(session, self.key, claimed[1], value, self.me, seconds)
        return True

    def phase(
        self,
        ctx: Any,
        ids: list[str],
        compute: Callable[[str], Any],
        label: str,
        share: tuple[float, float],
    ) -> dict[str, Any]:
        from profiling.sensitivity.units import UnitTally, report

        stored = ctx.store.get_many(ids)
        ctx.counts["resumed"] += len(stored)
        missing = [u for u in ids if u not in stored]
        if missing:
            self._prepare(ctx, missing)
        tally = UnitTally(total=len(ids), done=len(stored), resumed=len(stored))
        while self._check(ids, tally) < len(ids):
            report(ctx, tally, label, share)  # raises Cancelled on a stop request
            if not self._compute_one(ids, compute):
                time.sleep(0.2)
        self.phase_no += 1
        tally.done = len(ids)
        report(ctx, tally, label, share, check=False)
        values = ctx.store.get_many(ids)
        ctx.counts["computed"] += len(missing)
        with session_scope(self.settings.database, write=False) as session:
            ctx.counts_by_worker.clear()
            ctx.counts_by_worker.update(units.summary(session, self.key, None)["per_worker"])
        return values

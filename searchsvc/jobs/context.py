"""What a running job's handler gets: its params, progress reporting, ``should_stop``, sessions.

A heartbeat thread refreshes the job row while the handler runs and polls for cancellation; it
also notices when the row is no longer ours (the reconciler re-queued it) and stops the work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.orm import Session

from searchsvc.db.session import session_scope
from searchsvc.jobs import repository
from searchsvc.settings import Settings

__all__ = ["JobContext", "JobCancelled", "JobLost"]


class JobCancelled(Exception):
    """Raised inside a handler when the job was cancelled (``DELETE /v1/jobs/{id}``)."""


class JobLost(Exception):
    """Raised when the job row no longer belongs to this worker (it was re-queued elsewhere)."""


class JobContext:
    """Per-execution handle: ``progress(fraction, message)`` and ``should_stop()``."""

    def __init__(
        self, job_id: int, kind: str, params: dict[str, Any], worker: str, settings: Settings
    ) -> None:
        self.job_id, self.kind, self.params = job_id, kind, params
        self.worker, self.settings = worker, settings
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._done = threading.Event()
        self._last_write = 0.0
        self._thread: threading.Thread | None = None
        self.interval = min(settings.heartbeat_timeout_s / 4, 2.0)

    @contextmanager
    def session(self, write: bool = True) -> Iterator[Session]:
        """A short unit of work of its own (commits on exit); ``write=False`` only reads."""
        with session_scope(self.settings.database, write=write) as session:
            yield session

    def progress(self, fraction: float, message: str = "") -> None:
        """Record progress and a heartbeat (at most a few writes a second; the last always)."""
        now = time.monotonic()
        if fraction < 1.0 and now - self._last_write < 0.25:
            return
        self._last_write = now
        with self.session() as session:
            if not repository.set_progress(session, self.job_id, self.worker, fraction, message):
                self._check_row(session)

    def should_stop(self) -> bool:
        """True once the job is cancelled or was taken from this worker."""
        return self.cancelled.is_set() or self.lost.is_set()

    def raise_if_stopped(self) -> None:
        """Raise ``JobCancelled`` / ``JobLost`` when the work must end now."""
        if self.lost.is_set():
            raise JobLost(f"job {self.job_id} was re-queued away from {self.worker}")
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def _check_row(self, session: Session) -> None:
        job = repository.get(session, self.job_id)
        if job is None or job.state != "running" or job.worker != self.worker:
            self.lost.set()
        elif job.cancel_requested:
            self.cancelled.set()

    def _beat(self) -> None:
        while not self._done.wait(self.interval):
            try:
                with self.session() as session:
                    if repository.heartbeat(session, self.job_id, self.worker):
                        job = repository.get(session, self.job_id)
                        if job is not None and job.cancel_requested:
                            self.cancelled.set()
                    else:
                        self._check_row(session)
            except Exception:  # a database hiccup must not kill the work; retry next beat
                continue

    def __enter__(self) -> JobContext:
        self._thread = threading.Thread(target=self._beat, name=f"bb-beat-{self.job_id}")
        self._thread.daemon = True
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

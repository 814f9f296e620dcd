"""Handing job ids to a transport — only after the transaction that created them commits.

Services call ``enqueue_after_commit(session, job)``; an ``after_commit`` listener sends the ids
once the request (or task) scope commits, and a rollback forgets them. The transport is Celery
(``BITBUDGET_BROKER_URL``) or the embedded thread pool; both run ``runner.execute``.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from sqlalchemy import event
from sqlalchemy.orm import Session

from searchsvc.db.session import session_scope
from searchsvc.db.tables import JobRow
from searchsvc.jobs import repository
from searchsvc.settings import Settings

__all__ = [
    "Dispatcher",
    "CeleryDispatcher",
    "EmbeddedRunner",
    "configure_dispatcher",
    "set_dispatcher",
    "get_dispatcher",
    "shutdown_dispatcher",
    "enqueue_after_commit",
    "send",
]

log = logging.getLogger(__name__)
_PENDING = "bitbudget_enqueue"
QUEUE = "bitbudget"


class Dispatcher(Protocol):
    """Something that eventually runs ``runner.execute(job_id)`` somewhere."""

    def send(self, kind: str, job_id: int) -> None:
        """Hand one job id to the transport."""

    def close(self) -> None:
        """Stop accepting work."""


class CeleryDispatcher:
    """Sends task messages by name (the API never imports the task bodies)."""

    def __init__(self, settings: Settings) -> None:
        from searchsvc.jobs.registry import load_tasks
        from searchsvc.worker import make_celery

        self.app = make_celery(settings)
        self.queues = {name: spec.queue or QUEUE for name, spec in load_tasks().items()}

    def send(self, kind: str, job_id: int) -> None:
        """Publish ``kind(job_id)`` on its queue (``bitbudget`` unless the kind names one)."""
        self.app.send_task(kind, args=[job_id], queue=self.queues.get(kind, QUEUE))

    def close(self) -> None:
        """Release broker connections."""
        self.app.close()


class EmbeddedRunner:
    """The embedded default: the same task functions on an in-process thread pool."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.pool = ThreadPoolExecutor(settings.embedded_workers, thread_name_prefix="bb-job")

    def send(self, kind: str, job_id: int) -> None:
        """Run the job on the pool."""
        from searchsvc.jobs.runner import execute

        self.pool.submit(self._run, execute, job_id)

    def _run(self, execute: object, job_id: int) -> None:
        try:
            execute(job_id, self.settings)  # type: ignore[operator]
        except Exception:  # the runner records failures; this only guards the pool thread
            log.exception("job %s crashed the embedded runner", job_id)

    def close(self) -> None:
        """Finish running jobs; queued ones stay queued in the database (re-run at next start)."""
        self.pool.shutdown(wait=False, cancel_futures=True)


_lock = threading.Lock()
_current: dict[str, tuple[Dispatcher, Settings]] = {}


def configure_dispatcher(settings: Settings) -> Dispatcher:
    """Choose the transport for this process from ``settings`` (idempotent per database)."""
    with _lock:
        if settings.database in _current:
            return _current[settings.database][0]
        dispatcher: Dispatcher = (
            EmbeddedRunner(settings) if settings.embedded else CeleryDispatcher(settings)
        )
        _current[settings.database] = (dispatcher, settings)
        return dispatcher


def set_dispatcher(settings: Settings, dispatcher: Dispatcher) -> None:
    """Use ``dispatcher`` for ``settings.database`` in this process (closing any earlier one)."""
    shutdown_dispatcher(settings)
    with _lock:
        _current[settings.database] = (dispatcher, settings)


def get_dispatcher(settings: Settings) -> Dispatcher:
    """The transport configured for ``settings.database`` (configuring it when needed)."""
    return configure_dispatcher(settings)


def shutdown_dispatcher(settings: Settings) -> None:
    """Close and forget the transport of ``settings.database``."""
    with _lock:
        entry = _current.pop(settings.database, None)
    if entry is not None:
        entry[0].close()


def send(settings: Settings, jobs: list[tuple[str, int]]) -> None:
    """Hand ``(kind, id)`` pairs to the transport and record ``enqueued_at``."""
    if not jobs:
        return
    dispatcher = get_dispatcher(settings)
    sent = []
    for kind, job_id in jobs:
        try:
            dispatcher.send(kind, job_id)
            sent.append(job_id)
        except Exception:  # the reconciler re-sends unsent jobs
            log.exception("could not enqueue job %s (%s); the reconciler will retry", job_id, kind)
    with session_scope(settings.database) as session:
        repository.mark_enqueued(session, sent)


def enqueue_after_commit(session: Session, job: JobRow, settings: Settings) -> None:
    """Send ``job`` to the transport once ``session`` commits (never before)."""
    session.flush()
    pending: list[tuple[str, int]] = session.info.setdefault(_PENDING, [])
    pending.append((job.kind, job.id))
    session.info["bitbudget_settings"] = settings


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    jobs = session.info.pop(_PENDING, None)
    settings = session.info.pop("bitbudget_settings", None)
    if jobs and settings is not None:
        send(settings, jobs)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, previous_transaction: object) -> None:
    session.info.pop(_PENDING, None)

"""The one task body every transport runs: ``execute(job_id, settings)``.

Idempotent: it re-reads the row and only a conditional queued -> running UPDATE lets it start,
so a message delivered twice, a re-queued job or a cancelled one does no harm.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from typing import Any

from sqlalchemy.orm import Session

from profiling.errors import BitbudgetError
from searchsvc.db.session import session_scope
from searchsvc.db.tables import JobRow
from searchsvc.jobs import repository
from searchsvc.jobs.context import JobCancelled, JobContext, JobLost
from searchsvc.jobs.dispatch import enqueue_after_commit
from searchsvc.jobs.registry import TASKS, TaskSpec, load_tasks
from searchsvc.settings import Settings

__all__ = ["execute", "worker_name"]

log = logging.getLogger(__name__)


def worker_name() -> str:
    """A unique owner tag for one execution: host, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _fail_with_dependents(
    session: Session, job: JobRow, worker: str | None, state: str, error: str, settings: Settings
) -> None:
    """Mark ``job`` (and, recursively, the queued jobs waiting on it) failed or cancelled."""
    message = "cancelled" if state == "cancelled" else f"failed: {error}"
    if not repository.finish(session, job.id, worker, state, message=message, error=error):
        return
    spec = TASKS.get(job.kind)
    if spec is not None and spec.on_fail is not None:
        spec.on_fail(session, job, error)
    for child in repository.children(session, job.id):
        why = f"job {job.id} ({job.kind}) it waits on {state}: {error}"
        _fail_with_dependents(session, child, None, "failed", why, settings)


def _start(job_id: int, settings: Settings) -> tuple[TaskSpec, JobContext] | None:
    """Check the row and claim it; None when there is nothing (more) to do here."""
    with session_scope(settings.database) as session:
        job = repository.get(session, job_id)
        if job is None:
            log.warning("job %s does not exist; dropping the message", job_id)
            return None
        if job.state != "queued":
            return None
        if job.cancel_requested:
            _fail_with_dependents(session, job, None, "cancelled", "cancelled", settings)
            return None
        parent = repository.get(session, job.parent_id) if job.parent_id else None
        if parent is not None and parent.state in ("failed", "cancelled"):
            why = f"job {parent.id} ({parent.kind}) it waits on {parent.state}: {parent.error}"
            _fail_with_dependents(session, job, None, "failed", why, settings)
            return None
        if parent is not None and parent.state != "succeeded":
            return None  # sent again when the parent finishes
        spec = TASKS.get(job.kind)
        if spec is None:
            why = f"unknown job kind {job.kind!r}; known: {', '.join(sorted(TASKS))}"
            _fail_with_dependents(session, job, None, "failed", why, settings)
            return None
        worker = worker_name()
        if not repository.claim(session, job_id, worker):
            return None
        return spec, JobContext(job_id, job.kind, dict(job.params), worker, settings)


def _succeed(ctx: JobContext, result: dict[str, Any]) -> None:
    with session_scope(ctx.settings.database) as session:
        if not repository.finish(
            session, ctx.job_id, ctx.worker, "succeeded", message="done", result=result
        ):
            return
        for child in repository.children(session, ctx.job_id):
            enqueue_after_commit(session, child, ctx.settings)


def _end(ctx: JobContext, state: str, error: str) -> None:
    with session_scope(ctx.settings.database) as session:
        job = repository.get(session, ctx.job_id)
        if job is not None:
            _fail_with_dependents(session, job, ctx.worker, state, error, ctx.settings)


def execute(job_id: int, settings: Settings) -> str:
    """Run job ``job_id`` if it is runnable; returns what happened (for logs and tests)."""
    load_tasks()
    started = _start(job_id, settings)
    if started is None:
        return "skipped"
    spec, ctx = started
    try:
        with ctx:
            result = spec.run(ctx)
            if ctx.lost.is_set():
                raise JobLost(f"job {job_id} was re-queued while it ran")
    except JobLost:
        log.warning("job %s was taken over by another worker; dropping this run", job_id)
        return "lost"
    except JobCancelled:
        _end(ctx, "cancelled", "cancelled")
        return "cancelled"
    except BitbudgetError as exc:
        _end(ctx, "failed", str(exc))
        return "failed"
    except Exception as exc:  # recorded on the row; the traceback goes to the log
        log.exception("job %s (%s) failed", job_id, spec.name)
        _end(ctx, "failed", f"{type(exc).__name__}: {exc}")
        return "failed"
    _succeed(ctx, result)
    return "succeeded"


def cancel_queued(session: Session, job: JobRow, settings: Settings) -> None:
    """Cancel a job that has not started (and fail the jobs waiting on it)."""
    _fail_with_dependents(session, job, None, "cancelled", "cancelled", settings)

"""Creating, reading and cancelling jobs. Creation enqueues only after the caller's commit."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from searchsvc.db.tables import TERMINAL_STATES, JobRow
from searchsvc.errors import Conflict, NotFound
from searchsvc.jobs import repository
from searchsvc.jobs.dispatch import enqueue_after_commit
from searchsvc.jobs.schemas import JobOut
from searchsvc.settings import Settings

__all__ = ["create_job", "get_job", "job_out", "cancel_job", "is_active"]

_WAIT_SHARE = 0.9  # a waiting job shows its parent's progress scaled into [0, 0.9]


def create_job(
    session: Session,
    *,
    settings: Settings,
    kind: str,
    params: dict[str, Any],
    parent: JobRow | None = None,
) -> JobRow:
    """A queued job, sent to the transport once ``session`` commits."""
    from searchsvc.jobs.registry import get_task

    get_task(kind)
    job = repository.add(session, kind, params, parent.id if parent is not None else None)
    if parent is not None:
        job.message = f"waiting for job {parent.id} ({parent.kind})"
    enqueue_after_commit(session, job, settings)
    return job


def is_active(job: JobRow | None) -> bool:
    """True for a queued or running job."""
    return job is not None and job.state not in TERMINAL_STATES


def get_job(session: Session, *, job_id: int) -> JobRow:
    """The job row, or NotFound."""
    job = repository.get(session, job_id)
    if job is None:
        raise NotFound(f"job {job_id} does not exist")
    return job


def job_out(session: Session, job: JobRow) -> JobOut:
    """The job resource; a job waiting on another shows that one's progress and message."""
    progress, message = job.progress, job.message
    parent = repository.get(session, job.parent_id) if job.parent_id else None
    if job.state == "queued" and parent is not None and is_active(parent):
        progress = round(parent.progress * _WAIT_SHARE, 4)
        message = f"{parent.kind} (job {parent.id}): {parent.message}"
    return JobOut(
        units=_units(session, job),
        worker=job.worker,
        id=job.id,
        kind=job.kind,
        state=job.state,
        progress=progress,
        message=message,
        error=job.error,
        result=job.result or {},
        params=job.params or {},
        waits_on=job.parent_id,
        attempts=job.attempts,
        cancel_requested=job.cancel_requested,
        created_at=job.created_at,
        started_at=job.started_at,
        heartbeat_at=job.heartbeat_at,
        finished_at=job.finished_at,
    )


def _units(session: Session, job: JobRow) -> dict[str, Any] | None:
    from searchsvc.jobs.registry import TASKS, load_tasks

    load_tasks()
    spec = TASKS.get(job.kind)
    return spec.units(session, job) if spec is not None and spec.units is not None else None


def cancel_job(session: Session, *, settings: Settings, job_id: int) -> JobRow:
    """Cancel a job: a queued one at once, a running one at its next ``should_stop`` check.

    The job it waits on is cancelled too when nothing else needs it (nobody asked for it
    directly and no other job waits on it).
    """
    from searchsvc.jobs.runner import cancel_queued

    job = get_job(session, job_id=job_id)
    if job.state in ("succeeded", "failed"):
        raise Conflict(f"job {job_id} already {job.state}; only queued or running jobs cancel")
    if job.state == "cancelled":
        return job
    parent_id = job.parent_id
    repository.request_cancel(session, job_id)
    if job.state == "queued":
        cancel_queued(session, job, settings)
    parent = repository.get(session, parent_id) if parent_id else None
    if (
        parent is not None
        and is_active(parent)
        and not (parent.params or {}).get("direct")
        and not repository.children(session, parent.id)
    ):
        cancel_job(session, settings=settings, job_id=parent.id)  # nobody else waits on it
    session.flush()
    return get_job(session, job_id=job_id)

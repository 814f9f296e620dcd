"""The only queries on the ``jobs`` table. State changes are conditional UPDATEs, so two workers
(or a task delivered twice) can never both own a job."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import CursorResult, false, or_, select, update
from sqlalchemy.orm import Session, aliased

from searchsvc.db.base import utcnow
from searchsvc.db.tables import TERMINAL_STATES, JobRow

__all__ = [
    "add",
    "get",
    "claim",
    "heartbeat",
    "set_progress",
    "finish",
    "children",
    "stale_running",
    "requeue",
    "unsent_queued",
    "mark_enqueued",
    "request_cancel",
    "active_of_kind",
]


def _changed(session: Session, stmt: Any) -> int:
    result: CursorResult[Any] = session.execute(stmt)  # type: ignore[assignment]
    return result.rowcount


def add(session: Session, kind: str, params: dict[str, Any], parent_id: int | None) -> JobRow:
    """Insert a queued job and flush so that it has an id."""
    job = JobRow(kind=kind, params=params, parent_id=parent_id, state="queued", message="queued")
    session.add(job)
    session.flush()
    return job


def get(session: Session, job_id: int) -> JobRow | None:
    """The job row, or None."""
    return session.get(JobRow, job_id, populate_existing=True)


def claim(session: Session, job_id: int, worker: str) -> bool:
    """queued -> running for ``worker``; False when someone else has it or it is finished."""
    now = utcnow()
    stmt = (
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.state == "queued", JobRow.cancel_requested.is_(False))
        .values(
            state="running",
            worker=worker,
            attempts=JobRow.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            message="running",
        )
    )
    return _changed(session, stmt) == 1


def _owned(job_id: int, worker: str) -> Any:
    return (JobRow.id == job_id, JobRow.state == "running", JobRow.worker == worker)


def heartbeat(session: Session, job_id: int, worker: str) -> bool:
    """Refresh the heartbeat; False when the job is no longer ours (re-queued, cancelled)."""
    stmt = update(JobRow).where(*_owned(job_id, worker)).values(heartbeat_at=utcnow())
    return _changed(session, stmt) == 1


def set_progress(session: Session, job_id: int, worker: str, progress: float, message: str) -> bool:
    """Record progress (clamped to 0..1) and a heartbeat; False when the job is no longer ours."""
    values = {"progress": min(max(progress, 0.0), 1.0), "message": message[:2000]}
    stmt = update(JobRow).where(*_owned(job_id, worker)).values(heartbeat_at=utcnow(), **values)
    return _changed(session, stmt) == 1


def finish(
    session: Session,
    job_id: int,
    worker: str | None,
    state: str,
    *,
    message: str,
    error: str | None = None,
    result: dict[str, Any] | None = None,
) -> bool:
    """running (ours) or queued -> a terminal state; False when it already left those states."""
    values: dict[str, Any] = {"state": state, "message": message[:2000], "finished_at": utcnow()}
    values |= {"error": error}
    if state == "succeeded":
        values["progress"] = 1.0
    if result is not None:
        values["result"] = result
    if worker is None:
        where = (JobRow.id == job_id, JobRow.state == "queued")
    else:
        where = _owned(job_id, worker)
    return _changed(session, update(JobRow).where(*where).values(**values)) == 1


def children(session: Session, job_id: int, state: str = "queued") -> Sequence[JobRow]:
    """Jobs waiting on ``job_id``."""
    stmt = select(JobRow).where(JobRow.parent_id == job_id, JobRow.state == state)
    return session.scalars(stmt.order_by(JobRow.id)).all()


def stale_running(session: Session, older_than: datetime) -> Sequence[JobRow]:
    """Running jobs whose worker has not been heard of since ``older_than``."""
    stmt = select(JobRow).where(
        JobRow.state == "running",
        or_(JobRow.heartbeat_at.is_(None), JobRow.heartbeat_at < older_than),
    )
    return session.scalars(stmt.order_by(JobRow.id)).all()


def requeue(session: Session, job: JobRow, reason: str) -> bool:
    """running -> queued, only if nobody touched the row since we read it."""
    stmt = (
        update(JobRow)
        .where(JobRow.id == job.id, JobRow.state == "running", JobRow.worker == job.worker)
        .values(state="queued", worker=None, message=reason, enqueued_at=None)
    )
    return _changed(session, stmt) == 1


def unsent_queued(
    session: Session,
    created_before: datetime,
    resend_before: datetime,
    broker_since: datetime | None = None,
) -> list[int]:
    """Queued jobs that are runnable but were never handed to the transport (or long ago, or
    before ``broker_since``: the broker restarted since and may have lost the message)."""
    lost = JobRow.enqueued_at < broker_since if broker_since is not None else false()
    parent = aliased(JobRow)
    stmt = (
        select(JobRow.id)
        .outerjoin(parent, JobRow.parent_id == parent.id)
        .where(
            JobRow.state == "queued",
            JobRow.cancel_requested.is_(False),
            or_(JobRow.parent_id.is_(None), parent.state.in_(TERMINAL_STATES)),
            or_(
                (JobRow.enqueued_at.is_(None) & (JobRow.created_at < created_before)),
                JobRow.enqueued_at < resend_before,
                lost,
                # sent while its parent still ran, and the parent's finish may have missed it
                (parent.finished_at.is_not(None) & (JobRow.enqueued_at < parent.finished_at)),
            ),
        )
    )
    return list(session.scalars(stmt.order_by(JobRow.id)).all())


def mark_enqueued(session: Session, job_ids: Sequence[int]) -> None:
    """Remember when each job was handed to the transport."""
    if job_ids:
        session.execute(
            update(JobRow)
            .where(JobRow.id.in_(job_ids), JobRow.state == "queued")
            .values(enqueued_at=utcnow())
        )


def request_cancel(session: Session, job_id: int) -> None:
    """Flag a job for cancellation (a running task sees it through ``should_stop``)."""
    session.execute(update(JobRow).where(JobRow.id == job_id).values(cancel_requested=True))


def older_than(seconds: float) -> datetime:
    """``now - seconds`` (UTC)."""
    return utcnow() - timedelta(seconds=seconds)


def active_of_kind(session: Session, kind: str) -> Sequence[JobRow]:
    """The queued or running jobs of ``kind``, newest first."""
    stmt = (
        select(JobRow)
        .where(JobRow.kind == kind, JobRow.state.not_in(TERMINAL_STATES))
        .order_by(JobRow.id.desc())
    )
    return session.scalars(stmt).all()

"""The job runner and reconciler, called directly on SQLite: claims, idempotency, cancellation,
dependent jobs, enqueue-after-commit, and re-queueing of jobs whose worker went silent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from searchsvc.db import migrate
from searchsvc.db.base import utcnow
from searchsvc.db.session import session_scope
from searchsvc.jobs import repository
from searchsvc.jobs.dispatch import set_dispatcher, shutdown_dispatcher
from searchsvc.jobs.reconciler import reconcile
from searchsvc.jobs.runner import execute
from searchsvc.jobs.service import cancel_job, create_job, get_job
from searchsvc.settings import Settings


class Recorder:
    """A transport that only records what it was handed."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    def send(self, kind: str, job_id: int) -> None:
        self.sent.append((kind, job_id))

    def close(self) -> None:
        pass


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[Settings, Recorder]]:
    settings = Settings(data_dir=tmp_path, heartbeat_timeout_s=2, reconcile_interval_s=1)
    migrate.upgrade(settings.database)
    recorder = Recorder()
    set_dispatcher(settings, recorder)
    yield settings, recorder
    shutdown_dispatcher(settings)


def _job(settings: Settings, parent: int | None = None, **params: object) -> int:
    with session_scope(settings.database) as session:
        up = get_job(session, job_id=parent) if parent else None
        job = create_job(session, settings=settings, kind="jobs.selftest", params=params, parent=up)
        return job.id


def _row(settings: Settings, job_id: int) -> dict:
    with session_scope(settings.database) as session:
        job = get_job(session, job_id=job_id)
        return {c: getattr(job, c) for c in ("state", "progress", "attempts", "error", "result")}


def test_enqueued_only_after_commit(env: tuple[Settings, Recorder]) -> None:
    settings, recorder = env
    with pytest.raises(RuntimeError), session_scope(settings.database) as session:
        create_job(session, settings=settings, kind="jobs.selftest", params={})
        assert recorder.sent == []  # not before the commit
        raise RuntimeError("roll back")
    assert recorder.sent == []  # a rolled-back job is never sent
    job_id = _job(settings, steps=1, seconds=0)
    assert recorder.sent == [("jobs.selftest", job_id)]
    with session_scope(settings.database) as session:
        assert get_job(session, job_id=job_id).enqueued_at is not None


def test_runs_once_even_when_delivered_twice(env: tuple[Settings, Recorder]) -> None:
    settings, _ = env
    job_id = _job(settings, steps=2, seconds=0)
    assert execute(job_id, settings) == "succeeded"
    assert execute(job_id, settings) == "skipped"
    row = _row(settings, job_id)
    assert row["state"] == "succeeded" and row["attempts"] == 1 and row["progress"] == 1.0
    assert execute(10_000, settings) == "skipped"  # a missing row is dropped, not an error


def test_failures_are_recorded_with_the_message(env: tuple[Settings, Recorder]) -> None:
    settings, _ = env
    job_id = _job(settings, steps=3, seconds=0, fail_at=1)
    assert execute(job_id, settings) == "failed"
    row = _row(settings, job_id)
    assert row["state"] == "failed" and "failed at step 1 as asked" in row["error"]


def test_children_wait_for_their_parent(env: tuple[Settings, Recorder]) -> None:
    settings, recorder = env
    parent = _job(settings, steps=1, seconds=0)
    child = _job(settings, parent=parent, steps=1, seconds=0)
    assert execute(child, settings) == "skipped"  # parent not done: stays queued
    assert _row(settings, child)["state"] == "queued"
    recorder.sent.clear()
    assert execute(parent, settings) == "succeeded"
    assert recorder.sent == [("jobs.selftest", child)]  # the parent's finish sends it
    assert execute(child, settings) == "succeeded"


def test_a_failed_parent_fails_its_children(env: tuple[Settings, Recorder]) -> None:
    settings, _ = env
    parent = _job(settings, steps=2, seconds=0, fail_at=0)
    child = _job(settings, parent=parent)
    execute(parent, settings)
    row = _row(settings, child)
    assert row["state"] == "failed" and f"job {parent}" in row["error"]


def test_cancelling_a_queued_job(env: tuple[Settings, Recorder]) -> None:
    settings, _ = env
    job_id = _job(settings)
    with session_scope(settings.database) as session:
        assert cancel_job(session, settings=settings, job_id=job_id).state == "cancelled"
    assert execute(job_id, settings) == "skipped"
    assert _row(settings, job_id)["state"] == "cancelled"


def test_unknown_kind_fails_listing_known(env: tuple[Settings, Recorder]) -> None:
    settings, _ = env
    with session_scope(settings.database) as session:
        job = repository.add(session, "no.such.kind", {}, None)
        job_id = job.id
    assert execute(job_id, settings) == "skipped"
    row = _row(settings, job_id)
    assert row["state"] == "failed" and "known:" in row["error"] and "jobs.selftest" in row["error"]


def test_reconciler_requeues_a_silent_running_job(env: tuple[Settings, Recorder]) -> None:
    settings, recorder = env
    job_id = _job(settings)
    with session_scope(settings.database) as session:
        assert repository.claim(session, job_id, "dead-host:1:x")
        job = get_job(session, job_id=job_id)
        job.heartbeat_at = utcnow() - timedelta(seconds=30)
    recorder.sent.clear()
    assert reconcile(settings) == [job_id]
    assert recorder.sent == [("jobs.selftest", job_id)]
    assert _row(settings, job_id)["state"] == "queued"
    assert execute(job_id, settings) == "succeeded"
    assert _row(settings, job_id)["attempts"] == 2
    assert reconcile(settings) == []  # nothing left to do


def test_reconciler_leaves_a_live_job_alone(env: tuple[Settings, Recorder]) -> None:
    settings, _ = env
    job_id = _job(settings)
    with session_scope(settings.database) as session:
        assert repository.claim(session, job_id, "live-host:1:x")
    assert reconcile(settings) == []
    assert reconcile(settings, fresh_process=True) == [job_id]  # embedded start: all are lost

"""Job machinery against a real Celery worker on Redis and PostgreSQL (``jobs.selftest`` jobs):
success, duplicate delivery, cancellation of a running job, and a worker killed mid-job whose
job is re-queued by the next worker's reconciler and finishes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from svc_helpers import Proc, Worker, service_env

from searchsvc.db import migrate
from searchsvc.db.session import session_scope
from searchsvc.jobs.dispatch import get_dispatcher, shutdown_dispatcher
from searchsvc.jobs.service import cancel_job, create_job, get_job
from searchsvc.settings import Settings

pytestmark = pytest.mark.service

TIMEOUT = {"heartbeat_timeout_s": 4, "reconcile_interval_s": 1}


@pytest.fixture
def settings(tmp_path: Path, pg_url: str, redis_url: str) -> Iterator[Settings]:
    s = Settings(data_dir=tmp_path, database_url=pg_url, broker_url=redis_url, **TIMEOUT)
    migrate.upgrade(s.database)
    yield s
    shutdown_dispatcher(s)


def _worker(settings: Settings, procs: list[Proc], name: str) -> Worker:
    env = service_env(
        settings.data_dir,
        database_url=settings.database,
        broker_url=settings.broker_url,
        **TIMEOUT,
    )
    worker = Worker(env, settings.data_dir / f"{name}.log")
    procs.append(worker)
    worker.wait_ready()
    return worker


def _create(settings: Settings, **params: Any) -> int:
    with session_scope(settings.database) as session:
        return create_job(session, settings=settings, kind="jobs.selftest", params=params).id


def _job(settings: Settings, job_id: int) -> Any:
    with session_scope(settings.database) as session:
        return get_job(session, job_id=job_id)


def _until(settings: Settings, job_id: int, ok: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _job(settings, job_id)
        if ok(job):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} stuck: {job.state} {job.message}")


def test_worker_runs_jobs_once_and_cancels(settings: Settings, procs: list[Proc]) -> None:
    _worker(settings, procs, "w1")
    job_id = _create(settings, steps=3, seconds=0.1)
    done = _until(settings, job_id, lambda j: j.state == "succeeded")
    assert done.attempts == 1 and done.progress == 1.0 and done.result["steps"] == 3

    get_dispatcher(settings).send("jobs.selftest", job_id)  # the broker delivers it again
    marker = _create(settings, steps=1, seconds=0)  # runs after the duplicate (one queue, solo)
    _until(settings, marker, lambda j: j.state == "succeeded")
    again = _job(settings, job_id)
    assert again.attempts == 1 and again.finished_at == done.finished_at  # no harm done

    long = _create(settings, steps=200, seconds=0.1)
    _until(settings, long, lambda j: j.state == "running" and j.progress > 0)
    with session_scope(settings.database) as session:
        cancel_job(session, settings=settings, job_id=long)
    stopped = _until(settings, long, lambda j: j.state == "cancelled", timeout=20)
    assert stopped.progress < 0.5


def test_killed_worker_job_is_requeued_and_finishes(settings: Settings, procs: list[Proc]) -> None:
    first = _worker(settings, procs, "w1")
    job_id = _create(settings, steps=25, seconds=0.2)
    running = _until(settings, job_id, lambda j: j.state == "running" and j.progress >= 0.2)
    first.kill()  # SIGKILL: no cleanup, the message stays unacked
    assert _job(settings, job_id).state == "running"  # the row still says so: the worker is gone
    _worker(settings, procs, "w2")  # its reconciler notices the silent heartbeat
    done = _until(settings, job_id, lambda j: j.state == "succeeded", timeout=90)
    assert done.attempts == 2
    assert done.result["worker"] != running.worker

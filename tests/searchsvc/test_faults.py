"""Faults of the stack's own dependencies, on private instances this test starts and stops:

- Redis shut down without saving (``shutdown nosave``) and started again: the jobs that were
  queued but not started are sent again within a minute of it coming back, each runs once;
- PostgreSQL stopped: every endpoint (the dashboard and POST /v1/plans included) answers 503
  with ``Retry-After``; once it is back, the same server answers again by itself, nothing lost.

(A worker killed mid-job: tests/searchsvc/test_jobs_celery.py and test_flow_celery.py.)
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from private_services import PrivatePostgres, PrivateRedis, pg_bin
from svc_helpers import TOKEN, Proc, Server, Worker, service_env

from searchsvc.db import migrate
from searchsvc.db.session import session_scope
from searchsvc.jobs.dispatch import shutdown_dispatcher
from searchsvc.jobs.service import create_job, get_job
from searchsvc.settings import Settings

pytestmark = pytest.mark.service

# a long heartbeat timeout: the old rule (re-send after 10 timeouts) would take 10 minutes
SLOW_HEARTBEAT = {"heartbeat_timeout_s": 60, "reconcile_interval_s": 1}


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server / redis-cli are not installed")
    server = PrivateRedis(tmp_path)
    yield server
    server.close()


def _jobs(settings: Settings, ids: list[int]) -> list[Any]:
    with session_scope(settings.database) as session:
        return [get_job(session, job_id=i) for i in ids]


def test_redis_restart_resends_queued_jobs_once(
    tmp_path: Path, pg_url: str, redis: PrivateRedis, procs: list[Proc]
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=pg_url,
        broker_url=redis.url,
        heartbeat_timeout_s=SLOW_HEARTBEAT["heartbeat_timeout_s"],
        reconcile_interval_s=SLOW_HEARTBEAT["reconcile_interval_s"],
    )
    migrate.upgrade(settings.database)
    env = service_env(tmp_path, database_url=pg_url, broker_url=redis.url, **SLOW_HEARTBEAT)
    worker = Worker(env, tmp_path / "worker.log")
    procs.append(worker)
    worker.wait_ready()
    try:
        busy = {"steps": 30, "seconds": 0.1}  # holds the (solo) worker while Redis restarts
        quick = {"steps": 1, "seconds": 0}
        with session_scope(settings.database) as session:  # sent to Redis after the commit
            ids = [
                create_job(session, settings=settings, kind="jobs.selftest", params=params).id
                for params in [busy] + [quick] * 6
            ]
        deadline = time.monotonic() + 60
        while _jobs(settings, ids[:1])[0].state != "running":
            assert time.monotonic() < deadline, worker.output()
            time.sleep(0.05)
        redis.shutdown_nosave()  # the queued messages are gone
        time.sleep(1.0)
        redis.start()
        back = time.monotonic()
        while any(j.state != "succeeded" for j in _jobs(settings, ids)):
            assert time.monotonic() - back < 60, [(j.id, j.state) for j in _jobs(settings, ids)]
            time.sleep(0.2)
        assert [j.attempts for j in _jobs(settings, ids)] == [1] * len(ids)  # each ran once
    finally:
        shutdown_dispatcher(settings)


# one request per operation that must reach the database (valid, so that it is not refused
# before); every operation of the OpenAPI document is here or in NO_DATABASE
REQUESTS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/v1/models"): {},
    ("POST", "/v1/models"): {"json": {"name": "sam2-micro"}},
    ("GET", "/v1/models/{model_id}"): {},
    ("POST", "/v1/models/{model_id}/profiles"): {"json": {}},
    ("GET", "/v1/profiles/{profile_id}"): {},
    ("GET", "/v1/plans"): {},
    ("POST", "/v1/plans"): {"json": {"model_id": 1, "budget": {"avg_bits": 4}}},
    ("GET", "/v1/plans/{plan_id}"): {},
    ("POST", "/v1/plans/{plan_id}/refine"): {"json": {"steps": 1}},
    ("POST", "/v1/plans/{plan_id}/validate"): {},
    ("GET", "/v1/plans/{plan_id}/validation"): {},
    ("GET", "/v1/plans/{plan_id}/artifact"): {},
    ("POST", "/v1/gate"): {"json": {"plan_id": 1, "max_size_mb": 1}},
    ("GET", "/v1/models/{model_id}/pareto"): {},
    ("POST", "/v1/models/{model_id}/pareto"): {"json": {}},
    ("GET", "/v1/jobs/{job_id}"): {},
    ("DELETE", "/v1/jobs/{job_id}"): {},
    ("POST", "/v1/plans/{plan_id}/exports"): {},
    ("GET", "/v1/plans/{plan_id}/exports"): {},
    ("GET", "/v1/plans/{plan_id}/exports/{export_id}"): {},
    ("GET", "/v1/plans/{plan_id}/exports/{export_id}/download"): {},
    ("GET", "/v1/hardware"): {},
    ("POST", "/v1/hardware"): {"json": {"measure": {"model": "sam2-micro", "repeats": 1}}},
    ("GET", "/v1/hardware/{name}"): {},
    ("GET", "/healthz"): {},
}
NO_DATABASE = {("GET", "/v1/model-specs")}
DASHBOARD = ["/dashboard", "/dashboard/models/1", "/dashboard/plans/1", "/dashboard/jobs"]
DASHBOARD += ["/dashboard/hardware", "/dashboard/hardware/a-measured-table"]


def _operations(client: httpx.Client) -> set[tuple[str, str]]:
    doc = client.get("/openapi.json").json()
    return {(m.upper(), path) for path, ops in doc["paths"].items() for m in ops}


def _url(path: str) -> str:
    for name in ("model_id", "profile_id", "plan_id", "job_id", "export_id"):
        path = path.replace("{" + name + "}", "1")
    return path.replace("{name}", "a-measured-table")


def test_postgres_down_is_503_with_retry_after_and_recovers(
    tmp_path: Path, procs: list[Proc]
) -> None:
    binaries = pg_bin()
    if binaries is None:
        pytest.skip("PostgreSQL's server programs (initdb, pg_ctl) are not installed")
    pg = PrivatePostgres(binaries)
    try:
        url = pg.create_database("bitbudget")
        env = service_env(tmp_path, database_url=url, api_tokens=TOKEN, solve_processes=0)
        server = Server(env, tmp_path / "server.log")
        procs.append(server)
        with server.client(TOKEN) as api:
            assert api.post("/v1/models", json={"name": "sam2-micro"}).status_code == 201
            assert _operations(api) == set(REQUESTS) | NO_DATABASE  # every operation is tried
            pg.stop()
            for (method, path), kw in REQUESTS.items():
                r = api.request(method, _url(path), **kw)
                assert r.status_code == 503, (method, path, r.text)
                assert int(r.headers["retry-after"]) > 0, (method, path)
                assert r.json()["error"]["type"] == "Unavailable", (method, path)
            for page in DASHBOARD:
                r = api.get(page)
                assert r.status_code == 503 and "retry-after" in r.headers, (page, r.text)
                assert "text/html" in r.headers["content-type"]
            assert api.get("/v1/model-specs").status_code == 200
            pg.start()
            deadline = time.monotonic() + 30
            while api.get("/healthz").status_code != 200:  # the same server, not restarted
                assert time.monotonic() < deadline
                time.sleep(0.2)
            assert api.get("/v1/models/1").json()["name"] == "sam2-micro"  # nothing lost
            assert api.get("/v1/plans").status_code == 200
            r = api.post("/v1/plans", json={"model_id": 99, "budget": {"avg_bits": 4}})
            assert r.status_code == 404
            assert api.get("/dashboard").status_code == 200
        assert "Traceback" not in server.output()
    finally:
        pg.close()

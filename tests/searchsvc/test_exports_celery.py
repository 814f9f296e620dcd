"""ONNX export on the multi-machine setup: API + a real Celery worker on Redis and PostgreSQL.
The API queues ``plans.export``; the worker (not the API process) runs it; the zip downloads
from the API with the sha256 the job recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from export_helpers import check_download, solved_plan
from svc_helpers import TOKEN, Server, Worker, service_env, wait_job

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, redis_url: str
) -> Iterator[tuple[httpx.Client, int]]:
    data: Path = tmp_path_factory.mktemp("exports-celery")
    env = service_env(data, database_url=pg_url, broker_url=redis_url, api_tokens=TOKEN)
    env |= {"OMP_NUM_THREADS": "1"}
    server = Server(env, data / "server.log")
    worker = Worker(env, data / "worker.log")
    try:
        worker.wait_ready()
        with server.client(TOKEN) as client:
            yield client, worker.popen.pid
    finally:
        worker.stop()
        server.stop()


def test_export_runs_on_a_celery_worker(api: tuple[httpx.Client, int]) -> None:
    api, worker_pid = api
    plan = solved_plan(api)
    r = api.post(f"/v1/plans/{plan['id']}/exports")
    assert r.status_code == 202, r.text
    job = wait_job(api, r.json()["job"]["id"], timeout=600)
    assert job["state"] == "succeeded", job
    assert job["kind"] == "plans.export"
    assert f":{worker_pid}:" in job["worker"]  # the Celery worker ran it, not the API
    export = api.get(f"/v1/plans/{plan['id']}/exports/{r.json()['export']['id']}").json()
    assert export["status"] == "done"
    check_download(api, export)
    assert api.get(f"/v1/plans/{plan['id']}").json()["export"]["id"] == export["id"]

"""A hierarchical (video) profile on the multi-machine setup (API + a Celery worker on Redis and
PostgreSQL): the job runs on the worker, its image part on the worker's process pool (unit
tasks find their profile by key, and the image part has no row of its own)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TOKEN
from svc_helpers import Server, Worker, service_env, wait_job

pytestmark = [pytest.mark.service, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, redis_url: str
) -> Iterator[tuple[Server, Worker]]:
    data: Path = tmp_path_factory.mktemp("video-celery")
    env = service_env(data, database_url=pg_url, broker_url=redis_url, api_tokens=TOKEN)
    env |= {"OMP_NUM_THREADS": "1"}
    srv = Server(env, data / "server.log")
    worker = Worker(env, data / "worker.log")
    try:
        worker.wait_ready()
        yield srv, worker
    finally:
        worker.stop()
        srv.stop()


def test_video_profile_runs_on_a_celery_worker(server: tuple[Server, Worker]) -> None:
    srv, _ = server
    with srv.client(TOKEN) as api:
        model = api.post("/v1/models", json={"name": "sam2-micro", "image_size": 128})
        assert model.status_code in (200, 201), model.text
        # candidates no other test asks for: the session's PostgreSQL database is shared, and
        # test_video_profile_api may already hold the same profile (a 200 without a job)
        body = {"metric": "fisher_kl", "candidates": ["w8a8", "w6a8"], "images": 2}
        body["video"] = {"clips": 1, "frames": 3}
        r = api.post(f"/v1/models/{model.json()['id']}/profiles", json=body)
        assert r.status_code == 202, r.text
        job = wait_job(api, r.json()["job"]["id"], timeout=600)
        assert job["state"] == "succeeded", job
        profile = api.get(f"/v1/profiles/{r.json()['profile']['id']}").json()
        assert profile["status"] == "ready" and profile["video"] == body["video"]
        assert any(n.startswith("memory_attention.") for n in profile["layers"])

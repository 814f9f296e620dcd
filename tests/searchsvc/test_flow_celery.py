"""The whole flow on the multi-machine setup: API + Celery workers on Redis and PostgreSQL.

Register sam2-micro, POST a budget, follow the job through profile -> solve; the worker is
SIGKILLed during profiling and another one finishes the job without recomputing (or losing) a
finished unit — checked with the profiler's own counters and the unit table.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from svc_helpers import (
    TOKEN,
    Proc,
    Server,
    Worker,
    done_units,
    service_env,
    unit_rows,
    wait_for,
    wait_job,
)

pytestmark = pytest.mark.service

CANDIDATES = ["w8a8", "w4a8", "w4a16"]
SMALL = {"candidates": CANDIDATES, "images": 2}


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, redis_url: str
) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("celery-flow")
    env = service_env(
        data,
        database_url=pg_url,
        broker_url=redis_url,
        api_tokens=TOKEN,
        heartbeat_timeout_s=5,
        reconcile_interval_s=1,
    )
    server = Server(env, data / "server.log")
    procs: list[Proc] = [server]
    yield {"server": server, "env": env, "data": data, "procs": procs}
    for proc in procs:
        proc.stop()


def _worker(stack: dict[str, Any], name: str) -> Worker:
    worker = Worker(stack["env"], stack["data"] / f"{name}.log")
    stack["procs"].append(worker)
    worker.wait_ready()
    return worker


def test_profile_solve_survives_a_killed_worker(stack: dict[str, Any]) -> None:
    server: Server = stack["server"]
    first = _worker(stack, "worker1")
    with server.client(TOKEN) as api:
        model = api.post("/v1/models", json={"name": "sam2-micro"})
        assert model.status_code in (200, 201), model.text
        model_id = model.json()["id"]
        r = api.post("/v1/plans", json={"model_id": model_id, "budget": {"memory_mb": 1.5}} | SMALL)
        assert r.status_code == 202, r.text
        plan, job = r.json()["plan"], r.json()["job"]
        assert plan["status"] == "pending" and job["state"] == "queued" and job["waits_on"]
        assert api.get(f"/v1/jobs/{job['id']}").status_code == 200  # committed before the reply
        profile = api.get(f"/v1/profiles/{plan['profile_id']}").json()
        database, key = stack["env"]["BITBUDGET_DATABASE_URL"], profile["key"]

        wait_for(lambda: len(done_units(database, key)) >= 1)  # one unit stored ...
        first.kill()  # ... then the machine dies mid-profile
        profile_job = api.get(f"/v1/jobs/{job['waits_on']}").json()
        assert profile_job["state"] == "running"
        assert profile_job["units"]["done"] >= 1 and profile_job["units"]["per_worker"]
        before = len(done_units(database, key))

        _worker(stack, "worker2")
        done = wait_job(api, job["id"])
        assert done["state"] == "succeeded", done
        assert done["result"] == {"plan_id": plan["id"], "profile_id": plan["profile_id"]}
        assert api.get(f"/v1/jobs/{job['waits_on']}").json()["attempts"] == 2

        profile = api.get(f"/v1/profiles/{plan['profile_id']}").json()
        assert profile["status"] == "ready"
        # fisher_kl: 2 images x 2 stages (forward/backward, activation terms) = 4 units
        # (the next worker may compute units of the queue before it takes the job over)
        assert profile["stats"]["resumed_units"] >= before
        assert profile["stats"]["resumed_units"] + profile["stats"]["computed_units"] == 4
        rows = unit_rows(database, key)  # nothing recomputed, nothing lost
        assert len(rows) == 4 and all(r["state"] == "done" and r["computed"] == 1 for r in rows)
        assert profile["layers"] and all(
            set(CANDIDATES) <= set(v) for v in profile["layers"].values()
        )

        solved = api.get(f"/v1/plans/{plan['id']}").json()
        assert solved["status"] in ("optimal", "feasible")
        assert solved["random_weights"] is True
        assert solved["usage"]["memory_mb"] <= 1.5
        assert solved["plan"]["format"] == "bitbudget.plan/v1"
        assert set(solved["plan"]["choices"].values()) <= set(CANDIDATES)
        _budgets_reuse_the_profile(api, model_id, plan["id"], profile)


def _budgets_reuse_the_profile(
    api: httpx.Client, model_id: int, plan_id: int, profile: dict[str, Any]
) -> None:
    base = {"model_id": model_id} | SMALL
    same = api.post("/v1/plans", json=base | {"budget": {"memory_mb": 1.5}})
    assert same.status_code == 200 and same.json()["id"] == plan_id
    new = api.post("/v1/plans", json=base | {"budget": {"memory_mb": 1.8}, "solver": "milp"})
    assert new.status_code == 201, new.text  # solved at once: no job, no new profile
    assert new.json()["profile_id"] == profile["id"] and new.json()["usage"]["memory_mb"] <= 1.8
    bad = api.post("/v1/plans", json=base | {"budget": {"memory_mb": 0.01}})
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["type"] == "InfeasibleBudget" and "least achievable" in error["message"]
    assert 0.01 < error["least"]["memory_mb"] < 1.5
    page = api.get("/v1/plans", params={"model_id": model_id, "limit": 1}).json()
    assert page["total"] >= 2 and len(page["items"]) == 1
    front = api.get(
        f"/v1/models/{model_id}/pareto", params={"images": 2, "candidates": "w8a8,w4a8,w4a16"}
    )
    assert front.status_code == 200, front.text
    points = front.json()["points"]
    assert len(points) >= 2 and points[0]["total"] < points[-1]["total"]
    assert points[0]["objective"] > points[-1]["objective"]
    assert api.get(f"/v1/profiles/{profile['id']}").json()["stats"] == profile["stats"]
    health = api.get("/healthz").json()
    assert health["broker"] == "ok" and health["database"] == "ok"


def test_cancel_a_running_profile(stack: dict[str, Any]) -> None:
    server: Server = stack["server"]
    if not any(isinstance(p, Worker) and p.popen.poll() is None for p in stack["procs"]):
        _worker(stack, "worker3")
    with server.client(TOKEN) as api:
        model_id = api.post("/v1/models", json={"name": "sam2-micro"}).json()["id"]
        # exact kl: one unit per layer (~86), so the cancel lands between units; a fisher_kl
        # profile of sam2-micro can finish before the DELETE arrives
        body = {"metric": "kl", "candidates": ["w8a8", "w2a16"], "images": 4}
        r = api.post(f"/v1/models/{model_id}/profiles", json=body)
        assert r.status_code == 202, r.text
        job_id = r.json()["job"]["id"]
        wait_for(lambda: api.get(f"/v1/jobs/{job_id}").json()["state"] == "running")
        cancelled = api.delete(f"/v1/jobs/{job_id}")
        assert cancelled.status_code == 200 and cancelled.json()["cancel_requested"] is True
        final = wait_job(api, job_id, timeout=120)
        assert final["state"] == "cancelled", final
        profile = api.get(f"/v1/profiles/{r.json()['profile']['id']}").json()
        assert profile["status"] == "cancelled"
        assert api.delete(f"/v1/jobs/{job_id}").status_code == 200  # cancelling again is fine

"""Hardware profiles over HTTP against the real API, PostgreSQL, Redis and Celery workers: a
table measured by a worker that consumes only the ``latency`` queue (it records its host), an
upload (201, a taken name 409, a bad table 422 naming the field), the listing with the shipped
estimates, and a plan solved under a latency budget on the measured table whose predicted
latency recomputes exactly from the table."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import pytest
from svc_helpers import Proc, Server, Worker, service_env, wait_job

from solvers.latency_table import check_table, predict_latency

pytestmark = pytest.mark.service

TOKEN = "bb_test_" + "h" * 40
OPTIONS = ["w8a8", "w16a16"]


def _budget(table: dict[str, Any]) -> float:
    cells = table["latency_table"].values()
    least = table["fixed_ms"] + sum(min(c[o]["median_ms"] for o in OPTIONS) for c in cells)
    most = table["fixed_ms"] + sum(max(c[o]["median_ms"] for o in OPTIONS) for c in cells)
    return least + 0.4 * (most - least)


def test_measure_upload_list_and_plan(
    tmp_path: Path, pg_url: str, redis_url: str, procs: list[Proc]
) -> None:
    base = {"database_url": pg_url, "broker_url": redis_url, "api_tokens": TOKEN}
    server = Server(service_env(tmp_path, **base), tmp_path / "server.log")
    procs.append(server)
    jobs = service_env(tmp_path / "w1", **base, worker_queues="bitbudget,profile-units")
    device = service_env(tmp_path / "w2", **base, worker_queues="latency")
    for env, name in ((jobs, "jobs.log"), (device, "device.log")):
        Path(env["BITBUDGET_DATA_DIR"]).mkdir()
        worker = Worker(env, tmp_path / name)
        procs.append(worker)
        worker.wait_ready()
    with server.client(TOKEN) as api:
        measure = {"model": "sam2-micro", "runtime": "torch", "candidates": ["w8a8"]}
        measure |= {"repeats": 1, "warmup": 0}
        r = api.post("/v1/hardware", json={"name": "micro-torch", "measure": measure})
        assert r.status_code == 202, r.text
        assert r.json()["hardware"]["status"] == "measuring"
        job = wait_job(api, r.json()["job"]["id"], timeout=400)
        assert job["state"] == "succeeded", job
        assert "host" in job["result"]
        got = api.get("/v1/hardware/micro-torch").json()
        assert got["status"] == "ready" and got["kind"] == "measured"
        assert got["host"] == platform.node()  # the measuring worker's machine
        table = got["table"]
        check_table(table, None, OPTIONS)
        assert table["measured"]["runtime"] == "torch" and table["name"] == "micro-torch"
        assert (tmp_path / "w2" / "hardware").is_dir()  # measured by the latency worker

        r = api.post("/v1/hardware", json={"name": "micro-upload", "table": table})
        assert r.status_code == 201, r.text
        assert (
            api.post("/v1/hardware", json={"name": "micro-upload", "table": table}).status_code
            == 409
        )
        bad = dict(
            table, latency_table={"x": {"w8a8": {"median_ms": -1, "spread": 0, "repeats": 1}}}
        )
        r = api.post("/v1/hardware", json={"name": "bad", "table": bad})
        assert r.status_code == 422 and "latency_table.x.w8a8.median_ms" in r.text, r.text
        r = api.post("/v1/hardware", json={"name": "both"})
        assert r.status_code == 422 and "exactly one of table" in r.text

        items = {x["name"]: x for x in api.get("/v1/hardware").json()["items"]}
        assert items["micro-torch"]["kind"] == "measured" and "micro-upload" in items
        assert items["nvidia_t4"]["kind"] == "estimate"
        assert api.get("/v1/hardware/nope").status_code == 404

        model_id = api.post("/v1/models", json={"name": "sam2-micro"}).json()["id"]
        budget = _budget(table)
        body = {"model_id": model_id, "hardware": "micro-torch", "budget": {"latency_ms": budget}}
        r = api.post("/v1/plans", json=body | {"candidates": OPTIONS, "images": 2})
        assert r.status_code in (201, 202), r.text
        if r.status_code == 202:
            assert wait_job(api, r.json()["job"]["id"], timeout=400)["state"] == "succeeded"
        plan = api.get(
            f"/v1/plans/{r.json()['plan']['id'] if r.status_code == 202 else r.json()['id']}"
        ).json()
        assert plan["status"] in ("optimal", "feasible"), plan
        assert plan["hardware"] == "micro-torch"
        predicted = plan["totals"]["latency_ms"]
        assert predicted <= budget * (1 + 1e-9)
        assert predicted == pytest.approx(
            predict_latency(table, plan["plan"]["choices"]), rel=1e-12
        )

        path = f"/v1/models/{model_id}/pareto"
        query = {"resource": "latency_ms", "hardware": "micro-torch", "images": 2}
        front = api.get(path, params=query | {"candidates": ",".join(OPTIONS)})
        assert front.status_code == 200, front.text
        for point in front.json()["points"]:  # the fast front on the stored table, exactly
            assert point["total"] == pytest.approx(
                predict_latency(table, point["choices"]), rel=1e-9
            )

        body["budget"]["hardware"] = "nvidia_t4"
        r = api.post("/v1/plans", json=body)
        assert r.status_code == 422 and "differ" in r.text
        r = api.post(
            "/v1/plans",
            json={"model_id": model_id, "hardware": "nope", "budget": {"latency_ms": 1}},
        )
        assert (
            r.status_code == 422 and "unknown hardware 'nope'" in r.text and "micro-torch" in r.text
        )

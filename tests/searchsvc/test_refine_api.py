"""LSC refinement over HTTP (a real ``bitbudget serve`` on PostgreSQL, in-process jobs): a solved
plan is refined by ``POST /v1/plans/{id}/refine`` (202 + job); the plan resource then shows the
refinement with fidelity before / after; asking again returns it (200); bad input is a 4xx; the
``bitbudget refine --plan-id`` CLI reads the same database."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from svc_helpers import TOKEN, Server, service_env, wait_job

pytestmark = pytest.mark.service

REFINE = {"steps": 2, "images": 2}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("refine")


@pytest.fixture(scope="module")
def env(data_dir: Path, pg_url: str) -> dict[str, str]:
    return service_env(data_dir, database_url=pg_url, api_tokens=TOKEN) | {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def api(env: dict[str, str], data_dir: Path) -> Iterator[httpx.Client]:
    srv = Server(env, data_dir / "server.log")
    with srv.client(TOKEN) as client:
        yield client
    srv.stop()


@pytest.fixture(scope="module")
def solved_plan(api: httpx.Client) -> dict[str, Any]:
    r = api.post("/v1/models", json={"name": "sam2-micro", "image_size": 256})
    assert r.status_code in (200, 201), r.text
    body = {"model_id": r.json()["id"], "budget": {"avg_bits": 3.5}}
    body |= {"candidates": ["w4a8", "w3a8"], "images": 2}
    r = api.post("/v1/plans", json=body)
    if r.status_code == 202:
        assert wait_job(api, r.json()["job"]["id"])["state"] == "succeeded"
        plan_id = r.json()["plan"]["id"]
    else:
        assert r.status_code in (200, 201), r.text
        plan_id = r.json()["id"]
    plan = api.get(f"/v1/plans/{plan_id}").json()
    assert plan["status"] in ("optimal", "feasible") and plan["refinement"] is None
    return plan


def test_refine_over_http(api: httpx.Client, solved_plan: dict[str, Any]) -> None:
    plan_id = solved_plan["id"]
    r = api.post(f"/v1/plans/{plan_id}/refine", json=REFINE)
    assert r.status_code == 202, r.text
    job = r.json()["job"]
    assert job["kind"] == "plans.refine" and r.json()["refinement"]["status"] == "queued"
    again = api.post(f"/v1/plans/{plan_id}/refine", json=REFINE)  # same job while it runs
    assert again.status_code in (200, 202) and again.json()["refinement"]["job_id"] == job["id"]
    assert wait_job(api, job["id"])["state"] == "succeeded"
    plan = api.get(f"/v1/plans/{plan_id}").json()
    ref = plan["refinement"]
    assert ref["status"] == "done" and ref["steps"] == 2
    for side in ("before", "after"):
        assert 0 <= ref[side]["iou"] <= 1 and ref[side]["masks"] > 0
    assert ref["clipping"]["bytes"] > 0 and len(ref["clipping"]["sha256"]) == 64
    assert ref["artifact"]["measured_bytes"] > 0
    assert len(ref["loss"]["history"]) == 2
    done = api.post(f"/v1/plans/{plan_id}/refine", json=REFINE)
    assert done.status_code == 200 and done.json()["job"]["id"] == job["id"]
    # a validation after the refinement measures and packs the refined model, before and after
    v = api.post(f"/v1/plans/{plan_id}/validate")
    assert v.status_code == 202, v.text
    assert wait_job(api, v.json()["job"]["id"])["state"] == "succeeded"
    doc = api.get(f"/v1/plans/{plan_id}/validation").json()["validation"]
    assert doc["refinement"]["method"] == "lsc" and doc["metrics"] == doc["refinement"]["after"]
    assert 0 <= doc["refinement"]["before"]["iou"] <= 1
    again = api.post(f"/v1/plans/{plan_id}/validate")  # it covers the refinement now
    assert again.status_code == 200, again.text


def test_refine_bad_input(api: httpx.Client, solved_plan: dict[str, Any]) -> None:
    plan_id = solved_plan["id"]
    assert api.post(f"/v1/plans/{plan_id}/refine", json={"steps": 0}).status_code == 422
    assert api.post(f"/v1/plans/{plan_id}/refine", json={"steps": 1, "x": 1}).status_code == 422
    assert api.post("/v1/plans/999999/refine", json={"steps": 1}).status_code == 404


def test_refine_cli_plan_id(env: dict[str, str], solved_plan: dict[str, Any]) -> None:
    cli = [sys.executable, "-m", "searchsvc.cli"]
    args = [*cli, "refine", "--plan-id", str(solved_plan["id"]), "--steps", "2", "--images", "2"]
    r = subprocess.run([*args, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["status"] == "done" and doc["plan_id"] == solved_plan["id"]
    bad = subprocess.run(
        [*cli, "refine", "--plan-id", "999999", "--steps", "2"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "plan 999999 does not exist" in bad.stderr

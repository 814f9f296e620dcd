"""Validation over HTTP (a real ``bitbudget serve`` on PostgreSQL, in-process jobs): ``"validate":
true`` chains ``plans.validate`` after solving; the plan carries its validation; the artifact
downloads; ``POST /v1/gate`` checks it; asking again or re-running the task changes nothing."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from svc_helpers import TOKEN, Server, service_env, wait_job

pytestmark = pytest.mark.service

CANDIDATES = ["w8a8", "w4a8"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("validation")


@pytest.fixture(scope="module")
def server(data_dir: Path, pg_url: str) -> Iterator[Server]:
    env = service_env(data_dir, database_url=pg_url, api_tokens=TOKEN) | {"OMP_NUM_THREADS": "1"}
    srv = Server(env, data_dir / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client(TOKEN) as client:
        yield client


@pytest.fixture(scope="module")
def model_id(api: httpx.Client) -> int:
    r = api.post("/v1/models", json={"name": "sam2-micro", "image_size": 256})
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


def _body(model_id: int, avg_bits: float, validate: bool) -> dict[str, Any]:
    budget = {"avg_bits": avg_bits}
    return {"model_id": model_id, "budget": budget, "candidates": CANDIDATES, "images": 2} | {
        "validate": validate
    }


def _validated(api: httpx.Client, plan_id: int, timeout: float = 300) -> dict[str, Any]:
    """Wait until the plan's validation has finished; returns the plan resource."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan = api.get(f"/v1/plans/{plan_id}").json()
        validation = plan.get("validation")
        if validation is not None and validation["status"] not in ("pending", "running"):
            return plan
        time.sleep(0.5)
    raise AssertionError(f"plan {plan_id} was not validated: {plan}")


@pytest.fixture(scope="module")
def validated_plan(api: httpx.Client, model_id: int) -> dict[str, Any]:
    r = api.post("/v1/plans", json=_body(model_id, 6, True))
    assert r.status_code == 202, r.text  # no profile yet: profile -> solve -> validate
    plan_id = r.json()["plan"]["id"]
    seen = [r.json()["plan"]["validation_status"]]  # asked for: queued from the start
    deadline = time.monotonic() + 300
    while seen[-1] not in ("passed", "failed", "error", "cancelled"):
        assert time.monotonic() < deadline, seen
        status = api.get(f"/v1/plans/{plan_id}").json()["validation_status"]
        if status != seen[-1]:
            seen.append(status)
        time.sleep(0.05)
    order = ["queued", "running", "passed", "failed"]
    assert seen[0] == "queued" and seen[-1] in ("passed", "failed"), seen
    assert [order.index(s) for s in seen] == sorted(order.index(s) for s in seen), seen
    assert wait_job(api, r.json()["job"]["id"])["state"] == "succeeded"
    return _validated(api, plan_id)


def test_validate_true_chains_validation(validated_plan: dict[str, Any]) -> None:
    plan = validated_plan
    assert plan["validate"] is True and plan["validation_status"] == "passed"
    validation = plan["validation"]
    assert validation["status"] == "passed" and validation["passed"] is True
    doc = validation["validation"]
    assert doc["format"] == "bitbudget.validation/v1" and doc["random_weights"] is True
    assert doc["size"]["relative_error"] <= 0.005
    assert doc["size"]["predicted_bytes"] == plan["plan"]["totals"]["memory_bytes"]
    assert doc["plan"]["predicted_loss"] == plan["objective"]
    assert 0 <= doc["metrics"]["iou"] <= 1 and doc["metrics"]["masks"] > 0


def test_artifact_downloads(api: httpx.Client, validated_plan: dict[str, Any]) -> None:
    plan_id, validation = validated_plan["id"], validated_plan["validation"]
    r = api.get(f"/v1/plans/{plan_id}/artifact")
    assert r.status_code == 200 and r.headers["content-type"] == "application/octet-stream"
    assert f"plan-{plan_id}.safetensors" in r.headers["content-disposition"]
    body = r.content
    assert len(body) == validation["artifact"]["file_bytes"]
    assert hashlib.sha256(body).hexdigest() == validation["artifact"]["sha256"]
    (header_len,) = struct.unpack("<Q", body[:8])
    header = json.loads(body[8 : 8 + header_len])
    assert header["__metadata__"]["format"] == "bitbudget.artifact/v1"
    measured = validation["validation"]["size"]["measured_bytes"]
    assert len(body) - 8 - header_len == measured == int(r.headers["x-bitbudget-tensor-bytes"])


def test_gate_over_http(api: httpx.Client, validated_plan: dict[str, Any]) -> None:
    plan_id = validated_plan["id"]
    measured_mb = validated_plan["validation"]["validation"]["size"]["measured_bytes"] / 1e6
    ok = api.post("/v1/gate", json={"plan_id": plan_id, "max_size_mb": 2 * measured_mb})
    assert ok.status_code == 200 and ok.json()["passed"] is True, ok.text
    assert [c["name"] for c in ok.json()["checks"]] == ["size", "size-prediction"]
    body = {"plan_id": plan_id, "max_size_mb": measured_mb / 2, "min_iou": 1.0, "max_kl": 1.0}
    bad = api.post("/v1/gate", json=body).json()
    assert bad["passed"] is False and bad["random_weights"] is True
    assert [c["passed"] for c in bad["checks"]][:2] == [False, True]
    assert bad["checks"][0]["line"].startswith("FAIL size ")
    junit = api.post("/v1/gate", params={"format": "junit"}, json=body)
    assert junit.headers["content-type"].startswith("application/xml")
    assert 'failures="' in junit.text and "<testcase" in junit.text
    inline = {"validation": validated_plan["validation"]["validation"], "max_size_mb": 100}
    assert api.post("/v1/gate", json=inline).json()["passed"] is True
    both = api.post("/v1/gate", json=inline | {"plan_id": plan_id}).json()
    assert "exactly one of plan_id or validation" in both["error"]["message"]
    missing = api.post("/v1/gate", json={"plan_id": 999999, "max_size_mb": 1})
    assert missing.status_code == 404


def test_asking_again_changes_nothing(api: httpx.Client, validated_plan: dict[str, Any]) -> None:
    plan_id = validated_plan["id"]
    again = api.post(f"/v1/plans/{plan_id}/validate")
    assert again.status_code == 200, again.text
    assert again.json()["validation"]["id"] == validated_plan["validation"]["id"]


def test_task_run_twice_does_no_harm(
    validated_plan: dict[str, Any], pg_url: str, data_dir: Path
) -> None:
    from searchsvc.jobs.context import JobContext
    from searchsvc.settings import Settings
    from searchsvc.validation.tasks import run_validate_job

    validation = validated_plan["validation"]
    settings = Settings(data_dir=data_dir, database_url=pg_url)
    artifact = settings.artifacts / "plans" / f"plan-{validated_plan['id']}.safetensors"
    before = artifact.stat().st_mtime_ns
    params = {"plan_id": validated_plan["id"], "validation_id": validation["id"]}
    ctx = JobContext(validation["job_id"], "plans.validate", params, "test", settings)
    assert run_validate_job(ctx) == params  # finished: nothing recomputed
    assert artifact.stat().st_mtime_ns == before


def test_validate_a_plan_later(api: httpx.Client, model_id: int, validated_plan: Any) -> None:
    r = api.post("/v1/plans", json=_body(model_id, 5, False))
    assert r.status_code == 201, r.text  # the profile exists: solved at once
    plan = r.json()
    assert plan["validation_status"] == "not_requested" and plan["validation"] is None
    missing = api.get(f"/v1/plans/{plan['id']}/artifact")
    assert missing.status_code == 404 and "/validate" in missing.json()["error"]["message"]
    early = api.post("/v1/gate", json={"plan_id": plan["id"], "max_size_mb": 10})
    assert early.status_code == 409 and "no validation" in early.json()["error"]["message"]
    with httpx.Client(base_url=str(api.base_url)) as anonymous:
        assert anonymous.post(f"/v1/plans/{plan['id']}/validate").status_code == 401
    queued = api.post(f"/v1/plans/{plan['id']}/validate")
    assert queued.status_code == 202, queued.text
    assert wait_job(api, queued.json()["job"]["id"])["state"] == "succeeded"
    done = _validated(api, plan["id"])
    assert done["validation_status"] == "passed" and done["validate"] is True
    assert api.get(f"/v1/plans/{plan['id']}/artifact").status_code == 200
    assert api.get("/v1/plans/999999/artifact").status_code == 404


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "searchsvc.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_cli_against_the_server(server: Server, validated_plan: dict[str, Any]) -> None:
    plan_id, size = str(validated_plan["id"]), validated_plan["validation"]["validation"]["size"]
    remote = ("--plan-id", plan_id, "--server", server.base)
    ok = _cli("gate", *remote, "--max-size-mb", f"{2 * size['measured_bytes'] / 1e6:.3f}")
    assert ok.returncode == 0, ok.stderr
    assert [line.split()[:2] for line in ok.stdout.splitlines()] == [
        ["PASS", "size"],
        ["PASS", "size-prediction"],
    ]
    bad = _cli("gate", *remote, "--max-size-mb", "0.001", "--min-iou", "1")
    assert bad.returncode == 1 and bad.stdout.startswith("FAIL size "), bad.stdout
    shown = _cli("validate", *remote, "--json")
    assert shown.returncode == 0 and json.loads(shown.stdout)["size"] == size
    gone = _cli("gate", "--plan-id", "999999", "--server", server.base, "--max-size-mb", "1")
    assert gone.returncode == 2 and "does not exist" in gone.stderr
    assert len(gone.stderr.strip().splitlines()) == 1
    down = _cli(
        "gate", "--plan-id", plan_id, "--server", "http://127.0.0.1:9", "--max-size-mb", "1"
    )
    assert down.returncode == 2 and "cannot reach" in down.stderr


def test_readme_gate_line_on_a_plan_from_the_api(
    api: httpx.Client, validated_plan: dict[str, Any], tmp_path: Path
) -> None:
    """README: save the plan from GET /v1/plans/{id}, then run the gate line as written."""
    resource = api.get(f"/v1/plans/{validated_plan['id']}").json()
    assert resource["model"]["name"] == "sam2-micro" and resource["model"]["weights_hash"]
    assert resource["plan"]["model"] == resource["model"]
    (tmp_path / "plan.json").write_text(json.dumps(resource))
    readme = "bitbudget gate --plan plan.json --max-size-mb 2 --min-iou 0.9 --junit gate.xml"
    cmd = [sys.executable, "-m", "searchsvc.cli", *readme.split()[1:]]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert [line.split()[:2] for line in ok.stdout.splitlines()][:2] == [
        ["PASS", "size"], ["PASS", "size-prediction"]
    ]  # fmt: skip
    assert "<testcase" in (tmp_path / "gate.xml").read_text()

    resource["model"]["weights_hash"] = "0" * 64  # a plan made for other weights is refused
    resource["plan"]["model"]["weights_hash"] = "0" * 64
    (tmp_path / "other.json").write_text(json.dumps(resource))
    other = subprocess.run(
        [*cmd[:4], "--plan", "other.json", "--max-size-mb", "2"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert other.returncode == 2 and "made for weights 000000000000" in other.stderr
    assert len(other.stderr.strip().splitlines()) == 1


def test_gate_401_says_how_to_pass_a_token(
    server: Server, api: httpx.Client, model_id: int
) -> None:
    r = api.post("/v1/plans", json=_body(model_id, 7, False))  # solved, not validated
    assert r.status_code in (200, 201), r.text
    remote = ("--plan-id", str(r.json()["id"]), "--server", server.base, "--max-size-mb", "2")
    out = _cli("gate", *remote)  # it must ask for a validation: a write
    assert out.returncode == 2 and "HTTP 401" in out.stderr, out.stderr
    assert "--token" in out.stderr and "BITBUDGET_TOKEN" in out.stderr

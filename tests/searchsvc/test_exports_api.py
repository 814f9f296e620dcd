"""ONNX export over HTTP (a real ``bitbudget serve`` on PostgreSQL, in-process jobs): a solved
plan is exported by ``POST /v1/plans/{id}/exports`` (202 + job ``plans.export``); the plan
resource shows the export; the zip downloads with its sha256; asking again returns it (200); a
plan ONNX cannot express is a 422 with the CLI's line; ``"runtime": "onnxruntime"`` validates
the export in ONNX Runtime, and the gate weighs its files (``max_file_mb``)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import TOKEN
from export_helpers import check_download, solved_plan
from svc_helpers import Server, service_env, wait_job

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("exports")


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
def plan(api: httpx.Client) -> dict[str, Any]:
    return solved_plan(api)


@pytest.fixture(scope="module")
def exported(api: httpx.Client, plan: dict[str, Any]) -> dict[str, Any]:
    """The plan exported through the API: the finished export resource."""
    assert plan["export"] is None
    r = api.post(f"/v1/plans/{plan['id']}/exports")
    assert r.status_code == 202, r.text
    export, job = r.json()["export"], r.json()["job"]
    assert job["kind"] == "plans.export" and export["status"] == "queued"
    assert r.headers["location"] == f"/v1/plans/{plan['id']}/exports/{export['id']}"
    again = api.post(f"/v1/plans/{plan['id']}/exports")  # the same export while it runs
    assert again.json()["export"]["id"] == export["id"]
    assert again.json()["job"]["id"] == job["id"]
    done = wait_job(api, job["id"], timeout=600)
    assert done["state"] == "succeeded", done
    assert done["progress"] == 1.0 and done["result"]["artifact_id"] == export["id"]
    return api.get(f"/v1/plans/{plan['id']}/exports/{export['id']}").json()


def test_export_round_trip(api: httpx.Client, plan: dict[str, Any], exported: Any) -> None:
    assert exported["status"] == "done" and exported["error"] is None
    assert exported["url"] == f"/v1/plans/{plan['id']}/exports/{exported['id']}/download"
    shown = api.get(f"/v1/plans/{plan['id']}").json()["export"]
    assert shown["id"] == exported["id"] and shown["status"] == "done"
    assert shown["url"] == exported["url"] and shown["sha256"] == exported["sha256"]
    page = api.get(f"/v1/plans/{plan['id']}/exports").json()
    assert page["total"] == 1 and page["items"][0]["id"] == exported["id"]
    members = check_download(api, exported)
    manifest = json.loads(members["manifest.json"])
    assert manifest == exported["manifest"]
    assert manifest["random_weights"] is True
    again = api.post(f"/v1/plans/{plan['id']}/exports")  # done: the same one, 200
    assert again.status_code == 200 and again.json()["export"]["id"] == exported["id"]


def test_export_errors(api: httpx.Client, plan: dict[str, Any], exported: Any) -> None:
    assert api.post("/v1/plans/999999/exports").status_code == 404
    assert api.get("/v1/plans/999999/exports").status_code == 404
    missing = api.get(f"/v1/plans/{plan['id']}/exports/999999")
    assert missing.status_code == 404 and "has no export 999999" in missing.text
    assert api.get(f"/v1/plans/{plan['id']}/exports/999999/download").status_code == 404
    with httpx.Client(base_url=str(api.base_url)) as anonymous:
        assert anonymous.post(f"/v1/plans/{plan['id']}/exports").status_code == 401
        assert anonymous.get(exported["url"]).status_code == 200  # reads need no token


def test_task_run_twice_does_no_harm(plan: Any, exported: Any, pg_url: str, data_dir: Path) -> None:
    from searchsvc.exports.tasks import run_export_job
    from searchsvc.jobs.context import JobContext
    from searchsvc.settings import Settings

    settings = Settings(data_dir=data_dir, database_url=pg_url)
    zipped = settings.artifacts / "exports" / f"plan-{plan['id']}-export-{exported['id']}.zip"
    before = zipped.stat().st_mtime_ns
    params = {"plan_id": plan["id"], "artifact_id": exported["id"]}
    ctx = JobContext(exported["job_id"], "plans.export", params, "test", settings)
    assert run_export_job(ctx) == params  # finished: nothing written again
    assert zipped.stat().st_mtime_ns == before


def test_validation_in_onnxruntime(api: httpx.Client, plan: Any, exported: Any) -> None:
    r = api.post(f"/v1/plans/{plan['id']}/validate", json={"runtime": "onnxruntime"})
    assert r.status_code == 202, r.text
    assert r.json()["validation"]["request"]["runtime"] == "onnxruntime"
    assert wait_job(api, r.json()["job"]["id"], timeout=600)["state"] == "succeeded"
    validation = api.get(f"/v1/plans/{plan['id']}/validation").json()
    doc = validation["validation"]
    ort = doc["runtime"]
    assert ort["name"] == "onnxruntime" and ort["version"]
    assert doc["metrics"] == ort["metrics"] and ort["metrics"]["masks"] > 0
    fq = ort["fake_quant"]
    assert ort["difference"]["iou"] == pytest.approx(ort["metrics"]["iou"] - fq["iou"])
    assert 0.95 <= ort["vs_fake_quant"]["iou"] <= 1  # a w8a8 / w4a16 mix
    # it ran the plan's own export: the files that download
    files = ort["export"]["files"]
    assert ort["export"]["file_bytes"] == exported["file_bytes"]
    assert set(files) == {"image_encoder.onnx", "mask_decoder.onnx", "manifest.json"}
    assert validation["fidelity"]["runtime"]["iou_vs_fake_quant"] == ort["vs_fake_quant"]["iou"]
    # a PyTorch validation is covered by it; asking for ONNX Runtime again changes nothing
    again = api.post(f"/v1/plans/{plan['id']}/validate", json={"runtime": "onnxruntime"})
    assert again.status_code == 200 and again.json()["validation"]["id"] == validation["id"]
    bad = api.post(f"/v1/plans/{plan['id']}/validate", json={"runtime": "tvm"})
    assert bad.status_code == 422 and "runtime" in bad.text


def test_gate_weighs_the_exported_files(api: httpx.Client, plan: Any, exported: Any) -> None:
    mb = exported["file_bytes"] / 1e6
    body = {"plan_id": plan["id"], "max_size_mb": 100}
    ok = api.post("/v1/gate", json=body | {"max_file_mb": 2 * mb}).json()
    assert ok["passed"] is True, ok
    check = ok["checks"][-1]
    assert check["name"] == "file-size" and check["value"] == pytest.approx(mb)
    over = api.post("/v1/gate", json=body | {"max_file_mb": mb / 2}).json()
    assert over["passed"] is False and over["checks"][-1]["line"].startswith("FAIL file-size")
    assert api.post("/v1/gate", json=body | {"max_file_mb": 0}).status_code == 422


def test_cli_validate_against_the_server(server: Server, plan: Any, exported: Any) -> None:
    remote = ["--plan-id", str(plan["id"]), "--server", server.base]
    cmd = [sys.executable, "-m", "searchsvc.cli"]
    shown = subprocess.run(
        [*cmd, "validate", *remote, "--runtime", "onnxruntime", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["runtime"]["name"] == "onnxruntime"
    gated = subprocess.run(
        [*cmd, "gate", *remote, "--max-size-mb", "100", "--max-file-mb", "100"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert gated.returncode == 0, gated.stdout + gated.stderr
    assert gated.stdout.splitlines()[-1].startswith("PASS file-size")


def test_unexpressible_plan_is_a_422_with_the_cli_line(
    api: httpx.Client, pg_url: str, tmp_path: Path
) -> None:
    """A plan ONNX cannot express (PTQ4SAM AGQ's log2 levels on a quantized post-softmax
    attention matmul) is refused at once, with the line ``bitbudget export`` prints for the same
    plan, and nothing is queued or written."""
    from searchsvc.db.session import session_scope
    from searchsvc.db.tables import ModelRow, PlanRow

    other = solved_plan(api, avg_bits=5)
    with session_scope(pg_url) as session:
        row = session.get(PlanRow, other["id"])
        model = session.get(ModelRow, other["model_id"])
        assert row is not None and row.doc is not None and model is not None
        site = next(x["name"] for x in model.inventory["layers"] if x["kind"] == "matmul_sv")
        choices = {**row.doc["choices"], site: "w8a8"}
        row.doc = {**row.doc, "choices": choices, "options": {"agq": True}}
    r = api.post(f"/v1/plans/{other['id']}/exports")
    assert r.status_code == 422, r.text
    message = r.json()["error"]["message"]
    assert site in message and "agq" in message
    assert api.get(f"/v1/plans/{other['id']}/exports").json()["total"] == 0
    doc = api.get(f"/v1/plans/{other['id']}").json()["plan"]
    (tmp_path / "plan.json").write_text(json.dumps(doc))
    out = tmp_path / "out"
    cli = subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", "export", str(tmp_path / "plan.json"),
         "--model", "sam2-micro", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 2 and "Traceback" not in cli.stderr
    assert cli.stderr.strip().splitlines() == [f"error: {message}"]
    assert not out.exists() or not any(out.iterdir())


def test_a_refined_plan_exports_its_learned_clipping(
    api: httpx.Client, plan: dict[str, Any], exported: dict[str, Any]
) -> None:
    """After an LSC refinement the plan's export is stale: POST exports again carries the
    learned clipping, and a validation in ONNX Runtime measures that export (runs last: it
    changes the plan the tests above share)."""
    refine = api.post(f"/v1/plans/{plan['id']}/refine", json={"steps": 2, "images": 2})
    assert refine.status_code == 202, refine.text
    assert wait_job(api, refine.json()["job"]["id"], timeout=600)["state"] == "succeeded"
    r = api.post(f"/v1/plans/{plan['id']}/exports")
    assert r.status_code == 202, r.text  # not the export made before the refinement
    assert r.json()["export"]["id"] != exported["id"]
    assert wait_job(api, r.json()["job"]["id"], timeout=600)["state"] == "succeeded"
    export = api.get(f"/v1/plans/{plan['id']}/exports/{r.json()['export']['id']}").json()
    assert export["status"] == "done" and export["clipping"], export
    assert exported["clipping"] is None
    check_download(api, export)
    v = api.post(f"/v1/plans/{plan['id']}/validate", json={"runtime": "onnxruntime"})
    assert v.status_code == 202, v.text  # the refinement is not measured yet
    assert wait_job(api, v.json()["job"]["id"], timeout=600)["state"] == "succeeded"
    doc = api.get(f"/v1/plans/{plan['id']}/validation").json()["validation"]
    assert doc["refinement"]["clipping"] == export["clipping"]
    assert doc["runtime"]["export"]["file_bytes"] == export["file_bytes"]
    assert 0.9 <= doc["runtime"]["vs_fake_quant"]["iou"] <= 1

"""Attention sites in plans through the service (a real ``bitbudget serve --dev``) and the CLI:
``"attention": true`` on POST /v1/plans and /v1/profiles, the dashboard heatmap, the plan's sites
applied by ``bitbudget quantize --plan … --agq --big``, and bad option ids (422 / exit 2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from svc_helpers import Server, service_env, wait_job

pytestmark = pytest.mark.service

SITE = re.compile(r"\.(qk|sv)_matmul$")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    data = tmp_path_factory.mktemp("attn-api")
    server = Server(service_env(data), data / "server.log", "--dev")
    try:
        token = re.search(r"token:\s+(bb_\S+)", server.output())
        assert token, server.output()
        with server.client(token.group(1)) as client:
            yield client
    finally:
        server.stop()


@pytest.fixture(scope="module")
def model_id(api: httpx.Client) -> int:
    r = api.post("/v1/models", json={"name": "sam2-micro"})
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


@pytest.fixture(scope="module")
def solved(api: httpx.Client, model_id: int) -> dict[str, Any]:
    body = {
        "model_id": model_id,
        "budget": {"avg_bits": 6},
        "candidates": ["w8a8", "w4a8"],
        "images": 1,
        "attention": True,
        "attention_options": ["a8", "a4", "a4log"],
    }
    r = api.post("/v1/plans", json=body)
    assert r.status_code == 202, r.text
    job = wait_job(api, r.json()["job"]["id"], timeout=600)
    assert job["state"] == "succeeded", job
    plan = api.get(f"/v1/plans/{r.json()['plan']['id']}").json()
    assert plan["status"] in ("optimal", "feasible"), plan
    return dict(plan)


def test_plan_with_attention_sites(api: httpx.Client, solved: dict[str, Any]) -> None:
    choices = solved["plan"]["choices"]
    sites = {n: c for n, c in choices.items() if SITE.search(n)}
    assert len(sites) == 26  # sam2-micro: 13 attentions off the memory path, two sites each
    assert not any(n.startswith("memory_attention") for n in sites)
    assert set(sites.values()) <= {"a8", "a4", "a4log"}
    assert all(not c.endswith("log") for n, c in sites.items() if n.endswith("qk_matmul"))
    profile = api.get(f"/v1/profiles/{solved['profile_id']}").json()
    assert profile["status"] == "ready"
    page = api.get(f"/dashboard/plans/{solved['id']}")
    assert page.status_code == 200
    heat = re.search(r'id="heatmap-data">(.*?)</script>', page.text, re.S)
    assert heat, page.text[:500]
    cells = {c["name"]: c for g in json.loads(heat.group(1)) for c in g["cells"]}
    for name, choice in sites.items():
        assert cells[name]["choice"] == choice and cells[name]["w"] is None
        assert cells[name]["a"] == int(choice[1]) and cells[name]["log"] == choice.endswith("log")


def test_the_plans_sites_are_applied_with_agq_and_big(
    solved: dict[str, Any], tmp_path: Path
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(solved["plan"]))
    out = tmp_path / "m.safetensors"
    res = _cli(
        "quantize", "sam2-micro", "--plan", str(plan), "--agq", "--big", "--json", "--out", str(out)
    )
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    sites = [n for n in solved["plan"]["choices"] if SITE.search(n)]
    assert doc["sites_quantized"] == len(sites)
    assert doc["agq_sites"] == sum(1 for n in sites if n.endswith("sv_matmul"))
    assert doc["big_sites"] > 0 and doc["predicted_bytes"] == doc["measured_bytes"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", *args], capture_output=True, text=True, timeout=300
    )


def _one_line(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    for needle in needles:
        assert needle in res.stderr, res.stderr


def test_bad_site_options_are_one_line(api: httpx.Client, model_id: int, tmp_path: Path) -> None:
    cases = [
        ("/v1/profiles", {"attention": True, "attention_options": ["a8", "a3"]}, "'a3'"),
        ("/v1/profiles", {"attention_options": ["a8"]}, "needs attention"),
        ("/v1/plans", {"attention": True, "attention_options": ["w4a8"]}, "'w4a8'"),
    ]
    for path, extra, needle in cases:
        body = {"model_id": model_id} if path == "/v1/plans" else {}
        body |= {"budget": {"avg_bits": 6}} if path == "/v1/plans" else {}
        url = path if path == "/v1/plans" else f"/v1/models/{model_id}/profiles"
        r = api.post(url, json=body | extra)
        assert r.status_code == 422, r.text
        message = r.json()["error"]["message"]
        assert "attention_options" in message and needle in message and "\n" not in message
    qk = "image_encoder.trunk.blocks.0.attn.qk_matmul"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"choices": {qk: "a8log"}}))
    _one_line(
        _cli("quantize", "sam2-micro", "--plan", str(bad), "--out", str(tmp_path / "x")),
        qk,
        "a_log",
    )
    _one_line(
        _cli("profile", "sam2-micro", "--attention-options", "a5", "--out", str(tmp_path / "p")),
        "attention_options",
        "'a5'",
    )


@pytest.mark.slow
def test_refine_and_validate_a_plan_with_sites(sam2_micro: Any, tmp_path: Path) -> None:
    """``refine`` (LSC) and ``validate`` apply the sites a plan names; the artifact matches the
    plan's priced size (sites' qparams included) within the 0.5 % tolerance."""
    from profiling.inventory import build_inventory
    from profiling.validate import priced_plan

    inv = build_inventory(sam2_micro).to_json()
    choices = {x["name"]: "w4a8" for x in inv["layers"] if x.get("weight_numel")}
    sites = [x["name"] for x in inv["layers"] if SITE.search(x["name"])]
    choices |= {n: "a4log" if n.endswith("sv_matmul") else "a8" for n in sites}
    doc = priced_plan(inv, choices) | {"status": "optimal", "model": {"name": "sam2-micro"}}
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(doc))
    sidecar = tmp_path / "clipping.safetensors"
    small = ["--images", "1", "--holdout", "1"]
    res = _cli("refine", str(plan), "--steps", "1", *small, "--out", str(sidecar))
    assert res.returncode == 0, res.stderr
    res = _cli("validate", str(plan), *small, "--clipping", str(sidecar), "--json")
    assert res.returncode == 0, res.stderr
    validated = json.loads(res.stdout)
    assert validated["size"]["relative_error"] <= 0.005
    assert validated["plan"]["layers"] == len(choices)


def test_uniform_baselines_give_sites_the_candidates_activation_bits() -> None:
    from searchsvc.dashboard import views
    from solvers import Problem

    def opt(cid: str, loss: float, bops: float) -> dict[str, Any]:
        return {"id": cid, "loss": loss, "memory_bytes": 8.0, "bops": bops}

    problem = Problem.from_dict(
        {
            "format": "bitbudget.problem/v1",
            "layers": [
                {"name": "a.qkv", "options": [opt("w8a8", 0.1, 64), opt("w4a16", 0.5, 64)]},
                {"name": "a.sv_matmul", "options": [opt("a8", 0.01, 6.4), opt("a4log", 0.2, 1.6)]},
            ],
            "fixed": {"bops": 0},
            "budget": {"bops": None},
        }
    )
    got = {b["id"]: b for b in views.baselines(problem, "bops")}
    assert set(got) == {"w8a8", "w4a16"}  # site option ids are not baselines of their own
    assert got["w8a8"]["total"] == 64 + 6.4 and got["w8a8"]["objective"] == pytest.approx(0.11)
    assert got["w4a16"]["total"] == 64 + 6.4  # no a16 option: the site's first one

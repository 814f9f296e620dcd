"""The whole flow on the embedded default (``bitbudget serve --dev``: SQLite, in-process jobs),
including a server killed mid-profile and restarted, and the one-shot ``bitbudget plan`` CLI on
the same database."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from svc_helpers import Server, children_of, done_units, service_env, unit_rows, wait_gone, wait_job

pytestmark = pytest.mark.service

CANDIDATES = ["w8a8", "w4a8", "w4a16"]


def _token(server: Server) -> str:
    match = re.search(r"token:\s+(bb_\S+)", server.output())
    assert match, server.output()
    return match.group(1)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_embedded_flow_survives_a_restart(tmp_path: Path) -> None:
    env = service_env(tmp_path)
    server = Server(env, tmp_path / "server1.log", "--dev")
    try:
        token = _token(server)
        out = server.output()
        assert f"{server.base}/dashboard" in out and "curl -X POST" in out and "/v1/plans" in out
        assert '{"name": "sam2-micro"}' in out  # the README's model
        with server.client() as anonymous:
            r = anonymous.post("/v1/models", json={"name": "sam2-micro"})
            assert r.status_code == 401 and "bearer token" in r.json()["error"]["message"]
        with server.client(token) as api:
            model_id = api.post("/v1/models", json={"name": "sam2-micro"}).json()["id"]
            body = {"model_id": model_id, "budget": {"avg_bits": 6}, "candidates": CANDIDATES}
            r = api.post("/v1/plans", json=body | {"images": 2})
            assert r.status_code == 202, r.text
            plan, job = r.json()["plan"], r.json()["job"]
            key = api.get(f"/v1/profiles/{plan['profile_id']}").json()["key"]
        database = f"sqlite:///{tmp_path / 'bitbudget.db'}"
        deadline = time.monotonic() + 180
        while not done_units(database, key) and time.monotonic() < deadline:
            time.sleep(0.1)
        helpers = children_of(server.popen.pid)  # the profile's pool process (2 cores: one)
        assert helpers, "the embedded profile runs its units on a local process pool"
        server.kill()  # the whole embedded service dies mid-profile
        assert wait_gone(helpers) == []  # its pool processes die with it
        before = len(done_units(database, key))
        assert 1 <= before < 4
    finally:
        server.stop()

    server = Server(env, tmp_path / "server2.log", "--dev")
    try:
        assert _token(server) == token  # the dev token is kept, not re-made
        with server.client(token) as api:
            done = wait_job(api, job["id"])  # re-queued at start, resumed from the checkpoint
            assert done["state"] == "succeeded", done
            profile = api.get(f"/v1/profiles/{plan['profile_id']}").json()
            assert profile["stats"]["resumed_units"] == before
            assert profile["stats"]["computed_units"] == 4 - before  # 2 images x 2 stages
            rows = unit_rows(database, key)  # nothing recomputed, nothing lost
            assert len(rows) == 4 and all(r["computed"] == 1 for r in rows)
            solved = api.get(f"/v1/plans/{plan['id']}").json()
            assert solved["status"] in ("optimal", "feasible")
            assert solved["usage"]["avg_bits"] <= 6
            assert solved["validate"] is False and solved["validation_status"] == "not_requested"
            assert api.delete(f"/v1/jobs/{job['id']}").status_code == 409
            front = api.get(
                f"/v1/models/{model_id}/pareto",
                params={"resource": "bops", "images": 2, "candidates": ",".join(CANDIDATES)},
            )
            assert front.status_code == 200 and front.json()["points"], front.text

        args = ["plan", "sam2-micro", "--images", "2", "--candidates", ",".join(CANDIDATES)]
        ok = _cli(env, *args, "--memory-mb", "1.7")
        assert ok.returncode == 0, ok.stderr
        assert "sam2-micro" in ok.stdout and "random_weights: true" in ok.stdout
        assert re.search(r"optimal|feasible", ok.stdout)
        no = _cli(env, *args, "--memory-mb", "0.01")
        assert no.returncode == 2 and "least achievable" in no.stderr
        assert "Traceback" not in no.stderr
    finally:
        server.stop()

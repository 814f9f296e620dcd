"""``bitbudget plan --hardware TABLE.json`` on the embedded default (SQLite, in-process jobs):
the table is stored under its name once, the plan is solved on it within the latency budget and
its predicted latency recomputes from the table; a bad table is one line and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from svc_helpers import service_env

from profiling.latency import MeasureRequest, measure_table
from solvers.latency_table import predict_latency

OPTIONS = ["w8a8", "w16a16"]


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def table_file(sam2_micro: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hw-cli") / "micro.json"
    req = MeasureRequest(
        "sam2-micro", candidates=("w8a8",), runtime="torch", warmup=0, repeats=1, name="micro-cli"
    )
    measure_table(req, out, loaded=sam2_micro)
    return out


def test_plan_on_a_table_file(table_file: Path, tmp_path: Path) -> None:
    table = json.loads(table_file.read_text())
    cells = table["latency_table"].values()
    least = table["fixed_ms"] + sum(min(c[o]["median_ms"] for o in OPTIONS) for c in cells)
    most = table["fixed_ms"] + sum(max(c[o]["median_ms"] for o in OPTIONS) for c in cells)
    budget = least + 0.5 * (most - least)
    env = service_env(tmp_path)
    args = ["plan", "sam2-micro", "--latency-ms", f"{budget:.6f}", "--hardware", str(table_file)]
    args += ["--candidates", ",".join(OPTIONS), "--images", "2", "--json"]
    res = _cli(env, *args)
    assert res.returncode == 0, res.stderr
    plan = json.loads(res.stdout)
    assert plan["hardware"] == "micro-cli" and plan["status"] in ("optimal", "feasible")
    assert plan["totals"]["latency_ms"] <= budget * (1 + 1e-9)
    assert plan["totals"]["latency_ms"] == pytest.approx(
        predict_latency(table, plan["plan"]["choices"]), rel=1e-12
    )
    again = _cli(env, *args)  # the table is stored once; the same request is answered again
    assert again.returncode == 0, again.stderr

    other = dict(table, fixed_ms=table["fixed_ms"] + 1.0)
    clash = tmp_path / "other.json"
    clash.write_text(json.dumps(other))
    res = _cli(env, "plan", "sam2-micro", "--latency-ms", "5", "--hardware", str(clash))
    assert res.returncode == 2 and "stored with another table" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "Traceback" not in res.stderr

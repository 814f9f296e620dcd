"""The fuzz campaign as a re-runnable check: ``bench/fuzz.py`` (schemathesis over every operation
of /openapi.json, schema-valid and schema-breaking requests, against a live server on PostgreSQL
with a token) with a bounded number of examples: no 5xx, no response that breaks the document.
The long run (>= 10,000 requests, with and without the token) is the benchmark itself."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.service, pytest.mark.slow]

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"


def test_schemathesis_finds_no_5xx_and_no_violation(tmp_path: Path) -> None:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
    except OSError:
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    out = tmp_path / "fuzz.json"
    args = ["--phases", "coverage,fuzzing", "--max-examples", "4", "--no-profile"]
    # one worker thread: CPython 3.11's ast.parse is not thread-safe (gh-106905), and hypothesis
    # calls it from schemathesis' worker threads ("AST constructor recursion depth mismatch")
    args += ["--no-anonymous", "--workers", "1", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    doc = json.loads(out.read_text())
    run = doc["runs"][0]
    assert run["operations"] == run["operations_total"] > 0, run
    assert run["exit_code"] == 0, run["output_tail"] or run
    assert doc["requests"] >= 500, doc["requests"]  # boundary values of every field, and more
    assert doc["server_errors"] == 0, run["statuses"]
    assert doc["violations"] == 0 and not run["failures"] and not run["errors"], run
    assert doc["tracebacks_in_server_log"] == 0

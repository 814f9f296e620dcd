"""The fuzz campaign of issue 20, re-runnable: schemathesis over every operation of
``/openapi.json`` against a live ``bitbudget serve`` on PostgreSQL with a token, once with the
token and once without it.

Starts the server on a free loopback port with a throwaway PostgreSQL database (or
``--database-url``) and a random token, seeds a model (sam2-micro), its profile and a plan so that
generated requests also reach existing rows (``fuzz_hooks``), then runs ``schemathesis run`` in
"all" mode (schema-valid and schema-breaking requests) with the checks ``CHECKS``: no 5xx, every
status, content type, header and body as the document declares. Counts every response the server
gave (the hooks log each one), its 5xx answers, and schemathesis' failures by check.
Target: 0 responses with status 5xx and 0 violations over >= 10,000 generated requests.
Run: .venv/bin/python bench/fuzz.py  (writes bench/results/fuzz.json; ~30 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "fuzz.json"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
)
TARGETS = {"min_requests": 10_000, "server_errors": 0, "violations": 0}


def _database(url: str | None) -> tuple[str, str | None]:
    """The database URL and, when this run created it, its name (dropped at the end)."""
    if url:
        return url, None
    import psycopg

    name = f"bitbudget_fuzz_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name


def _drop(name: str | None) -> None:
    if name is None:
        return
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(data: Path, database_url: str, token: str) -> tuple[subprocess.Popen[bytes], str]:
    """``bitbudget serve`` with a token; its process and base URL once /healthz answers."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITBUDGET_")}
    env |= {"BITBUDGET_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    env |= {"BITBUDGET_DATABASE_URL": database_url, "BITBUDGET_API_TOKENS": token}
    env["BITBUDGET_CHECKPOINT_DIRS"] = str(data / "checkpoints")
    (data / "checkpoints").mkdir(parents=True, exist_ok=True)
    log = open(data / "server.log", "w")  # noqa: SIM115  (closed with the process)
    cmd = [sys.executable, "-m", "searchsvc.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError((data / "server.log").read_text())


def _wait_job(client: httpx.Client, job_id: int) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if client.get(f"/v1/jobs/{job_id}").json()["state"] in ("succeeded", "failed"):
            return
        time.sleep(0.5)
    raise RuntimeError(f"seeding: job {job_id} did not finish")


def _seed(base: str, token: str, profile: bool) -> dict[str, int]:
    """sam2-micro, and with ``profile`` its default profile and one plan: the ids to reuse."""
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=base, headers=headers, timeout=600) as client:
        model = client.post("/v1/models", json={"name": "sam2-micro"}).json()
        ids = {"model_id": int(model["id"])}
        if not profile:
            return ids
        accepted = client.post(f"/v1/models/{ids['model_id']}/profiles", json={}).json()
        if accepted.get("job"):
            _wait_job(client, accepted["job"]["id"])
            ids["job_id"] = int(accepted["job"]["id"])
        ids["profile_id"] = int(accepted["profile"]["id"])
        plan = client.post(
            "/v1/plans", json={"model_id": ids["model_id"], "budget": {"avg_bits": 5}}
        )
        ids["plan_id"] = int(plan.json()["id"])
        return ids


def _campaign(
    base: str, token: str | None, ids: dict[str, int], args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """One schemathesis run; what the server answered and what schemathesis found."""
    label = "token" if token else "anonymous"
    log, report = work / f"responses-{label}.log", work / f"report-{label}.json"
    cmd = [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json"]
    cmd += ["--checks", ",".join(CHECKS), "--mode", "all", "--phases", args.phases]
    cmd += ["--max-examples", str(args.max_examples), "--workers", str(args.workers)]
    cmd += ["--seed", str(args.seed), "--request-timeout", "120", "--no-color"]
    cmd += ["--suppress-health-check", "all", "--generation-database", "none"]
    cmd += ["--report", "json", "--report-json-path", str(report)]
    if token:
        cmd += ["--header", f"Authorization: Bearer {token}"]
    env = os.environ | {
        "SCHEMATHESIS_HOOKS": "fuzz_hooks",
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
        "BITBUDGET_FUZZ_LOG": str(log),
        "BITBUDGET_FUZZ_IDS": json.dumps(ids),
    }
    started = time.monotonic()
    # in the work dir: schemathesis keeps a cache of failures to replay in ./.schemathesis
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=work)
    (work / f"schemathesis-{label}.txt").write_text(done.stdout + done.stderr)
    lines = log.read_text().splitlines() if log.exists() else []
    statuses = Counter(line.rsplit(" ", 1)[1] for line in lines)
    doc = json.loads(report.read_text()) if report.exists() else {}
    failures = [f for f in doc.get("failures", []) if f.get("type") != "not_a_server_error"]
    return {
        "auth": label,
        "requests": len(lines),
        "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(n for s, n in statuses.items() if s.startswith("5")),
        "violations": sum(int(f.get("count", 1)) for f in failures),
        "failures": doc.get("failures", []),
        "errors": doc.get("errors", []),
        "test_cases": doc.get("test_cases", {}),
        "operations": doc.get("operations", {}).get("tested"),
        "operations_total": doc.get("operations", {}).get("total"),
        "exit_code": done.returncode,
        # what schemathesis printed, when it says something went wrong (its report may not)
        "output_tail": (done.stdout + done.stderr)[-4000:] if done.returncode else "",
        "seconds": round(time.monotonic() - started, 1),
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=300, help="per operation and phase")
    parser.add_argument("--phases", default="examples,coverage,fuzzing")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="schemathesis threads; >1 can hit CPython 3.11's thread-unsafe ast.parse (gh-106905)",
    )
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--database-url", default=None, help="default: a throwaway database")
    parser.add_argument("--no-profile", action="store_true", help="seed only a model (quick)")
    parser.add_argument("--anonymous", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", action="store_true", help="keep the logs and data dir")
    return parser


def _postgres_runs() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the campaign; write and return the result document."""
    args = _parser().parse_args(argv)
    if args.database_url is None and not _postgres_runs():
        print("bench/fuzz.py: skipped, no PostgreSQL on 127.0.0.1:5432 (or pass --database-url)")
        return {}
    token = "bb_fuzz_" + secrets.token_urlsafe(24)
    url, created = _database(args.database_url)
    work = Path(tempfile.mkdtemp(prefix="bitbudget-fuzz-"))
    proc = None
    try:
        proc, base = _start(work / "data", url, token)
        ids = _seed(base, token, profile=not args.no_profile)
        runs = [_campaign(base, token, ids, args, work)]
        if args.anonymous:
            runs.append(_campaign(base, None, ids, args, work))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        _drop(created)
    server_log = (work / "data" / "server.log").read_text(errors="replace")
    totals = {
        key: sum(int(r[key]) for r in runs) for key in ("requests", "server_errors", "violations")
    }
    doc = {
        "benchmark": "fuzz",
        "what": "schemathesis (mode all) over every operation, live server on PostgreSQL",
        "checks": list(CHECKS),
        "max_examples": args.max_examples,
        "phases": args.phases,
        "seed": args.seed,
        "seeded_ids": ids,
        **totals,
        "tracebacks_in_server_log": server_log.count("Traceback"),
        "runs": runs,
        "targets": TARGETS,
        "met": totals["requests"] >= TARGETS["min_requests"]
        and totals["server_errors"] == 0
        and totals["violations"] == 0,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average": os.getloadavg(),
        "work_dir": str(work) if args.keep else None,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps({k: doc[k] for k in ("requests", "server_errors", "violations", "met")}))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return doc


if __name__ == "__main__":
    main()

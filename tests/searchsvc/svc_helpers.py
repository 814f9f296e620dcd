"""Helpers of the service tests: run the real API (``bitbudget serve``) and real Celery workers
(``bitbudget worker``) as subprocesses, and follow jobs over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

# tests import these from here, not from conftest: with tests/solvers in the same pytest run,
# "conftest" can name that directory's conftest
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
TOKEN = "bb_test_" + "x" * 40  # a configured token (BITBUDGET_API_TOKENS)


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(data_dir: Path, **settings: Any) -> dict[str, str]:
    """The environment of a service subprocess: BITBUDGET_* settings, no inherited ones."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITBUDGET_")}
    env |= {"BITBUDGET_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}
    for key, value in settings.items():
        env[f"BITBUDGET_{key.upper()}"] = str(value)
    return env


class Proc:
    """A subprocess with its output in a log file (read on failure)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._fh = open(log, "w")  # noqa: SIM115  (closed in stop)
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "searchsvc.cli", *args],
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            cwd=str(log.parent),
        )

    def output(self) -> str:
        """Everything it printed so far."""
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no cleanup, as when a machine dies."""
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self._fh.close()


class Server(Proc):
    """``bitbudget serve`` on a free port; ``client`` talks to it over HTTP."""

    def __init__(self, env: dict[str, str], log: Path, *extra: str) -> None:
        self.port = free_port()
        super().__init__(["serve", "--port", str(self.port), *extra], env, log)
        self.base = f"http://127.0.0.1:{self.port}"
        self.wait_ready()

    def wait_ready(self, timeout: float = 90) -> None:
        """Block until /healthz answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"server exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"server did not start:\n{self.output()}")

    def client(self, token: str | None = None) -> httpx.Client:
        """An HTTP client, with a bearer token when given."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base, headers=headers, timeout=120)


class Worker(Proc):
    """``bitbudget worker`` (Celery, solo pool); ``wait_ready`` blocks until it consumes."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        super().__init__(["worker", "--pool", "solo", "--loglevel", "info"], env, log)

    def wait_ready(self, timeout: float = 90) -> None:
        """Block until Celery says it is ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.output()}")
            if " ready." in self.output():
                return
            time.sleep(0.2)
        raise RuntimeError(f"worker did not start:\n{self.output()}")


def wait_job(client: httpx.Client, job_id: int, timeout: float = 240) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until it ends; returns the final job."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def wait_validated(client: httpx.Client, plan_id: int, timeout: float = 300) -> dict[str, Any]:
    """Poll GET /v1/plans/{id} until its newest validation ends; returns the plan."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan = client.get(f"/v1/plans/{plan_id}").json()
        v = plan.get("validation")
        if v is not None and v["status"] not in ("pending", "running"):
            return dict(plan)
        time.sleep(0.5)
    raise AssertionError(f"plan {plan_id} was not validated: {plan}")


def unit_rows(database_url: str, key: str) -> list[dict[str, Any]]:
    """The ``profile_units`` rows of profile ``key`` (unit, state, computed, worker)."""
    from sqlalchemy import text

    from searchsvc.db.session import get_engine

    with get_engine(database_url).connect() as conn:
        rows = conn.execute(
            text(
                "SELECT unit, state, computed, worker FROM profile_units "
                "WHERE profile_key = :key ORDER BY id"
            ),
            {"key": key},
        )
        return [dict(r._mapping) for r in rows]


def done_units(database_url: str, key: str) -> list[dict[str, Any]]:
    """The finished units of profile ``key``."""
    return [r for r in unit_rows(database_url, key) if r["state"] == "done"]


def children_of(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def wait_gone(pids: list[int], timeout: float = 15) -> list[int]:
    """Wait until none of ``pids`` is alive (zombies count as gone); those still alive."""
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _alive(p)]
        time.sleep(0.2)
    return alive


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(check: Any, timeout: float = 120) -> Any:
    """Poll ``check()`` until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not reached")

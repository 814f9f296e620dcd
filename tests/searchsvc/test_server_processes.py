"""A stopped server takes its solver pool with it, however it is stopped: SIGTERM (what a
supervisor and the tests send), SIGINT (Ctrl-C), SIGKILL (no clean-up at all), and the test
client's exit. Counted from /proc: every process the server started, before and after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from svc_helpers import Server, service_env

pytestmark = pytest.mark.service

TOKEN = "bb_test_" + "p" * 40
CANDIDATES = ["w8a8", "w4a8", "w4a16"]


def _children() -> dict[int, list[int]]:
    """Every live (non-zombie) process's children, by parent pid."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            tree.setdefault(int(ppid), []).append(int(entry.name))
    return tree


def descendants(pid: int) -> set[int]:
    """The live processes below ``pid``."""
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pids: set[int]) -> set[int]:
    """Those of ``pids`` that still run (zombies waiting to be reaped do not count)."""
    left = set()
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            left.add(pid)
    return left


def _tracker(pid: int) -> bool:
    try:
        return b"resource_tracker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_gone(pids: set[int], timeout: float = 20) -> set[int]:
    """Wait until none of ``pids`` runs; returns those still running at the deadline."""
    deadline = time.monotonic() + timeout
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


@pytest.fixture(scope="module")
def profiled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder whose database already holds a sam2-micro profile (made by the CLI)."""
    data = tmp_path_factory.mktemp("profiled")
    args = ["plan", "sam2-micro", "--images", "1", "--avg-bits", "6"]
    args += ["--candidates", ",".join(CANDIDATES)]
    done = subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", *args],
        env=service_env(data),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return data


def _solve_in_pool(server: Server, avg_bits: float) -> None:
    """A plan request on the ready profile: solved in the server's solver processes."""
    with server.client(TOKEN) as api:
        model = api.post("/v1/models", json={"name": "sam2-micro"}).json()
        body = {"model_id": model["id"], "budget": {"avg_bits": avg_bits}}
        r = api.post("/v1/plans", json=body | {"images": 1, "candidates": CANDIDATES})
        assert r.status_code == 201, r.text


@pytest.mark.parametrize(("how", "avg_bits"), [("SIGTERM", 5.5), ("SIGINT", 5.0), ("SIGKILL", 6.5)])
def test_a_stopped_server_leaves_no_process(
    profiled: Path, tmp_path: Path, how: str, avg_bits: float
) -> None:
    env = service_env(profiled, api_tokens=TOKEN, solve_processes=2)
    server = Server(env, tmp_path / "server.log")
    try:
        _solve_in_pool(server, avg_bits)  # a budget of its own: a fresh solve
        started = descendants(server.popen.pid)
        # the solver worker(s) and multiprocessing's resource tracker
        assert len(started) >= 2, started
        os.kill(server.popen.pid, getattr(signal, how))
        server.popen.wait(timeout=30)
        left = wait_gone(started)
        assert not left, f"after {how}, still running: {left}\n{server.output()[-2000:]}"
    finally:
        server.stop()


def test_the_test_clients_exit_stops_the_pool(profiled: Path, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from searchsvc.app import create_app
    from searchsvc.settings import Settings

    before = descendants(os.getpid())
    monkeypatch.setenv("BITBUDGET_API_TOKENS", TOKEN)
    settings = Settings(data_dir=profiled, solve_processes=1)
    with TestClient(create_app(settings)) as api:
        api.headers["Authorization"] = f"Bearer {TOKEN}"
        model = api.post("/v1/models", json={"name": "sam2-micro"}).json()
        body = {"model_id": model["id"], "budget": {"avg_bits": 7.0}, "images": 1}
        r = api.post("/v1/plans", json=body | {"candidates": CANDIDATES})
        assert r.status_code == 201, r.text
        # multiprocessing's resource tracker belongs to this (pytest's) process, not to the app:
        # it stays until pytest exits; the solver workers must not
        started = {pid for pid in descendants(os.getpid()) - before if not _tracker(pid)}
        assert started, "the solve did not run in a worker process"
    assert not wait_gone(started), "the solver pool outlived the app"

"""Deployment files: docker-compose.yml (checked by ``docker compose config`` when the docker
client has compose), the Dockerfile's pinned install steps, and the Makefile's run target."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from searchsvc.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "bb_" + "t" * 40


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_has_the_four_services() -> None:
    doc = _compose()
    assert set(doc["services"]) == {"postgres", "redis", "api", "worker"}
    for name in ("api", "worker"):
        env = doc["services"][name]["environment"]
        assert env["BITBUDGET_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["BITBUDGET_BROKER_URL"].startswith("redis://")
        assert "bitbudget-data:/data" in doc["services"][name]["volumes"]
    assert "worker" in doc["services"]["worker"]["command"]
    assert "serve" in doc["services"]["api"]["command"]


def test_compose_settings_pass_validation() -> None:
    env = dict(_compose()["services"]["api"]["environment"])
    env["BITBUDGET_API_TOKENS"] = TOKEN
    fields = {k.removeprefix("BITBUDGET_").lower(): v for k, v in env.items()}
    settings = Settings(**fields)
    assert not settings.embedded and settings.database.startswith("postgresql+psycopg://")


def _has_compose() -> bool:
    if shutil.which("docker") is None:
        return False
    out = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
    return out.returncode == 0


@pytest.mark.skipif(not _has_compose(), reason="the docker client has no compose plugin")
def test_docker_compose_config() -> None:
    env = os.environ | {"BITBUDGET_API_TOKENS": TOKEN}
    out = subprocess.run(
        ["docker", "compose", "config", "--quiet"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr


def test_dockerfile_installs_the_pinned_stack() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    torch = text.index("torch==2.14.1 torchvision==0.29.1")
    sam2 = text.index("SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0")
    package = text.index("pip install -e .")
    assert torch < sam2 < package
    assert "COPY migrations" in text


def test_make_run_starts_the_dev_service() -> None:
    lines = (ROOT / "Makefile").read_text().splitlines()
    (target,) = [i for i, line in enumerate(lines) if line.startswith("run: ")]
    assert "$(STAMP)" in lines[target].split()  # sets the venv up first
    recipe = lines[target + 1]
    assert recipe == "\t$(BIN)/bitbudget serve --host $(HOST) --port $(PORT) --dev"


def test_compose_worker_scales_and_shares_the_store() -> None:
    """``docker compose up --scale worker=4`` needs workers without a fixed name or host port,
    the shared volume, the shared store and both queues (the engine is not run here)."""
    worker = _compose()["services"]["worker"]
    assert "container_name" not in worker and "ports" not in worker
    assert "bitbudget-data:/data" in worker["volumes"]
    env = worker["environment"]
    assert env["BITBUDGET_SHARED_STORE"].endswith(":-/data/store}")  # overridable, on /data
    queues = Settings(worker_queues=env["BITBUDGET_WORKER_QUEUES"], api_tokens=TOKEN)
    assert queues.worker_queues == ["bitbudget", "profile-units", "latency"]
    assert "--scale worker=4" in (ROOT / "docs" / "service.md").read_text()

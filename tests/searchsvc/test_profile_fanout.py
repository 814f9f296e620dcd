"""A profile's units fanned out over real Celery workers (Redis, PostgreSQL): two workers give
the one-process profile bit for bit and share the units; a worker SIGKILLed while it holds a
unit loses only that unit (computed once in the end, counted from the unit table); a worker
whose checkpoint store holds other weights refuses; bad worker settings fail at start-up."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from svc_helpers import TOKEN, Proc, Server, Worker, service_env, unit_rows, wait_for, wait_job

from searchsvc.db.session import get_engine

pytestmark = pytest.mark.service

BODY = {"metric": "kl", "candidates": ["w8a8", "w2a16"], "images": 1}  # 86 units, one per layer


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, pg_url: str, redis_url: str
) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("fanout")
    (data / "ckpts").mkdir()
    env = service_env(
        data,
        database_url=pg_url,
        broker_url=redis_url,
        api_tokens=TOKEN,
        heartbeat_timeout_s=4,
        reconcile_interval_s=1,
        profile_threads=1,
        checkpoint_dirs=data / "ckpts",
    )
    procs: list[Proc] = [Server(env, data / "server.log")]
    yield {"server": procs[0], "env": env, "data": data, "procs": procs, "db": pg_url}
    for proc in procs:
        proc.stop()


def _worker(stack: dict[str, Any], name: str, **settings: Any) -> Worker:
    env = stack["env"] | {f"BITBUDGET_{k.upper()}": str(v) for k, v in settings.items()}
    worker = Worker(env, stack["data"] / f"{name}.log")
    stack["procs"].append(worker)
    worker.wait_ready()
    return worker


def _doc(db: str, profile_id: int) -> dict[str, Any]:
    with get_engine(db).connect() as conn:
        doc = conn.execute(text("SELECT doc FROM profiles WHERE id = :i"), {"i": profile_id})
        return dict(doc.scalar_one())


def _one_process_layers() -> dict[str, Any]:
    from profiling.models import ModelSpec
    from profiling.sensitivity import ProfileRequest, run_profile

    req = ProfileRequest(
        ModelSpec("sam2-micro"), "kl", tuple(BODY["candidates"]), images=BODY["images"]
    )
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        return run_profile(req, work, threads=1).layers  # one process, one torch thread


@pytest.mark.slow
def test_two_workers_match_one_and_lose_only_the_killed_unit(stack: dict[str, Any]) -> None:
    a, b = _worker(stack, "a"), _worker(stack, "b")
    pids = {str(a.popen.pid): a, str(b.popen.pid): b}
    with stack["server"].client(TOKEN) as api:
        model_id = api.post("/v1/models", json={"name": "sam2-micro"}).json()["id"]
        r = api.post(f"/v1/models/{model_id}/profiles", json=BODY)
        assert r.status_code == 202, r.text
        profile, job = r.json()["profile"], r.json()["job"]
        coordinator = wait_for(lambda: api.get(f"/v1/jobs/{job['id']}").json()["worker"])
        coordinator_pid = coordinator.split(":")[1]
        helper_pid = next(p for p in pids if p != coordinator_pid)

        def helper_rows() -> list[dict[str, Any]]:
            rows = unit_rows(stack["db"], profile["key"])
            return [r for r in rows if (r["worker"] or "").endswith(f":{helper_pid}")]

        def helper_busy() -> bool:
            states = [r["state"] for r in helper_rows()]
            return "done" in states and "running" in states

        wait_for(helper_busy)
        pids[helper_pid].kill()  # SIGKILL while it computes a unit
        # its claim stays until the heartbeat timeout (4 s): the unit it held at its death
        # (none only if it finished one in the few ms between the check and the kill)
        held = [r["unit"] for r in helper_rows() if r["state"] == "running"]
        assert len(held) <= 1
        running = api.get(f"/v1/jobs/{job['id']}").json()
        assert running["units"]["total"] == 86 and 0 < running["units"]["done"] < 86
        done = wait_job(api, job["id"], timeout=300)
        assert done["state"] == "succeeded", done
        units = done["units"]
        assert units["done"] == units["total"] == 86 and units["rate_per_s"] > 0
        assert len(units["per_worker"]) == 2 and all(units["per_worker"].values())
        page = api.get("/dashboard/jobs").text  # the dashboard shows the same counts
        assert "units 86/86 · " in page and f":{helper_pid} " in page

    rows = unit_rows(stack["db"], profile["key"])
    assert len(rows) == 86 and all(r["state"] == "done" for r in rows)
    assert all(r["computed"] == 1 for r in rows)  # no unit computed twice
    for unit in held:  # the killed worker's unit was claimed again, and computed once
        with get_engine(stack["db"]).connect() as conn:
            attempts = conn.execute(
                text("SELECT attempts FROM profile_units WHERE profile_key = :k AND unit = :u"),
                {"k": profile["key"], "u": unit},
            ).scalar_one()
        assert attempts == 2
    layers = _doc(stack["db"], profile["id"])["layers"]
    reference = _one_process_layers()
    assert json.dumps(layers, sort_keys=True) == json.dumps(reference, sort_keys=True)


def _checkpoints(stack: dict[str, Any]) -> tuple[Path, Path]:
    """sam2-micro saved with seed 0 (registered) and seed 1 (the other weights)."""
    from profiling.models import ModelSpec, build_model
    from profiling.models.checkpoint import save_checkpoint

    paths = []
    for seed in (0, 1):
        path = stack["data"] / "ckpts" / f"micro{seed}.pt"
        save_checkpoint(build_model(ModelSpec("sam2-micro", seed=seed)).module, path)
        paths.append(path)
    return paths[0], paths[1]


def test_a_worker_with_other_weights_refuses(stack: dict[str, Any]) -> None:
    for proc in stack["procs"][1:]:
        proc.stop()
    good, other = _checkpoints(stack)
    with stack["server"].client(TOKEN) as api:
        r = api.post("/v1/models", json={"name": "sam2-micro", "checkpoint": str(good)})
        assert r.status_code in (200, 201), r.text
        model = r.json()
        bad_store = stack["data"] / "bad-store" / "checkpoints"
        bad_store.mkdir(parents=True)
        (bad_store / f"{model['weights_hash']}.pt").write_bytes(other.read_bytes())
        _worker(stack, "coordinator")
        _worker(
            stack,
            "other-weights",
            worker_queues="profile-units",  # never the coordinator: units only
            shared_store=stack["data"] / "bad-store",
        )
        r = api.post(f"/v1/models/{model['id']}/profiles", json=BODY | {"images": 2})
        assert r.status_code == 202, r.text
        done = wait_job(api, r.json()["job"]["id"], timeout=300)
        assert done["state"] == "failed", done
        assert "refused unit" in done["error"] and "weights hash" in done["error"], done["error"]
        assert model["weights_hash"] in done["error"]
        profile = api.get(f"/v1/profiles/{r.json()['profile']['id']}").json()
        assert profile["status"] == "failed" and "refused" in profile["error"]


def _start_worker(env: dict[str, str], **settings: str) -> subprocess.CompletedProcess[str]:
    env = env | {f"BITBUDGET_{k.upper()}": v for k, v in settings.items()}
    return subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_bad_worker_settings_fail_at_start(stack: dict[str, Any], tmp_path: Path) -> None:
    env = stack["env"] | {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    typo = _start_worker(env, worker_queues="bitbudget,profile-unit")
    assert typo.returncode == 2, typo.stderr
    assert "unknown queue 'profile-unit'; known: bitbudget, profile-units" in typo.stderr
    from svc_helpers import free_port

    s3 = f"s3://bitbudget/store?endpoint=http://127.0.0.1:{free_port()}"
    away = _start_worker(env, shared_store=s3)
    assert away.returncode == 2 and "cannot reach bucket 'bitbudget'" in away.stderr, away.stderr
    (tmp_path / "file").write_text("")
    folder = _start_worker(env, shared_store=str(tmp_path / "file" / "store"))
    assert folder.returncode == 2 and "cannot write to the folder" in folder.stderr
    for out in (typo, away, folder):
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1

"""A checkpoint saved at 256 px used at 512 px, through the CLI and over HTTP: it loads with
its position embeddings interpolated and says so; other tensors that do not fit are refused in
one line (exit 2 / 422)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from svc_helpers import TOKEN, Server, service_env

from profiling.models import ModelSpec, build_model
from profiling.models.checkpoint import save_checkpoint


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", *args], capture_output=True, text=True, timeout=300
    )


def _checkpoints(folder: Path) -> tuple[Path, Path]:
    """(a sam-micro checkpoint saved at 256 px, the same with a patch embedding that cannot fit)."""
    model = build_model(ModelSpec("sam-micro", image_size=256, seed=2)).module
    good, bad = folder / "sam256.pt", folder / "sam256_bad.pt"
    save_checkpoint(model, good)
    state = dict(model.state_dict())
    state["image_encoder.patch_embed.proj.weight"] = torch.zeros(64, 3, 8, 8)
    torch.save({"model": state}, bad)
    return good, bad


def test_cli_inventory_says_resized_from(tmp_path: Path) -> None:
    good, _ = _checkpoints(tmp_path)
    out = _cli("inventory", "sam-micro", "--image-size", "512", "--checkpoint", str(good))
    assert out.returncode == 0, out.stderr
    assert "resized_from: checkpoint saved at 256 px, loaded at 512 px" in out.stdout
    assert "image_encoder.pos_embed" in out.stdout
    doc = json.loads(
        _cli(
            "inventory", "sam-micro", "--image-size", "512", "--checkpoint", str(good), "--json"
        ).stdout
    )
    assert doc["image_size"] == 512 and doc["resized_from"]["image_size"] == 256


def test_cli_other_tensors_that_do_not_fit_is_one_line(tmp_path: Path) -> None:
    _, bad = _checkpoints(tmp_path)
    out = _cli("inventory", "sam-micro", "--image-size", "512", "--checkpoint", str(bad))
    assert out.returncode == 2, out.stdout
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
    assert "image_encoder.patch_embed.proj.weight" in out.stderr and "pos_embed (" not in out.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("resize")
    (data / "ckpt").mkdir()
    env = service_env(
        data, database_url=pg_url, api_tokens=TOKEN, checkpoint_dirs=str(data / "ckpt")
    )
    srv = Server(env, data / "server.log")
    yield srv
    srv.stop()


@pytest.mark.service
def test_api_registers_a_resized_checkpoint_and_refuses_a_misfit(server: Server) -> None:
    good, bad = _checkpoints(server.log.parent / "ckpt")
    with server.client(TOKEN) as api:
        body = {"name": "sam-micro", "image_size": 512, "checkpoint": str(good)}
        r = api.post("/v1/models", json=body)
        assert r.status_code == 201, r.text
        note = r.json()["summary"]["resized_from"]
        assert note["image_size"] == 256 and note["to_image_size"] == 512
        assert "image_encoder.pos_embed" in note["tensors"]
        again = api.get(f"/v1/models/{r.json()['id']}").json()
        assert again["summary"]["resized_from"] == note
        r = api.post("/v1/models", json=body | {"checkpoint": str(bad)})
        assert r.status_code == 422, r.text
        message = r.json()["error"]["message"]
        assert "image_encoder.patch_embed.proj.weight" in message and "\n" not in message

"""CLI: `bitbudget models` and `bitbudget inventory`, run as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from profiling.models import ModelSpec, build_model
from profiling.models.checkpoint import save_checkpoint


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_models_table() -> None:
    out = _cli("models")
    assert out.returncode == 0
    for name in ("sam2.1-hiera-tiny", "sam-vit-h", "sam2-micro"):
        assert name in out.stdout


def test_inventory_json() -> None:
    out = _cli("inventory", "sam2-micro", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["random_weights"] is True and doc["image_size"] == 256
    assert len(doc["pairs"]) == sum(1 for layer in doc["layers"] if layer["ran"]) - 1


def test_inventory_table_says_random_weights() -> None:
    out = _cli("inventory", "sam-micro")
    assert out.returncode == 0 and "random_weights: true" in out.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (("inventory", "sam3-huge"), "known models"),
        (("inventory", "sam2-micro", "--image-size", "999"), "image_size 999"),
        (("inventory", "sam2-micro", "--checkpoint", "/nonexistent.pt"), "does not exist"),
    ],
)
def test_bad_input_is_one_line_no_traceback(args, needle) -> None:
    out = _cli(*args)
    assert out.returncode == 2
    assert needle in out.stderr and "Traceback" not in out.stderr + out.stdout


def test_garbage_checkpoint_is_one_line_and_exit_2(tmp_path) -> None:
    """Bytes on which torch's weights-only unpickler raises KeyError (not UnpicklingError)."""
    (tmp_path / "garbage.pt").write_bytes(bytes.fromhex("80026851"))
    out = _cli("inventory", "sam2-micro", "--checkpoint", str(tmp_path / "garbage.pt"))
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "cannot be read" in out.stderr
    seed = _cli("inventory", "sam2-micro", "--seed", str(2**40))
    assert seed.returncode == 2 and "seed: must be" in seed.stderr


def test_mismatched_checkpoint_is_one_line(tmp_path) -> None:
    save_checkpoint(build_model(ModelSpec("sam-micro")).module, tmp_path / "sam.pt")
    out = _cli("inventory", "sam2-micro", "--checkpoint", str(tmp_path / "sam.pt"))
    assert out.returncode == 2 and "does not match the architecture" in out.stderr
    assert "Traceback" not in out.stderr
    torch.save({"model": {"x": 1}}, tmp_path / "odd.pt")
    out = _cli("inventory", "sam2-micro", "--checkpoint", str(tmp_path / "odd.pt"))
    assert out.returncode == 2 and "Traceback" not in out.stderr

"""``bitbudget quantize`` as a real subprocess: JSON figures, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", "quantize", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_uniform_json(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    res = _cli("sam2-micro", "--uniform", "w4a16", "--out", str(out), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["random_weights"] is True and out.exists()
    assert doc["predicted_bytes"] == doc["measured_bytes"]
    assert doc["fp32_bytes"] == 2 * doc["bf16_bytes"] > 2 * doc["measured_bytes"]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--uniform", "w7a8"], ["w_bits", "[2, 3, 4, 5, 6, 8, 16]"]),
        (["--plan", "contradiction.json"], ["qk_matmul'", "w_bits"]),
    ],
)
def test_bad_input_is_one_line_exit_2(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    site = "image_encoder.trunk.blocks.0.attn.qk_matmul"
    (tmp_path / "contradiction.json").write_text(json.dumps({"choices": {site: "w4a8"}}))
    args = [str(tmp_path / a) if a.endswith(".json") else a for a in args]
    res = _cli("sam2-micro", *args, "--out", str(tmp_path / "x.safetensors"))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    for needle in needles:
        assert needle in res.stderr, res.stderr


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--uniform", "w4a8", "--plan", "unknown.json"], ["exactly one"]),
        (["--plan", "unknown.json"], ["'no.such.layer'", "name"]),
        (["--plan", "missing.json"], ["cannot read"]),
    ],
)
def test_bad_input_in_process(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    from typer.testing import CliRunner

    from searchsvc.cli import app

    (tmp_path / "unknown.json").write_text(json.dumps({"choices": {"no.such.layer": "w4a8"}}))
    args = [str(tmp_path / a) if a.endswith(".json") else a for a in args]
    out = tmp_path / "x.safetensors"
    res = CliRunner().invoke(app, ["quantize", "sam2-micro", *args, "--out", str(out)])
    assert res.exit_code == 2 and not out.exists()
    for needle in needles:
        assert needle in res.output, res.output

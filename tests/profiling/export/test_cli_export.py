"""``bitbudget export`` as a real subprocess: bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", "export", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def _plan(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(doc))
    return path


QKV = "image_encoder.trunk.blocks.0.attn.qkv"
SV = "image_encoder.trunk.blocks.0.attn.sv_matmul"


@pytest.mark.parametrize(
    ("doc", "model", "needles"),
    [
        ({"choices": {QKV: "w8a16"}}, "sam-micro", [QKV, "another model"]),
        (
            {"format": "bitbudget.nope/v2", "choices": {QKV: "w8a16"}},
            "sam2-micro",
            ["format", "nope"],
        ),
        (
            {"choices": {QKV: "w8a16"}, "model": {"name": "sam-micro"}},
            "sam2-micro",
            ["model", "sam-micro"],
        ),
        ({"choices": {SV: "w16a8"}, "options": {"agq": True}}, "sam2-micro", [SV, "'agq'"]),
        ({"choices": {QKV: "w7a8"}}, "sam2-micro", [QKV, "w_bits"]),
    ],
)
def test_bad_plan_is_one_line_exit_2_and_nothing_written(
    tmp_path: Path, doc: dict, model: str, needles: list[str]
) -> None:
    out = tmp_path / "out"
    res = _cli(str(_plan(tmp_path, doc)), "--model", model, "--out", str(out))
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert all(n in lines[0] for n in needles), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]


def test_out_is_a_file_or_a_foreign_folder(tmp_path: Path) -> None:
    plan = _plan(tmp_path, {"choices": {QKV: "w8a16"}})
    afile = tmp_path / "afile"
    afile.write_text("keep me")
    res = _cli(str(plan), "--model", "sam2-micro", "--out", str(afile))
    assert res.returncode == 2 and "is a file" in res.stderr and afile.read_text() == "keep me"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    res = _cli(str(plan), "--model", "sam2-micro", "--out", str(foreign))
    assert res.returncode == 2 and "not a bitbudget export" in res.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "foreign", "plan.json"]


def test_export_json_then_replace_previous_export(tmp_path: Path) -> None:
    plan = _plan(tmp_path, {"choices": {QKV: "w4a16"}})
    out = tmp_path / "out"
    first = _cli(str(plan), "--model", "sam2-micro", "--out", str(out), "--json")
    assert first.returncode == 0, first.stderr
    manifest = json.loads(first.stdout)
    assert manifest["layers"][QKV]["weight"]["container"] == "UINT4"
    assert manifest["random_weights"] is True
    plan.write_text(json.dumps({"choices": {QKV: "w8a16"}}))
    second = _cli(str(plan), "--model", "sam2-micro", "--out", str(out), "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads((out / "manifest.json").read_text())["layers"][QKV]["option"] == "w8a16"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "plan.json"]

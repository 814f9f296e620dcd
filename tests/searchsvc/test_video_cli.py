"""``bitbudget video`` and ``bitbudget validate --video`` as a user runs them (subprocess): a real
run on sam2-micro, and bad input ending in one clear line, exit 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "searchsvc.cli", *args]
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600, env=env)


def one_line_error(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr


def test_video_command_runs_and_writes_the_document(tmp_path: Path) -> None:
    out = tmp_path / "v.json"
    args = ("video", "sam2-micro", "--image-size", "128", "--clips", "1", "--frames", "4")
    r = cli(*args, "--uniform", "w8a8", "--policy", "mutual_kv", "--threshold", "1.0",
            "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "J&F vs float" in r.stdout and "random_weights: true" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["format"] == "bitbudget.video_validation/v1"
    assert doc["policy"] == {"name": "mutual_kv", "threshold": 1.0}
    assert doc["summary"]["vs_float"] is not None and doc["plan_layers"] > 0


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("video", "sam-micro"), "not a SAM2 model"),
        (("video", "sam2-micro", "--policy", "lru"), "unknown memory policy 'lru'"),
        (("video", "sam2-micro", "--threshold", "0.9"), "need --policy"),
        (("video", "sam2-micro", "--folder", "/nonexistent/clips"), "does not exist"),
        (("video", "sam2-micro", "--frames", "1"), "at least 2 frames"),
    ],
)
def test_video_bad_input_is_one_line(args: tuple[str, ...], needle: str, tmp_path: Path) -> None:
    one_line_error(cli(*args, "--image-size", "128", cwd=tmp_path), needle)


def test_video_bad_plan_file(tmp_path: Path) -> None:
    bad = tmp_path / "plan.json"
    bad.write_text("{not json")
    r = cli("video", "sam2-micro", "--image-size", "128", "--plan", str(bad), cwd=tmp_path)
    one_line_error(r, "cannot read a JSON plan")


def test_validate_video_locally(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    choices = {"memory_attention.layers.0.linear1": "w4a8"}
    model = {"name": "sam2-micro", "image_size": 128}
    plan.write_text(json.dumps({"model": model, "choices": choices}))
    out = tmp_path / "validation.json"
    r = cli("validate", str(plan), "--video", "--clips", "1", "--frames", "3", "--images", "2",
            "--holdout", "1", "--policy", "sis", "--out", str(out), cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "video J&F vs float (1 clips, sis)" in r.stdout
    doc = json.loads(out.read_text())
    assert doc["format"] == "bitbudget.validation/v1" and "iou" in doc["metrics"]
    video = doc["video"]
    assert video["policy"]["name"] == "sis" and video["plan_layers"] == 1
    assert video["summary"]["vs_float"]["JF"] <= 100 and video["request"]["frames"] == 3


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--policy", "sis"), "--video-folder / --policy need --video"),
        (("--video", "--policy", "lru"), "unknown memory policy 'lru'"),
        (("--video", "--video-folder", "/nonexistent"), "no such folder"),
    ],
)
def test_validate_video_bad_input(extra: tuple[str, ...], needle: str, tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"model": "sam2-micro", "choices": {}}))
    one_line_error(cli("validate", str(plan), *extra, cwd=tmp_path), needle)


def test_validate_video_on_a_sam_model_is_one_line(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"model": {"name": "sam-micro", "image_size": 128}, "choices": {}}))
    one_line_error(cli("validate", str(plan), "--video", cwd=tmp_path), "not a SAM2 model")

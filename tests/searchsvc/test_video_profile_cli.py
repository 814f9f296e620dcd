"""``bitbudget profile MODEL --video`` and ``bitbudget plan MODEL --video`` as a user runs them
(subprocess, sam2-micro): the memory path is profiled on clips and gets real options in the
plan; bad input ends in one clear line, exit 2, no traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

MICRO = ("sam2-micro", "--image-size", "128", "--images", "2", "--candidates", "w8a8,w4a8")
VIDEO = ("--video", "--clips", "1", "--frames", "3")
MEMORY = ("memory_attention.", "memory_encoder.", "obj_ptr_proj", "obj_ptr_tpos_proj")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "searchsvc.cli", *args]
    env = os.environ | {
        "OMP_NUM_THREADS": "1",
        "BITBUDGET_PROFILE_PROCESSES": "1",
        "BITBUDGET_DATA_DIR": str(cwd / "data"),
    }
    env.pop("BITBUDGET_DATABASE_URL", None)  # the embedded default (SQLite under the data dir)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=900, env=env)


def one_line_error(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], r.stderr


def test_profile_video_measures_the_memory_path(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    r = cli("profile", *MICRO, *VIDEO, "--out", str(out), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "memory path: " in r.stdout and "on 1 clips of 3 frames" in r.stdout
    doc = json.loads(out.read_text())
    memory = [n for n in doc["layers"] if n.startswith(MEMORY)]
    assert memory and not [n for n in doc["unmeasured"] if n.startswith(MEMORY)]
    assert doc["request"]["options"]["video"] == {"clips": 1, "frames": 3}
    assert all(set(doc["losses"][n]) == {"w8a8", "w4a8"} for n in memory)
    plain = tmp_path / "plain.json"
    r = cli("profile", *MICRO, "--out", str(plain), cwd=tmp_path)  # the image part: cached
    assert r.returncode == 0 and "served from cache" in r.stdout, r.stdout
    assert [n for n in json.loads(plain.read_text())["unmeasured"] if n.startswith(MEMORY)]


@pytest.mark.slow
def test_plan_video_gives_the_memory_path_real_options(tmp_path: Path) -> None:
    r = cli("plan", *MICRO, "--avg-bits", "5", *VIDEO, "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    plan = json.loads(r.stdout)
    assert plan["video"] == {"clips": 1, "frames": 3} and plan["status"] == "optimal"
    memory = {k: v for k, v in plan["plan"]["choices"].items() if k.startswith(MEMORY)}
    assert memory and set(memory.values()) <= {"w8a8", "w4a8"}
    assert "w4a8" in memory.values()  # not pinned at w8 any more: some are cut to 4 bits


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("profile", "sam-micro", "--video"), "video: sam-micro is not a SAM2 model"),
        (("profile", "sam2-micro", "--video", "--metric", "wais"), "cannot hold memory-path"),
        (("profile", "sam2-micro", "--clips", "2"), "need --video"),
        (("profile", "sam2-micro", "--video", "--clips", "0"), "video.clips"),
        (("plan", "sam-micro", "--avg-bits", "6", "--video"), "not a SAM2 model"),
        (("plan", "sam2-micro", "--avg-bits", "6", "--frames", "3"), "need --video"),
    ],
)
def test_video_profile_bad_input_is_one_line(
    args: tuple[str, ...], needle: str, tmp_path: Path
) -> None:
    extra = ("--out", str(tmp_path / "x.json")) if args[0] == "profile" else ()
    one_line_error(cli(*args, *extra, cwd=tmp_path), needle)
    assert not (tmp_path / "x.json").exists()

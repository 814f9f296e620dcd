"""CLI: `bitbudget profile` writes a profile, serves repeats from the cache, refuses bad input."""

from __future__ import annotations

import json
import subprocess
import sys


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", *args], capture_output=True, text=True, timeout=600
    )


def test_profile_writes_json_and_caches(tmp_path) -> None:
    args = (
        "profile",
        "sam2-micro",
        "--metric",
        "wais",
        "--images",
        "1",
        "--work-dir",
        str(tmp_path / "work"),
        "--out",
        str(tmp_path / "p.json"),
    )
    first = _cli(*args)
    assert first.returncode == 0, first.stderr
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["format"] == "bitbudget.profile/v1" and doc["random_weights"] is True
    assert doc["scores"] and "random_weights: true" in first.stdout
    assert "units by process:" in first.stdout  # on the local pool (default: the cores)
    again = _cli(*args)
    assert again.returncode == 0 and "served from cache" in again.stdout, repr(again.stdout)


def test_profile_bad_input(tmp_path) -> None:
    out = _cli("profile", "sam2-micro", "--metric", "nope", "--out", str(tmp_path / "p.json"))
    assert out.returncode == 2 and "known: kl, fisher_kl" in out.stderr
    out = _cli("profile", "sam2-micro", "--candidates", "w7a8", "--out", str(tmp_path / "p.json"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    out = _cli("profile", "sam2-micro", "--fisher-sample", "0", "--out", str(tmp_path / "p.json"))
    assert out.returncode == 2 and "fisher_sample must be a number in (0, 1]" in out.stderr
    assert "Traceback" not in out.stderr


def test_profile_processes_setting_is_checked() -> None:
    import os

    bad = subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", "profile", "sam2-micro", "--out", "x.json"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ | {"BITBUDGET_PROFILE_PROCESSES": "two"},
    )
    assert bad.returncode == 2 and "BITBUDGET_PROFILE_PROCESSES must be" in bad.stderr
    assert "Traceback" not in bad.stderr

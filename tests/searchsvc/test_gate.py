"""The CI gate: checks by hand, then ``python -m searchsvc.cli gate`` as CI runs it — exit codes,
one line per check, JUnit XML, one-line errors — on constructed validations and on a real plan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from profiling.errors import BadInput
from searchsvc.validation.gate import GateLimits, gate_checks, junit_xml


def validation(measured: int = 1_840_000, rel: float = 0.001, **metrics: Any) -> dict[str, Any]:
    """A constructed ``bitbudget.validation/v1`` document."""
    return {
        "format": "bitbudget.validation/v1",
        "random_weights": True,
        "size": {"measured_bytes": measured, "relative_error": rel, "tolerance": 0.005},
        "metrics": {"iou": 0.97, "kl": 0.0012} | metrics,
        "passed": True,
        "reasons": [],
    }


def lines(doc: dict[str, Any], **limits: Any) -> list[str]:
    return [c.line for c in gate_checks(doc, GateLimits(**limits))]


def test_checks_by_hand() -> None:
    assert lines(validation(), max_size_mb=2.0, min_iou=0.95, max_kl=0.01) == [
        "PASS size 1.84 MB <= 2.00 MB",
        "PASS size-prediction 0.100 % <= 0.500 %",
        "PASS iou 0.9700 >= 0.9500",
        "PASS kl 0.0012 <= 0.01",
    ]
    assert lines(validation(2_100_000, 0.007, iou=0.9), max_size_mb=2, min_iou=0.95) == [
        "FAIL size 2.10 MB > 2.00 MB",
        "FAIL size-prediction 0.700 % > 0.500 %",
        "FAIL iou 0.9000 < 0.9500",
    ]


def test_a_near_miss_never_prints_equal_numbers() -> None:
    (size, _) = gate_checks(validation(2_000_400), GateLimits(2.0))
    assert not size.passed and size.line == "FAIL size 2.0004 MB > 2.0000 MB"


def test_a_missing_metric_fails() -> None:
    doc = validation(iou=None)
    (_, _, iou) = gate_checks(doc, GateLimits(2.0, min_iou=0.5))
    assert not iou.passed and iou.line == "FAIL iou not measured (limit >= 0.5)"


@pytest.mark.parametrize(
    ("limits", "needle"),
    [
        ({"max_size_mb": 0}, "max_size_mb"),
        ({"max_size_mb": 1, "min_iou": 1.5}, "min_iou"),
        ({"max_size_mb": 1, "max_kl": -1}, "max_kl"),
    ],
)
def test_bad_limits(limits: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        GateLimits(**limits)


def test_junit_by_hand() -> None:
    checks = gate_checks(validation(iou=0.5), GateLimits(2.0, min_iou=0.9))
    root = ET.fromstring(junit_xml(checks, {"random_weights": True}))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("tests") == "3" and suite.get("failures") == "1"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["iou"]
    prop = suite.find("properties/property")
    assert prop is not None and prop.get("value") == "true"


# ------------------------------------------------------------ the command, as CI runs it


def gate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "searchsvc.cli", "gate", *args]
    env = os.environ | {"OMP_NUM_THREADS": "1"}  # two busy cores
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=600, env=env)


def write(path: Path, doc: Any) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def test_gate_passes(tmp_path: Path) -> None:
    doc = write(tmp_path / "v.json", validation())
    r = gate("--plan", str(doc), "--max-size-mb", "2", "--min-iou", "0.95", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "PASS size 1.84 MB <= 2.00 MB",
        "PASS size-prediction 0.100 % <= 0.500 %",
        "PASS iou 0.9700 >= 0.9500",
    ]
    assert "random_weights: true" in r.stderr


def test_gate_fails_and_writes_junit(tmp_path: Path) -> None:
    doc = write(tmp_path / "v.json", validation(kl=0.03))
    report = tmp_path / "gate.xml"
    args = ("--plan", str(doc), "--max-size-mb", "1.5", "--max-kl", "0.02")
    r = gate(*args, "--junit", str(report), cwd=tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout.splitlines() == [
        "FAIL size 1.84 MB > 1.50 MB",
        "PASS size-prediction 0.100 % <= 0.500 %",
        "FAIL kl 0.03 > 0.02",
    ]
    suite = ET.parse(report).getroot().find("testsuite")
    assert suite is not None and suite.get("failures") == "2" and suite.get("tests") == "3"


@pytest.mark.parametrize(
    ("content", "args", "needle"),
    [
        ("{not json", ("--max-size-mb", "2"), "not valid JSON"),
        (validation(), (), "--max-size-mb is required"),
        (validation(), ("--max-size-mb", "two"), "expected a number"),
        (validation(), ("--max-size-mb", "2", "--min-iou", "7"), "min_iou"),
        ({"format": "bitbudget.plan/v1", "choices": {}}, ("--max-size-mb", "2"), "--model"),
        ({"choices": {}}, ("--max-size-mb", "2", "--model", "sam9"), "unknown model"),
        (["a list"], ("--max-size-mb", "2"), "JSON object"),
    ],
)
def test_malformed_input_exits_2_with_one_line(
    tmp_path: Path, content: Any, args: tuple[str, ...], needle: str
) -> None:
    doc = write(tmp_path / "in.json", content if isinstance(content, str) else json.dumps(content))
    r = gate("--plan", str(doc), *args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_missing_file_and_both_sources(tmp_path: Path) -> None:
    r = gate("--plan", str(tmp_path / "nope.json"), "--max-size-mb", "2", cwd=tmp_path)
    assert r.returncode == 2 and "cannot read" in r.stderr
    r = gate("--plan", "x.json", "--plan-id", "3", "--max-size-mb", "2", cwd=tmp_path)
    assert r.returncode == 2 and "exactly one" in r.stderr


def test_gate_validates_a_real_plan(tmp_path: Path, sam2_micro: Any) -> None:
    from profiling.inventory import build_inventory
    from profiling.validate import priced_plan

    inv = build_inventory(sam2_micro).to_json()
    names = [x["name"] for x in inv["layers"] if x.get("weight_numel")]
    choices = {n: ("w8a8", "w4a8", "w6a8")[i % 3] for i, n in enumerate(names)}
    plan = priced_plan(inv, choices) | {"model": {"name": "sam2-micro", "image_size": 256}}
    predicted_mb = plan["totals"]["memory_bytes"] / 1e6
    doc = write(tmp_path / "plan.json", plan)
    common = ("--plan", str(doc), "--images", "1", "--holdout", "1", "--min-iou", "0")
    r = gate(
        *common, "--max-size-mb", f"{1.01 * predicted_mb:.4f}", "--junit", "g.xml", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert [line.split()[:2] for line in out] == [
        ["PASS", "size"],
        ["PASS", "size-prediction"],
        ["PASS", "iou"],
    ]
    assert ET.parse(tmp_path / "g.xml").getroot().get("failures") == "0"
    assert "Traceback" not in r.stderr  # (failing limits: the constructed cases above)

"""``bitbudget validate --runtime onnxruntime`` and ``bitbudget gate --max-file-mb`` as a user
runs them: a uniform w8a8 plan of sam2-micro exported and measured in ONNX Runtime against the
float model and against fake-quant; the gate weighs the exported folder; bad input is exit 2
with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from profiling.shipped import export_files


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "searchsvc.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def plan_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from profiling.models import ModelSpec, build_model
    from profiling.quant.plan import uniform_plan

    loaded = build_model(ModelSpec("sam2-micro"))
    choices = {n: s.id for n, s in uniform_plan(loaded.module, "w8a8").specs.items()}
    path = tmp_path_factory.mktemp("ort-cli") / "w8a8.json"
    doc = {"format": "bitbudget.plan/v1", "status": "feasible", "choices": choices}
    path.write_text(json.dumps(doc | {"model": "sam2-micro"}))
    return path


@pytest.fixture(scope="module")
def validated(plan_file: Path) -> dict[str, Any]:
    folder = plan_file.parent
    r = _cli(
        "validate", str(plan_file), "--runtime", "onnxruntime", "--export", "export",
        "--images", "2", "--out", "validation.json", "--json", cwd=folder,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def test_validate_in_onnxruntime(plan_file: Path, validated: dict[str, Any]) -> None:
    ort = validated["runtime"]
    assert ort["name"] == "onnxruntime" and ort["threads"] == 2
    assert validated["metrics"] == ort["metrics"] and ort["metrics"]["masks"] > 0
    assert ort["vs_fake_quant"]["iou"] >= 0.98  # uniform w8a8: what ships is what was validated
    diff = ort["metrics"]["iou"] - ort["fake_quant"]["iou"]
    assert ort["difference"]["iou"] == pytest.approx(diff)
    folder = plan_file.parent / "export"
    assert ort["export"]["folder"] == str(folder.resolve()) or Path(
        ort["export"]["folder"]
    ) == Path("export")
    assert ort["export"]["file_bytes"] == export_files(folder)["file_bytes"]
    manifest = json.loads((folder / "manifest.json").read_text())
    for name in ("image_encoder.onnx", "mask_decoder.onnx"):
        assert ort["export"]["files"][name]["sha256"] == manifest["files"][name]["sha256"]


def test_gate_weighs_the_export(plan_file: Path, validated: dict[str, Any]) -> None:
    folder, mb = plan_file.parent, validated["runtime"]["export"]["file_bytes"] / 1e6
    base = ["gate", "--plan", "validation.json", "--max-size-mb", "100"]
    ok = _cli(*base, "--max-file-mb", f"{2 * mb:.4f}", "--export", "export", cwd=folder)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.splitlines()[-1].startswith("PASS file-size")
    over = _cli(*base, "--max-file-mb", f"{mb / 2:.4f}", "--export", "export", cwd=folder)
    assert over.returncode == 1 and over.stdout.splitlines()[-1].startswith("FAIL file-size")
    # without --export: the bytes the ONNX Runtime validation weighed on disk
    recorded = _cli(*base, "--max-file-mb", f"{mb / 2:.4f}", cwd=folder)
    assert recorded.returncode == 1 and "FAIL file-size" in recorded.stdout


def test_bad_input_is_one_line(plan_file: Path, validated: dict[str, Any]) -> None:
    folder = plan_file.parent
    pytorch = dict(validated)
    pytorch.pop("runtime")
    (folder / "pytorch.json").write_text(json.dumps(pytorch))
    for args, message in [
        (["validate", "pytorch.json", "--runtime", "onnxruntime"], "validation in PyTorch"),
        (["validate", str(plan_file), "--runtime", "tvm"], "unknown runtime 'tvm'"),
        (["validate", str(plan_file), "--export", "x"], "--export needs --runtime onnxruntime"),
        (
            ["validate", str(plan_file), "--runtime", "onnxruntime", "--export", str(plan_file)],
            "is a file, not a folder",
        ),
    ]:
        r = _cli(*args, cwd=folder)
        assert r.returncode == 2, (args, r.stdout)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr

"""``gate --max-file-mb``: the exported ONNX files weighed on disk, by hand and through the CLI
(exit codes, one-line errors), on a folder laid out as ``bitbudget export`` writes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from profiling.errors import BadInput
from profiling.shipped import export_files
from profiling.validate_ort import metric_difference
from searchsvc.validation.gate import GateLimits, gate_checks


def validation(file_bytes: int | None = None) -> dict[str, Any]:
    """A constructed validation; with ``file_bytes``, one run in ONNX Runtime."""
    doc: dict[str, Any] = {
        "format": "bitbudget.validation/v1",
        "random_weights": True,
        "size": {"measured_bytes": 1_000_000, "relative_error": 0.001, "tolerance": 0.005},
        "metrics": {"iou": 0.97, "kl": 0.001},
        "passed": True,
        "reasons": [],
    }
    if file_bytes is not None:
        doc["runtime"] = {"name": "onnxruntime", "export": {"file_bytes": file_bytes}}
    return doc


def folder_of(tmp_path: Path, sizes: dict[str, int]) -> Path:
    """An export folder: the files the manifest lists, of the given sizes, and the manifest."""
    out = tmp_path / "export"
    out.mkdir()
    for name, size in sizes.items():
        (out / name).write_bytes(os.urandom(size))
    files = {name: {"bytes": size} for name, size in sizes.items()}
    (out / "manifest.json").write_text(json.dumps({"format": "x", "files": files}))
    return out


def test_file_size_check_by_hand() -> None:
    limits = GateLimits(2.0, max_file_mb=1.5)
    assert (
        gate_checks(validation(1_250_000), limits)[-1].line == "PASS file-size 1.25 MB <= 1.50 MB"
    )
    assert gate_checks(validation(1_600_000), limits)[-1].line == "FAIL file-size 1.60 MB > 1.50 MB"
    # the files weighed now win over the bytes the validation recorded
    assert gate_checks(validation(1_600_000), limits, 900_000)[-1].passed
    # no exported files anywhere: not measured, so it fails
    missing = gate_checks(validation(), limits)[-1]
    assert not missing.passed and missing.line == "FAIL file-size not measured (limit <= 1.5 MB)"
    assert [c.name for c in gate_checks(validation(1), GateLimits(2.0))] == [
        "size",
        "size-prediction",
    ]
    with pytest.raises(BadInput, match="max_file_mb must be a positive number"):
        GateLimits(2.0, max_file_mb=0)


def test_export_files_weighs_what_the_manifest_lists(tmp_path: Path) -> None:
    out = folder_of(tmp_path, {"image_encoder.onnx": 3000, "mask_decoder.onnx": 1000})
    (out / "stray.txt").write_text("not shipped")
    files = export_files(out)
    manifest = (out / "manifest.json").stat().st_size
    assert set(files["files"]) == {"image_encoder.onnx", "mask_decoder.onnx", "manifest.json"}
    assert files["file_bytes"] == 4000 + manifest
    assert len(files["files"]["image_encoder.onnx"]["sha256"]) == 64
    (out / "mask_decoder.onnx").unlink()
    with pytest.raises(BadInput, match="mask_decoder.onnx is missing"):
        export_files(out)
    with pytest.raises(BadInput, match="not an export folder"):
        export_files(tmp_path)


def test_metric_difference() -> None:
    diff = metric_difference({"iou": 0.9, "kl": 0.02, "masks": 4}, {"iou": 0.95, "kl": None})
    assert diff["iou"] == pytest.approx(-0.05) and diff["kl"] is None and "masks" not in diff


def _gate(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", "gate", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_gate_cli_weighs_an_export_folder(tmp_path: Path) -> None:
    doc = tmp_path / "validation.json"
    doc.write_text(json.dumps(validation()))
    out = folder_of(tmp_path, {"image_encoder.onnx": 600_000, "mask_decoder.onnx": 200_000})
    base = ["--plan", str(doc), "--max-size-mb", "2", "--export", str(out)]
    ok = _gate(*base, "--max-file-mb", "1")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[-1].startswith("PASS file-size 0.80 MB <= 1.00 MB")
    over = _gate(*base, "--max-file-mb", "0.5")
    assert over.returncode == 1 and "FAIL file-size 0.80 MB > 0.50 MB" in over.stdout
    for args, message in [
        (["--plan", str(doc), "--max-size-mb", "2", "--export", str(out)], "--max-file-mb"),
        ([*base, "--max-file-mb", "x"], "--max-file-mb: expected a number"),
        ([*base[:-1], str(tmp_path), "--max-file-mb", "1"], "not an export folder"),
        ([*base, "--max-file-mb", "1", "--runtime", "tvm"], "unknown runtime 'tvm'"),
    ]:
        bad = _gate(*args)
        assert bad.returncode == 2, (args, bad.stdout)
        assert len(bad.stderr.strip().splitlines()) == 1 and message in bad.stderr, bad.stderr


def test_an_export_of_other_weights_is_refused() -> None:
    from profiling.validate_ort import check_exported_weights

    manifest = {"weights_hash": "0bd927f1db94d138", "model": {"seed": 0}}
    check_exported_weights(manifest, "0bd927f1db94d138")
    refused = r"not the model's 1234567890ab… \(export_plan built seed 0\)"
    with pytest.raises(BadInput, match=refused):
        check_exported_weights(manifest, "1234567890abcdef")

"""Validation in ONNX Runtime against validation in PyTorch fake-quant: what it costs and what
it finds, on one machine in one run.

For uniform w8a8 and w4a16 plans of --model (default sam2-micro at 256 px; seeded random weights
unless --checkpoint), ``run_validation`` runs three ways on the same held-out photographs:
``runtime="pytorch"`` (today's validation), ``runtime="onnxruntime"`` with the export written
first (what ``bitbudget validate --runtime onnxruntime`` does), and ``runtime="onnxruntime"`` on
that export again (``exported=True``: what the service does when the plan was exported before),
after one untimed validation that pays the one-time costs (image decoding, imports). An ONNX
Runtime validation also runs the fake-quant one (its figures sit beside ONNX Runtime's), so its
time is the PyTorch time plus the export and the ONNX Runtime passes. Reported: wall seconds and
their ratios to the PyTorch validation, ONNX Runtime's mask IoU against float and against fake-
quant, the IoU difference, and the bytes on disk.

Run (the development machine has 2 shared cores: the load average is recorded):
    nice -n 10 .venv/bin/python bench/validate_runtime.py
Writes bench/results/validate_runtime.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

from profiling.models import ModelSpec, build_model
from profiling.quant.plan import uniform_plan
from profiling.validate import DataSpec, run_validation

OUT = Path(__file__).parent / "results" / "validate_runtime.json"


def _timed(**kwargs: Any) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    doc = run_validation(**kwargs)
    return doc, round(time.perf_counter() - started, 2)


def _uniform(loaded: Any, candidate: str) -> dict[str, Any]:
    choices = {n: s.id for n, s in uniform_plan(loaded.module, candidate).specs.items()}
    return {"format": "bitbudget.plan/v1", "status": "feasible", "choices": choices}


def run_plan(loaded: Any, candidate: str, data: DataSpec, work: Path) -> dict[str, Any]:
    """The three validations of one uniform plan, and what they found."""
    common = {"plan": _uniform(loaded, candidate), "model": loaded, "data": data}
    common["artifact"] = work / f"{candidate}.safetensors"
    folder = work / candidate
    _, pytorch_s = _timed(**common)
    doc, export_s = _timed(**common, runtime="onnxruntime", export_dir=folder)
    again, reuse_s = _timed(**common, runtime="onnxruntime", export_dir=folder, exported=True)
    ort = doc["runtime"]
    return {
        "candidate": candidate,
        "seconds": {
            "pytorch": pytorch_s,
            "onnxruntime_with_export": export_s,
            "onnxruntime_on_export": reuse_s,
        },  # fmt: skip
        "ratio_to_pytorch": {
            "onnxruntime_with_export": round(export_s / pytorch_s, 2),
            "onnxruntime_on_export": round(reuse_s / pytorch_s, 2),
        },
        "iou_vs_float": {
            "onnxruntime": ort["metrics"]["iou"],
            "fake_quant": ort["fake_quant"]["iou"],
        },
        "iou_difference": ort["difference"]["iou"],
        "iou_onnxruntime_vs_fake_quant": ort["vs_fake_quant"]["iou"],
        "same_metrics_on_reuse": again["metrics"] == doc["metrics"],
        "file_bytes": ort["export"]["file_bytes"],
        "packed_tensor_bytes": doc["size"]["measured_bytes"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sam2-micro")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--candidates", default="w8a8,w4a16")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--holdout", type=int, default=4)
    args = parser.parse_args()
    spec = ModelSpec(args.model, image_size=args.image_size, checkpoint=args.checkpoint)
    loaded = build_model(spec)
    data = DataSpec(images=args.images, holdout=args.holdout)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        warm = {"plan": _uniform(loaded, "w8a8"), "model": loaded, "data": data}
        _timed(**warm, artifact=Path(tmp) / "warm.safetensors")  # one-time costs, not timed
        rows = [run_plan(loaded, c, data, Path(tmp)) for c in args.candidates.split(",")]
    doc = {
        "bench": "validate_runtime",
        "model": {"name": spec.name, "image_size": spec.size},
        "random_weights": loaded.random_weights,
        "data": {"images": args.images, "holdout": args.holdout},
        "plans": rows,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
        },  # fmt: skip
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=1) + "\n")
    print(OUT.read_text())


if __name__ == "__main__":
    main()

"""Predicted vs measured artifact bytes and compression ratios for uniform plans.

On sam2.1-hiera-tiny (seeded random weights unless --checkpoint is given; sizes do not depend on
the weights' values): uniform w8, w4 and w2 weights (16-bit activations, so no calibration is
needed) and one mixed plan. Each plan is applied (``apply_plan``), packed (``save_artifact``) into
a temporary safetensors file whose tensor bytes (header aside) are compared with
``predict_bytes``, the size rule the solvers' cost tables share. Ratios are against the same
model stored in BF16 and FP32.

Run: .venv/bin/python bench/quant_size.py [--model sam2.1-hiera-tiny] (writes
bench/results/quant_size.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from profiling.models import ModelSpec, build_model
from profiling.quant.apply import apply_plan
from profiling.quant.pack import predict_bytes, save_artifact, size_breakdown
from profiling.quant.plan import quantizable_layers, uniform_plan
from solvers import sizes

OUT = Path(__file__).parent / "results" / "quant_size.json"
UNIFORM = ("w8a16", "w4a16", "w2a16")


def mixed_plan(module: torch.nn.Module) -> dict[str, str]:
    """Cycle w8 / w4 / w3 / w2 over the weight layers in inventory order (a deterministic mix)."""
    cycle = ("w8a16", "w4a16", "w3a16", "w2a16")
    names = [n for n, kind in quantizable_layers(module).items() if not kind.startswith("matmul")]
    return {n: cycle[i % len(cycle)] for i, n in enumerate(names)}


def measure(loaded: Any, name: str, plan: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    qmodel = apply_plan(loaded, plan)
    predicted = predict_bytes(loaded.module, plan)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}.safetensors"
        measured = save_artifact(qmodel, plan, path, {"name": loaded.spec.name})
        file_bytes = path.stat().st_size
    numel = sum(t.numel() for t in loaded.module.state_dict().values() if t.is_floating_point())
    bf16, fp32 = sizes.float_bytes(numel, "bfloat16"), sizes.float_bytes(numel, "float32")
    return {
        "plan": name,
        "predicted_bytes": predicted,
        "measured_bytes": measured,
        "file_bytes": file_bytes,
        "relative_error": abs(measured - predicted) / predicted,
        "breakdown": size_breakdown(loaded.module, plan),
        "ratio_vs_bf16": round(bf16 / measured, 3),
        "ratio_vs_fp32": round(fp32 / measured, 3),
        "bf16_bytes": bf16,
        "fp32_bytes": fp32,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1-hiera-tiny")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    loaded = build_model(ModelSpec(args.model, checkpoint=args.checkpoint))
    rows = []
    for cand in UNIFORM:
        rows.append(measure(loaded, f"uniform {cand}", uniform_plan(loaded.module, cand)))
        print(json.dumps(rows[-1]), flush=True)
    rows.append(measure(loaded, "mixed w8/w4/w3/w2 cycle", mixed_plan(loaded.module)))
    print(json.dumps(rows[-1]), flush=True)
    worst = max(r["relative_error"] for r in rows)
    result = {
        "benchmark": "quant_size",
        "command": "python bench/quant_size.py",
        "model": args.model,
        "random_weights": loaded.random_weights,
        "float_dtype_of_unquantized_tensors": "bfloat16",
        "plans": rows,
        "targets": {"max_relative_error": worst, "within_0.5_percent": worst <= 0.005},
        "machine": {"python": platform.python_version(), "torch": torch.__version__},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["targets"]))


if __name__ == "__main__":
    main()

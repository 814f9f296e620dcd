"""Mask IoU against the float model for uniform precision, with and without PTQ4SAM / Q-SAM2.

On sam2.1-hiera-tiny at 512 px (seeded random weights unless --checkpoint is given), uniform
w{8,6,4,3,2}a{16,8} plans are applied with plain post-training quantization and with BIG + AGQ
+ VRC switched on (``PlanOptions``), calibrated on the calibration photographs and measured on
the held-out photographs (``measure_fidelity``: mean mask IoU and per-pixel KL of the mask
logits against the float model, with the same point and box prompts).

Run: .venv/bin/python bench/fidelity_uniform.py [--size 512] [--images 4] [--holdout 4]
(writes bench/results/fidelity_uniform.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from profiling.calibration import load_source, make_sets
from profiling.evaluate import measure_fidelity, reference_outputs
from profiling.models import LoadedModel, ModelSpec, build_model
from profiling.models.adapter import TaskAdapter
from profiling.quant.apply import apply_plan
from profiling.quant.plan import PlanOptions, uniform_plan

OUT = Path(__file__).parent / "results" / "fidelity_uniform.json"
W_BITS = (8, 6, 4, 3, 2)
A_BITS = (16, 8)
METHODS = {"ptq": PlanOptions(), "big+agq+vrc": PlanOptions(big=True, agq=True, vrc=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1-hiera-tiny")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--images", type=int, default=4, help="calibration photographs")
    ap.add_argument("--holdout", type=int, default=4, help="held-out photographs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    spec = ModelSpec(args.model, image_size=args.size, checkpoint=args.checkpoint)
    loaded = build_model(spec)
    calib, held = make_sets(load_source("shipped"), holdout=args.holdout, n_calib=args.images)
    ref = TaskAdapter(loaded)
    reference = reference_outputs(ref, held.samples)
    rows: list[dict[str, Any]] = []
    for a in A_BITS:
        for w in W_BITS:
            for method, options in METHODS.items():
                t0 = time.perf_counter()
                plan = uniform_plan(loaded.module, f"w{w}a{a}", options)
                needs_calib = a < 16 or options.big or options.vrc
                qmodel = apply_plan(loaded, plan, calib if needs_calib else None)
                quant = TaskAdapter(LoadedModel(spec, qmodel, ""))
                fid = measure_fidelity(ref, quant, held.samples, reference).to_dict()
                row = {"w_bits": w, "a_bits": a, "method": method}
                row |= {k: fid[k] for k in ("iou", "iou_min", "kl")}
                row["seconds"] = round(time.perf_counter() - t0, 1)
                rows.append(row)
                print(json.dumps(row), flush=True)

    def iou(w: int, a: int, m: str) -> float:
        return next(r["iou"] for r in rows if (r["w_bits"], r["a_bits"], r["method"]) == (w, a, m))

    falls = all(
        iou(hi, a, m) >= iou(lo, a, m) - 1e-3
        for a in A_BITS
        for m in METHODS
        for hi, lo in zip(W_BITS, W_BITS[1:], strict=False)
    )
    result = {
        "benchmark": "fidelity_uniform",
        "command": "python bench/fidelity_uniform.py",
        "model": args.model,
        "image_size": args.size,
        "random_weights": loaded.random_weights,
        "calibration_images": [s.image.name for s in calib.samples],
        "heldout_images": [s.image.name for s in held.samples],
        "fidelity": "mean mask IoU (logits > 0) and mean per-pixel Bernoulli KL vs float",
        "rows": rows,
        "checks": {
            "w8a16_iou_at_least_0.95": iou(8, 16, "ptq") >= 0.95,
            "iou_falls_as_weight_bits_fall": falls,
        },
        "minutes": round((time.perf_counter() - started) / 60, 1),
        "machine": {"cpu_threads": args.threads, "python": platform.python_version()},
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["checks"]))


if __name__ == "__main__":
    main()

"""Why the export stores weights the way it does: ONNX Runtime's kernels on SAM-shaped GEMMs.

One ``MatMul`` per row, at shapes of sam2.1-hiera-tiny's image encoder at 512 px (token rows x
in -> out features), in the forms the export can write, each timed in ONNX Runtime (2 threads,
median of ``--repeats`` runs after warm-up, all forms of a shape interleaved run by run, thread
pools not spinning between runs so that the idle sessions leave the cores alone):

  * ``float32``: a float weight;
  * ``w8a8 uint8 weights`` / ``w8a8 int8 weights``: QuantizeLinear -> DequantizeLinear on the
    input (uint8) and an 8-bit per-channel weight with per-channel zero points, stored unsigned
    or signed (the same dequantized values): both fuse into ``MatMulIntegerToFloat``;
  * ``w4a16`` / ``w8a16`` at ``accuracy_level`` 4 (ORT's default) and 1 (float32 compute): a
    weight-only DequantizeLinear that ORT fuses into ``MatMulNBits``.

The ratios (float32 time / form time, within one run) are what ``docs/export.md`` cites for
storing asymmetric 8-bit weights signed and for running MatMulNBits at accuracy level 1.

Run: .venv/bin/python bench/ort_kernels.py (writes bench/results/ort_kernels.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from profiling.export.ort_model import NBITS_ACCURACY_KEY, session
from profiling.latency.runtimes import machine_info

OUT = Path(__file__).parent / "results" / "ort_kernels.json"

# (input shape, out features): qkv / mlp GEMMs of hiera-tiny's stages at 512 px
SHAPES: list[tuple[list[int], int]] = [
    ([1, 128, 128, 96], 384),
    ([9, 14, 14, 384], 1152),
    ([9, 14, 14, 384], 2304),
    ([1, 32, 32, 384], 1536),
    ([1, 32, 32, 1536], 384),
]
# form -> (weight kind, accuracy level)
FORMS: dict[str, tuple[str, int | None]] = {
    "float32": ("float", None),
    "w8a8 uint8 weights": ("u8a8", None),
    "w8a8 int8 weights": ("s8a8", None),
    "w4a16 accuracy 4": ("w4", 4),
    "w4a16 accuracy 1": ("w4", 1),
    "w8a16 accuracy 4": ("w8", 4),
    "w8a16 accuracy 1": ("w8", 1),
}


def gemm_model(shape: list[int], n: int, kind: str) -> bytes:
    """One MatMul ``x (shape) @ W (K, n)`` with its weight in the form ``kind``."""
    k = shape[-1]
    rng = np.random.default_rng(0)
    inits: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []
    x = "x"
    if kind == "float":
        inits.append(numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "w"))
    else:
        if kind in ("u8a8", "s8a8"):
            inits += [
                numpy_helper.from_array(np.array(0.05, np.float32), "a_scale"),
                numpy_helper.from_array(np.array(128, np.uint8), "a_zero"),
            ]
            nodes += [
                helper.make_node("QuantizeLinear", ["x", "a_scale", "a_zero"], ["xq"]),
                helper.make_node("DequantizeLinear", ["xq", "a_scale", "a_zero"], ["xd"]),
            ]
            x = "xd"
        bits = 4 if kind == "w4" else 8
        levels = 2**bits
        q = rng.integers(0, levels, (k, n))
        zp = rng.integers(levels // 4, 3 * levels // 4, n)
        if kind == "s8a8":  # the same values, stored signed
            q, zp = q - 128, zp - 128
        dtype = {
            "u8a8": TensorProto.UINT8,
            "s8a8": TensorProto.INT8,
            "w8": TensorProto.UINT8,
            "w4": TensorProto.UINT4,
        }[kind]
        inits += [
            helper.make_tensor("w_q", dtype, [k, n], q.flatten().tolist()),
            numpy_helper.from_array(np.full(n, 0.02, np.float32), "w_scale"),
            helper.make_tensor("w_zero", dtype, [n], zp.tolist()),
        ]
        nodes.append(
            helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], axis=1)
        )
    nodes.append(helper.make_node("MatMul", [x, "w"], ["y"]))
    graph = helper.make_graph(
        nodes,
        "gemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    return model.SerializeToString()


def measure_shape(shape: list[int], n: int, threads: int, repeats: int) -> dict[str, Any]:
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    # several sessions live at once: their idle thread pools must not spin on the 2 cores
    quiet = {"session.intra_op.allow_spinning": "0"}
    sessions = {
        form: session(gemm_model(shape, n, kind), threads, nbits_accuracy=acc, config=quiet)
        for form, (kind, acc) in FORMS.items()
    }
    for s in sessions.values():
        for _ in range(3):
            s.run(None, {"x": x})
    times: dict[str, list[float]] = {f: [] for f in sessions}
    for _ in range(repeats):
        for form, s in sessions.items():
            t0 = time.perf_counter()
            s.run(None, {"x": x})
            times[form].append((time.perf_counter() - t0) * 1000.0)
    f32 = times["float32"]
    return {
        "input_shape": shape,
        "out_features": n,
        "median_ms": {f: round(statistics.median(t), 3) for f, t in times.items()},
        "speedup_vs_float32": {
            f: round(statistics.median(a / b for a, b in zip(f32, t, strict=True)), 3)
            for f, t in times.items()
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    import onnxruntime

    cpu = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    rows = []
    for shape, n in SHAPES:
        row = measure_shape(shape, n, args.threads, args.repeats)
        print(json.dumps(row), flush=True)
        rows.append(row)
    summary = {
        f: {
            "min": min(r["speedup_vs_float32"][f] for r in rows),
            "max": max(r["speedup_vs_float32"][f] for r in rows),
        }
        for f in FORMS
    }
    doc = {
        "benchmark": "ort_kernels",
        "command": "python bench/ort_kernels.py",
        "onnxruntime": onnxruntime.__version__,
        "accuracy_level_key": NBITS_ACCURACY_KEY,
        "threads": args.threads,
        "repeats": args.repeats,
        "machine": {
            "cpu_model": machine_info()["cpu"],
            "avx512_vnni": "avx512_vnni" in cpu,
            "amx_int8": "amx_int8" in cpu,
            "load_average": list(os.getloadavg()),
        },
        "shapes": rows,
        "speedup_vs_float32_range": summary,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

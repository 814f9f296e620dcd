"""Profiler speed on sam2.1-hiera-tiny: Fisher-KL (all layers, 8 images) against exact KL on a
fixed sample of layers (extrapolated to all layers), their rank correlation on the sample, and
the speed-up of block-input caching over re-running the whole model per perturbation.

Times are CPU seconds of the bench process (the machine is shared; wall seconds are recorded
too). Run: .venv/bin/python bench/profile_speed.py [--sizes 512 1024] [--images 8] [--sample 12]
Writes bench/results/profile_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from profiling.models import ModelSpec
from profiling.sensitivity import DEFAULT_CANDIDATES, ProfileRequest, run_profile
from profiling.sensitivity.request import FISHER_SAMPLE

OUT = Path(__file__).parent / "results" / "profile_speed.json"


def _timed(req: ProfileRequest) -> tuple[float, dict]:
    """CPU seconds of this process for one profile (wall seconds are in its stats).

    The machine is shared: wall time depends on what else runs, CPU time much less, so the
    ratios below are taken on CPU time; ``wall_seconds`` is kept beside it.
    """
    with tempfile.TemporaryDirectory() as work:
        start, wall = time.process_time(), time.perf_counter()
        prof = run_profile(req, work, device="cpu")
        doc = prof.to_json()
        doc["stats"]["wall_seconds"] = round(time.perf_counter() - wall, 2)
        cpu = time.process_time() - start
        # split the CPU time like the wall time between set-up and compute
        share = doc["stats"]["compute_seconds"] / max(doc["stats"]["seconds"], 1e-9)
        doc["stats"]["cpu_compute_seconds"] = cpu * share
        doc["stats"]["cpu_setup_seconds"] = cpu * (1 - share)
        return cpu, doc


def bench_size(size: int, images: int, sample: int) -> dict:
    load_before = list(os.getloadavg())
    spec = ModelSpec("sam2.1-hiera-tiny", image_size=size)
    fisher_s, fisher = _timed(ProfileRequest(spec, "fisher_kl", DEFAULT_CANDIDATES, images=images))
    # the same estimate over every token (no token sampling), to show what sampling costs
    full_s, full = _timed(
        ProfileRequest(
            spec, "fisher_kl", DEFAULT_CANDIDATES, images=images, options={"fisher_sample": 1.0}
        )
    )
    layers = list(fisher["layers"])
    w_bits = {int(c[1:].split("a")[0]) for c in DEFAULT_CANDIDATES} - {16}
    a_bits = {int(c.split("a")[1]) for c in DEFAULT_CANDIDATES} - {16}
    step = max(len(layers) // sample, 1)
    picked = layers[::step][:sample]
    opts = {"layers": picked}
    kl_s, kl = _timed(ProfileRequest(spec, "kl", ("w4a16",), images=images, options=opts))
    _, nocache = _timed(
        ProfileRequest(
            spec, "kl", ("w4a16",), images=images, options={"layers": picked, "cache": False}
        )
    )
    # set-up (build, inventory, float pass) once, then one perturbation per sampled layer
    per_perturbation = kl["stats"]["cpu_compute_seconds"] / len(picked)
    kl_all_s = kl["stats"]["cpu_setup_seconds"] + per_perturbation * len(layers) * (
        len(w_bits) + len(a_bits)
    )
    rho = spearmanr(
        [kl["layers"][n]["weight"]["4"] for n in picked],
        [fisher["layers"][n]["weight"]["4"] for n in picked],
    ).correlation
    rho_full = spearmanr(
        [kl["layers"][n]["weight"]["4"] for n in picked],
        [full["layers"][n]["weight"]["4"] for n in picked],
    ).correlation
    sampled_vs_full = {
        f"w{b}": round(
            float(
                spearmanr(
                    [fisher["layers"][n]["weight"][str(b)] for n in layers],
                    [full["layers"][n]["weight"][str(b)] for n in layers],
                ).correlation
            ),
            4,
        )
        for b in sorted(w_bits)
    }
    rel = [
        abs(fisher["layers"][n]["weight"]["4"] / full["layers"][n]["weight"]["4"] - 1)
        for n in layers
        if full["layers"][n]["weight"]["4"] > 0
    ]
    return {
        "image_size": size,
        "images": images,
        "layers": len(layers),
        "sampled_layers": picked,
        "time": "CPU seconds of the process (wall seconds beside them)",
        "fisher_kl_seconds": round(fisher_s, 2),
        "fisher_kl_wall_seconds": fisher["stats"]["wall_seconds"],
        "fisher_sample": FISHER_SAMPLE,
        "fisher_kl_setup_seconds": round(fisher["stats"]["cpu_setup_seconds"], 2),
        "fisher_rows_bytes_per_image": fisher["stats"].get("fisher_rows_bytes"),
        "fisher_kl_every_token_seconds": round(full_s, 2),
        "token_sampling_speedup": round(full_s / fisher_s, 2),
        "spearman_sampled_vs_every_token_all_layers": sampled_vs_full,
        "sampled_vs_every_token_w4_relative_error_median": round(float(np.median(rel)), 4),
        "sampled_vs_every_token_w4_relative_error_max": round(float(np.max(rel)), 4),
        "kl_sample_seconds": round(kl_s, 2),
        "kl_sample_wall_seconds": kl["stats"]["wall_seconds"],
        "kl_all_layers_all_candidates_seconds_extrapolated": round(kl_all_s, 1),
        "speedup_fisher_vs_kl": round(kl_all_s / fisher_s, 1),
        "spearman_w4_on_sample": round(float(rho), 4),
        "spearman_w4_on_sample_every_token": round(float(rho_full), 4),
        "speedup_fisher_every_token_vs_kl": round(kl_all_s / full_s, 1),
        "kl_sample_compute_seconds": round(kl["stats"]["cpu_compute_seconds"], 2),
        "kl_sample_compute_seconds_without_block_cache": round(
            nocache["stats"]["cpu_compute_seconds"], 2
        ),
        "block_cache_speedup": round(
            nocache["stats"]["cpu_compute_seconds"] / kl["stats"]["cpu_compute_seconds"], 2
        ),
        "kl_setup_seconds": round(kl["stats"]["cpu_setup_seconds"], 2),
        "kl_seconds_per_layer_perturbation": round(per_perturbation, 3),
        "cache_speedup_note": "ratio of perturbation compute times on the sampled layers",
        "load_average_1_5_15_before_after": [load_before, list(os.getloadavg())],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--sample", type=int, default=12)
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows: list[dict] = []
    for size in args.sizes:  # the JSON is rewritten after each size: a long run keeps its rows
        rows.append(bench_size(size, args.images, args.sample))
        write(rows)
    for r in rows:
        print(
            f"{r['image_size']:>5}px  fisher {r['fisher_kl_seconds']:>8.1f}s  "
            f"kl(all, extrap.) {r['kl_all_layers_all_candidates_seconds_extrapolated']:>9.1f}s  "
            f"x{r['speedup_fisher_vs_kl']:<6} rho {r['spearman_w4_on_sample']:.3f}  "
            f"(every token: {r['fisher_kl_every_token_seconds']:.1f}s "
            f"rho {r['spearman_w4_on_sample_every_token']:.3f})  "
            f"cache x{r['block_cache_speedup']}"
        )
    print(f"wrote {OUT}")


def write(rows: list[dict]) -> None:
    """Write ``rows``, keeping the rows of other sizes from an earlier run of the file."""
    sizes = {r["image_size"] for r in rows}
    if OUT.exists():
        earlier = json.loads(OUT.read_text()).get("results", [])
        rows = sorted(
            [r for r in earlier if r["image_size"] not in sizes] + rows,
            key=lambda r: r["image_size"],
        )
    doc = {
        "benchmark": "profile_speed",
        "model": "sam2.1-hiera-tiny",
        "random_weights": True,
        "machine": {
            "cpu_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "candidates": list(DEFAULT_CANDIDATES),
        "results": rows,
        "targets": {
            f"{r['image_size']}px": {
                "fisher_at_least_50x_faster": r["speedup_fisher_vs_kl"] >= 50,
                "spearman_at_least_0.8": r["spearman_w4_on_sample"] >= 0.8,
            }
            for r in rows
        },
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()

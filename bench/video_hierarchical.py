"""The hierarchical (video) plan against the image-only plan at equal memory (issue 18): part
``hierarchical`` of bench/video.py.

Both plans come from the same image-path profile (``--metric``: fisher_kl or kl, on
calibration images); the hierarchical one adds the memory path profiled on calibration clips
(``run_hierarchical_profile``; seeded apart from the evaluation clips), so the solver can trade
memory-path bits against image-path bits; the image-only plan keeps the memory path pinned at
w8a8 (what every plan got before). Both are solved by cpsat at one memory budget (the uniform
w{bits}a8 plan's), applied, and tracked (FIFO) over the evaluation clips; J&F against the
float model's tracks. Target: the hierarchical plan's J&F >= the image-only plan's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from profiling.inventory import build_inventory
from profiling.quant.apply import apply_plan
from profiling.quant.plan import plan_from_json
from profiling.sensitivity import ProfileRequest, problem_from_profile, run_profile
from profiling.video.hierarchical import (
    VideoCalibration,
    run_hierarchical_profile,
    video_request,
)
from profiling.video.profile import MEMORY_PREFIXES
from solvers import Problem, solve

__all__ = ["hierarchical_vs_image", "price"]


def price(problem: Problem, choices: dict[str, str]) -> float:
    """Memory bytes of ``choices`` under ``problem``."""
    memory = float(problem.fixed.get("memory_bytes", 0.0))
    for layer in problem.layers:
        opt = next(o for o in layer.options if o.id == choices[layer.name])
        memory += float(opt.costs.get("memory_bytes", 0.0))
    return memory


def _summary(problem: Problem, choices: dict[str, str], plan: Any = None) -> dict[str, Any]:
    bits = [int(c[1:].split("a")[0]) for c in choices.values()]
    mem = [int(c[1:].split("a")[0]) for n, c in choices.items() if n.startswith(MEMORY_PREFIXES)]
    return {
        "memory_bytes": price(problem, choices),
        "mean_layer_bits": float(np.mean(bits)),
        "memory_path_layers": len(mem),
        "memory_path_mean_bits": float(np.mean(mem)) if mem else None,
        "status": None if plan is None else plan.status,
        "objective": None if plan is None else plan.objective,
    }


def _plans(
    args: argparse.Namespace, loaded: Any, work: Path, candidates: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(plans by name with their choices, what the profiles took)."""
    req = ProfileRequest(
        loaded.spec, args.metric, candidates, images=args.images, seed=args.seed + 1
    )
    cal = VideoCalibration(args.calib_clips, args.calib_frames)
    t0 = time.perf_counter()

    def run_image(r: ProfileRequest, progress: Any) -> Any:
        return run_profile(r, work / "profiles", device="cpu", progress=progress, processes=1)

    image = run_image(req, None)
    t_image = time.perf_counter() - t0
    merged = run_hierarchical_profile(video_request(req, cal), work, run_image)
    inv = build_inventory(loaded).to_json()
    p_img = problem_from_profile(image, inv, {})
    p_hier = problem_from_profile(merged, inv, {})
    want = f"w{args.bits}a8"
    uni = {ly.name: want if want in ly.option_ids() else ly.options[0].id for ly in p_img.layers}
    budget = price(p_img, uni)
    out: dict[str, Any] = {}
    for name, problem in (("image_only", p_img), ("hierarchical", p_hier)):
        plan = solve(problem.with_budget(memory_bytes=budget), "cpsat", time_limit=args.solve_s)
        out[name] = {"choices": dict(plan.choices)} | _summary(problem, plan.choices, plan)
    # diagnostic (over budget): the image-only plan with the hierarchical plan's memory path,
    # i.e. what the memory-path cuts alone cost in J&F
    mixed = out["image_only"]["choices"] | {
        n: c for n, c in out["hierarchical"]["choices"].items() if n.startswith(MEMORY_PREFIXES)
    }
    diag = {"choices": mixed} | _summary(p_hier, mixed)
    out["diagnostic_image_only_with_hierarchical_memory_path"] = diag
    info = {
        "budget_memory_bytes": budget,
        "budget_from": f"uniform {want} (memory path pinned at w8a8)",
        "image_profile_seconds": round(t_image, 1),
        "video_profile_seconds": merged.stats["video"].get("seconds"),
        "calibration_clips": cal.to_dict() | {"seed": req.seed},
    }
    return out, info


def hierarchical_vs_image(
    args: argparse.Namespace, loaded: Any, ready: Any, clips: list, calib: Any, ref: list,
    work: Path, candidates: tuple[str, ...], track: Any,
) -> dict[str, Any]:  # fmt: skip
    """The two plans, tracked under FIFO over ``clips`` against the float runs ``ref``."""
    plans, info = _plans(args, loaded, work, candidates)
    results: dict[str, Any] = {}
    for name, doc in plans.items():
        qmodel = apply_plan(ready, plan_from_json({"choices": doc["choices"]}), calib).eval()
        res = track(qmodel, clips, {"fifo": {"name": "fifo"}}, ref)
        res.pop("_runs")
        res.pop("_image_encoder_ms")
        plan = {k: v for k, v in doc.items() if k != "choices"}
        results[name] = {"plan": plan, "jf_vs_float": res["fifo"]["jf_vs_float"]}
        print(f"  {name}: {results[name]}", flush=True)
    cut = results["diagnostic_image_only_with_hierarchical_memory_path"]["jf_vs_float"]["JF"]
    hier = results["hierarchical"]["jf_vs_float"]["JF"]
    img = results["image_only"]["jf_vs_float"]["JF"]
    return {
        **info,
        "results": results,
        "target": {
            "rule": "hierarchical plan J&F vs float >= image-only plan's, at equal memory",
            "jf_difference": round(hier - img, 3),
            "jf_cost_of_memory_path_cuts_alone": round(cut - img, 3),
            "jf_gain_of_image_path_bits": round(hier - cut, 3),
            "met": bool(hier >= img),
        },
    }

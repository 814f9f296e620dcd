"""Plan quality, the product's central claim: at equal memory, are mixed-precision plans more
faithful to the float model than uniform precision, and does the predicted loss rank plans?

On sam2.1-hiera-tiny at 512 px (seeded random weights unless a checkpoint is given), with 4
calibration and 4 held-out photographs: plans of each method at the memory of uniform 4-bit
and 3-bit weights (8-bit activations everywhere) —
  default    fisher_kl losses + measured synergy pair terms (measured between the last 6
             adjacent layers of the image-encoder trunk: joint perturbations are the most
             expensive measurement), solved with cpsat
  kl         exact per-layer KL on a sample of layers (the profiler's ``options.layers``),
             fisher_kl on the others (exact KL on every layer does not fit the time cap)
  mixqsam    Mix-QSAM importance + synergy approximation (W=A bits, applied as wXa8) with the
             re-implementation's budgets at the target width b: size P·b, BOPs Σ MACs·b²
  wais       Mix-QSAM2 WAIS objective, average bit-width b
  greedy     the greedy backend on the default problem
— are applied (``apply_plan``) and measured on the held-out images (``measure_fidelity``:
mask IoU and per-pixel KL against the float model). A 10-point front of the default method
gives the Spearman correlation between predicted loss and measured KL / (1 − IoU).

Attention sites (``attention`` key): at the same two memory levels, the default plan without
attention sites (they stay in float) against the default plan whose problem also holds every
attention matmul site (fisher_kl site losses, options a8/a6/a4 and a8log/a6log/a4log): whole-
model BOPs (weight layers plus both attention matmuls, a float site at 16 x 16 bits) and
fidelity side by side. ``--only attention`` runs just this part (the profiles and evaluations
it shares with a full run are cached) and updates that key of the existing JSON.

Run: .venv/bin/python bench/plan_quality.py  [--cap-minutes 25] [--only attention]  (writes
bench/results/plan_quality.json; profiles and evaluations are cached in --work, so a re-run
resumes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.stats import spearmanr

from profiling.calibration import load_source, make_sets
from profiling.errors import BitbudgetError
from profiling.evaluate import measure_fidelity, reference_outputs
from profiling.inventory import build_inventory
from profiling.models import LoadedModel, ModelSpec, build_model
from profiling.models.adapter import TaskAdapter
from profiling.quant.apply import apply_plan
from profiling.sensitivity import Profile, ProfileRequest, problem_from_profile, run_profile
from solvers import Problem, solve

OUT = Path(__file__).parent / "results" / "plan_quality.json"
SITE_SUFFIXES = (".qk_matmul", ".sv_matmul")
CANDIDATES = ("w8a8", "w6a8", "w4a8", "w3a8", "w2a8")
BITS = (2, 3, 4, 6, 8)
METHODS = ("default", "kl", "mixqsam", "wais", "greedy")
LEVELS = (4, 3)  # uniform weight bit-widths whose memory the methods are compared at


class Bench:
    """Shared state: model, data, float reference, caches and the time cap."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.started = time.perf_counter()
        self.spec = ModelSpec(args.model, image_size=args.size, checkpoint=args.checkpoint)
        self.loaded = build_model(self.spec)
        self.inventory = build_inventory(self.loaded).to_json()
        self.calib, self.held = make_sets(
            load_source("shipped"), holdout=args.holdout, n_calib=args.images
        )
        self.reference = reference_outputs(TaskAdapter(self.loaded), self.held.samples)
        self.cache_file = self.work / "evaluations.json"
        self.cache = json.loads(self.cache_file.read_text()) if self.cache_file.exists() else {}
        self.skipped = 0

    def minutes(self) -> float:
        return (time.perf_counter() - self.started) / 60

    def profile(self, metric: str, **options: Any) -> Profile:
        req = ProfileRequest(
            self.spec, metric, CANDIDATES, images=self.args.images, options=options
        )
        t0 = time.perf_counter()
        prof = run_profile(req, self.work / "profiles", device="cpu")
        prof.stats["bench_seconds"] = round(time.perf_counter() - t0, 1)
        print(f"[{self.minutes():5.1f} min] profile {metric}: {prof.stats}", flush=True)
        return prof

    def evaluate(self, choices: dict[str, str]) -> dict[str, Any] | None:
        """Fidelity of a plan on the held-out images (cached by its choices); None past the cap."""
        plan = {  # 8-bit activations on weight layers; attention sites keep their own option
            n: c if n.endswith(SITE_SUFFIXES) else f"{c.split('a')[0]}a8"
            for n, c in choices.items()
        }
        key = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]
        if key in self.cache:
            return dict(self.cache[key])
        if self.minutes() > self.args.cap_minutes:
            self.skipped += 1
            return None
        t0 = time.perf_counter()
        quant = LoadedModel(self.spec, apply_plan(self.loaded, plan, self.calib), "")
        fid = measure_fidelity(
            TaskAdapter(self.loaded), TaskAdapter(quant), self.held.samples, self.reference
        ).to_dict()
        result = {"iou": fid["iou"], "iou_min": fid["iou_min"], "kl": fid["kl"]}
        result["iou_head_mae"] = fid["iou_head_mae"]
        result["seconds"] = round(time.perf_counter() - t0, 1)
        self.cache[key] = result
        self.cache_file.write_text(json.dumps(self.cache))
        print(f"[{self.minutes():5.1f} min] evaluated {key}: {result}", flush=True)
        return dict(result)


def price(problem: Problem, choices: dict[str, str]) -> tuple[float, float]:
    """(memory_bytes, predicted loss) of ``choices`` under ``problem``."""
    memory, loss = float(problem.fixed.get("memory_bytes", 0.0)), 0.0
    index = {}
    for layer in problem.layers:
        i = layer.option_ids().index(choices[layer.name])
        index[layer.name] = i
        memory += layer.options[i].costs.get("memory_bytes", 0.0)
        loss += layer.options[i].loss
    for pair in problem.pairs:
        loss += float(pair.matrix[index[pair.a], index[pair.b]])
    return memory, loss


def uniform(problem: Problem, bits: int) -> dict[str, str]:
    """Every choosable layer at ``wBa8``; pinned layers keep their only option."""
    want = f"w{bits}a8"
    return {
        layer.name: want if want in layer.option_ids() else layer.options[0].id
        for layer in problem.layers
    }


def hybrid(kl: Profile, fisher: Profile) -> Profile:
    """Exact-KL entries where measured, the Fisher estimate elsewhere."""
    return Profile.from_json(kl.to_json() | {"layers": fisher.layers | kl.layers, "metric": "kl"})


def sampled(fisher: Profile, n: int) -> list[str]:
    """``n`` layers spread evenly over execution order."""
    names = list(fisher.layers)
    step = max(len(names) // n, 1)
    return names[::step][:n]


def method_problems(b: Bench) -> tuple[dict[str, Problem], dict[str, Any]]:
    """One problem per method (budgets set later with ``with_budget``) and profile stats."""
    fisher = b.profile("fisher_kl")
    kl_layers = sampled(fisher, b.args.kl_layers)
    trunk = [n for n in fisher.layers if ".trunk.blocks." in n]
    syn_layers = trunk[-b.args.synergy_layers :]  # adjacent layers, cheap to re-run
    kl = b.profile("kl", layers=kl_layers)
    synergy = b.profile("synergy", layers=syn_layers)
    mixqsam = b.profile("mixqsam")
    wais = b.profile("wais")
    inv, huge = b.inventory, {"memory_bytes": 1e12}
    default = problem_from_profile(fisher, inv, huge, pair_profile=synergy)
    problems = {
        "default": default,
        "kl": problem_from_profile(hybrid(kl, fisher), inv, huge),
        "greedy": default,
    }
    # the literature's methods state their budget as a target bit-width: Mix-QSAM a size budget
    # P·b and a BOPs budget Σ MACs·b² (W = A bits), Mix-QSAM2 an average bit-width; built per
    # budget level (the memory budget is added on top by ``compare``)
    for bits in LEVELS:
        opts = {"bits": BITS, "target_bits": bits}
        problems[f"mixqsam@{bits}"] = problem_from_profile(mixqsam, inv, huge, options=opts)
        problems[f"wais@{bits}"] = problem_from_profile(
            wais, inv, huge, options=opts | {"act_bits": 8}
        )
    stats = {
        p.metric: {
            "profile_seconds": p.stats.get("seconds"),
            "computed_in_this_run": not p.stats.get("cache_hit"),
            "layers": len(p.layers) or len(p.scores),
            "pairs": len(p.pairs) or len(p.synergy),
        }
        for p in (fisher, kl, synergy, mixqsam, wais)
    }
    stats["kl"]["exact_layers"] = kl_layers
    stats["synergy"]["measured_layers"] = syn_layers
    return problems, stats


def solved(b: Bench, method: str, problem: Problem, memory: float) -> dict[str, Any]:
    """Solve ``method`` at ``memory`` bytes, evaluate the plan, return a row."""
    backend = "greedy" if method == "greedy" else "cpsat"
    plan = solve(problem.with_budget(memory_bytes=memory), backend, time_limit=b.args.solve_s)
    row: dict[str, Any] = {"status": plan.status, "solver": backend}
    if not plan.has_solution:
        return row
    bits = [int(c[1:].split("a")[0]) for c in plan.choices.values()]
    row |= {"objective": plan.objective, "memory_bytes": plan.totals.get("memory_bytes")}
    row |= {"mean_layer_bits": float(np.mean(bits))}
    fid = b.evaluate(dict(plan.choices))
    return row | (fid or {"skipped": "time cap"})


def compare(b: Bench, problems: dict[str, Problem], bits: int) -> dict[str, Any]:
    """Every method and uniform precision at the memory of uniform ``bits``-bit weights."""
    choices = uniform(problems["default"], bits)
    memory, loss = price(problems["default"], choices)
    base: dict[str, Any] = {"memory_bytes": memory, "objective": loss}
    base |= b.evaluate(choices) or {"skipped": "time cap"}
    rows = {m: solved(b, m, problems.get(f"{m}@{bits}") or problems[m], memory) for m in METHODS}
    return {"memory_bytes": memory, "uniform": base, "methods": rows}


def front(b: Bench, problem: Problem, lo: float, mid: float, hi: float, n: int) -> list[dict]:
    """The default method at ``n`` budgets: ``lo``, ``mid`` and n-2 more up to ``hi``."""
    budgets = [lo, *np.linspace(mid, hi, n - 1)]
    return [{"budget_bytes": float(m)} | solved(b, "default", problem, float(m)) for m in budgets]


def whole_bops(problem: Problem, choices: dict[str, str], site_macs: dict[str, int]) -> float:
    """BOPs of every weight layer and attention site; a site the plan leaves out runs in float
    (MACs x 16 x 16)."""
    total = 0.0
    for layer in problem.layers:
        if layer.name in choices:
            i = layer.option_ids().index(choices[layer.name])
            total += float(layer.options[i].costs.get("bops", 0.0))
    return total + sum(m * 256.0 for n, m in site_macs.items() if n not in choices)


def attention_row(
    b: Bench, problems: dict[str, Problem], memory: float, site_macs: dict[str, int]
) -> dict[str, Any]:
    """The default plan without and with attention sites at ``memory`` bytes."""
    out: dict[str, Any] = {"memory_bytes": memory}
    for label, problem in (("without", problems["default"]), ("with", problems["attention"])):
        plan = solve(problem.with_budget(memory_bytes=memory), "cpsat", time_limit=b.args.solve_s)
        row: dict[str, Any] = {"status": plan.status}
        if plan.has_solution:
            choices = dict(plan.choices)
            sites = {n: c for n, c in choices.items() if n.endswith(SITE_SUFFIXES)}
            row |= {"objective": plan.objective, "memory_bytes": plan.totals.get("memory_bytes")}
            row |= {"bops_g": round(whole_bops(problem, choices, site_macs) / 1e9, 3)}
            row |= {"sites_quantized": len(sites), "site_options": _counts(sites.values())}
            row |= b.evaluate(choices) or {"skipped": "time cap"}
        out[label] = row
    w, wo = out["with"], out["without"]
    if "bops_g" in w and "bops_g" in wo:
        out["bops_with_over_without"] = round(w["bops_g"] / wo["bops_g"], 4)
    if "iou" in w and "iou" in wo:
        out["iou_with_minus_without"] = round(w["iou"] - wo["iou"], 4)
    return out


def _counts(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return dict(sorted(out.items()))


def attention_problems(b: Bench) -> tuple[dict[str, Problem], dict[str, Any], dict[str, int]]:
    """The default problem without and with every attention site (their fisher_kl losses from a
    sites-only profile, merged with the plain fisher_kl profile's weight layers)."""
    fisher = b.profile("fisher_kl")
    trunk = [n for n in fisher.layers if ".trunk.blocks." in n]
    synergy = b.profile("synergy", layers=trunk[-b.args.synergy_layers :])
    site_macs = {
        x["name"]: int(x["macs"])
        for x in b.inventory["layers"]
        if x["name"].endswith(SITE_SUFFIXES) and not x["name"].startswith("memory_")
    }
    sites = b.profile("fisher_kl", attention=True, layers=sorted(site_macs))
    merged = Profile.from_json(fisher.to_json() | {"layers": fisher.layers | sites.layers})
    inv, huge = b.inventory, {"memory_bytes": 1e12}
    problems = {
        "default": problem_from_profile(fisher, inv, huge, pair_profile=synergy),
        "attention": problem_from_profile(merged, inv, huge, pair_profile=synergy),
    }
    stats = {
        "profile_seconds": sites.stats.get("seconds"),
        "computed_in_this_run": not sites.stats.get("cache_hit"),
        "sites_profiled": len(sites.layers),
    }
    return problems, stats, {n: m for n, m in site_macs.items() if n in sites.layers}


def attention_section(
    b: Bench, memory: dict[int, float], prepared: tuple | None = None
) -> dict[str, Any]:
    """The ``attention`` key: without vs with attention sites at each memory level."""
    t0 = time.perf_counter()
    load_before = os.getloadavg()
    problems, stats, site_macs = prepared or attention_problems(b)
    rows = {str(bits): attention_row(b, problems, memory[bits], site_macs) for bits in LEVELS}
    return {
        "command": "python bench/plan_quality.py --only attention",
        "what": "default plan (fisher_kl + synergy pairs, cpsat) without vs with attention sites",
        "site_options": "a8, a6, a4 (qk and sv); a8log, a6log, a4log (sv: AGQ log2 on probs)",
        "bops": "whole model: weight layers at w x a, sites at a x a, float sites at 16 x 16",
        "sites_in_model_off_memory_path": len(site_macs),
        "profile": stats,
        "levels": rows,
        "evaluations_skipped_by_cap": b.skipped,
        "load_average_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "minutes_for_the_rows": round((time.perf_counter() - t0) / 60, 1),
        "minutes_whole_run": round(b.minutes(), 1),
    }


def only_attention(b: Bench) -> None:
    """``--only attention``: the attention rows at the uniform 4- and 3-bit memory, merged into
    the existing result file (written whole to a temporary file, then renamed)."""
    prepared = attention_problems(b)
    problems = prepared[0]
    memory = {
        bits: price(problems["default"], uniform(problems["default"], bits))[0] for bits in LEVELS
    }
    section = attention_section(b, memory, prepared)
    out = Path(b.args.out)
    doc = json.loads(out.read_text()) if out.exists() else {"benchmark": "plan_quality"}
    doc["attention"] = section
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, out)
    print(json.dumps(section["levels"], indent=1))


def _rho(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    return round(float(spearmanr(xs, ys).correlation), 4)


def targets(result: dict[str, Any]) -> dict[str, Any]:
    """Was each claim met? (by mean mask IoU against the float model; ties count as met)."""
    out: dict[str, Any] = {}
    for bits, cmp in result["budgets"].items():
        uni = cmp["uniform"].get("iou")
        ious = {m: r.get("iou") for m, r in cmp["methods"].items()}
        if uni is None or any(v is None for v in ious.values()):
            out[f"{bits}bit"] = {"measured": False}
            continue
        mixed_ok = {m: v >= uni for m, v in ious.items()}
        out[f"{bits}bit"] = {
            "every_mixed_at_least_uniform": all(mixed_ok.values()),
            "mixed_at_least_uniform": mixed_ok,
            "default_best": ious["default"] >= max(ious.values()),
            "best_method": max(ious, key=lambda m: ious[m]),
        }
    rho = result["front"]["spearman_loss_vs_kl"]
    out["spearman_at_least_0.8"] = None if rho is None else rho >= 0.8
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1-hiera-tiny")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--checkpoint", default=None, help="official-format checkpoint (trained)")
    ap.add_argument("--images", type=int, default=4, help="calibration images")
    ap.add_argument("--holdout", type=int, default=4, help="held-out images")
    ap.add_argument("--kl-layers", type=int, default=11, help="layers with exact KL")
    ap.add_argument("--synergy-layers", type=int, default=6, help="last trunk layers, synergy")
    ap.add_argument("--points", type=int, default=10, help="front points")
    ap.add_argument("--solve-s", type=float, default=20.0, help="solver time limit per plan")
    ap.add_argument("--cap-minutes", type=float, default=27.0, help="no new evaluation after")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="/tmp/bitbudget-bench/plan_quality")
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--only", choices=["attention"], default=None, help="run only this part")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    b = Bench(args)
    if args.only == "attention":
        only_attention(b)
        return
    problems, profile_stats = method_problems(b)
    budgets = {bits: compare(b, problems, bits) for bits in LEVELS}
    m8, _ = price(problems["default"], uniform(problems["default"], 8))
    points = front(
        b,
        problems["default"],
        budgets[3]["memory_bytes"],
        budgets[4]["memory_bytes"],
        m8,
        args.points,
    )
    done = [p for p in points if p.get("kl") is not None]
    losses = [p["objective"] for p in done]
    result: dict[str, Any] = {
        "benchmark": "plan_quality",
        "command": "python bench/plan_quality.py",
        "model": args.model,
        "image_size": args.size,
        "random_weights": b.loaded.random_weights,
        "calibration_images": [s.image.name for s in b.calib.samples],
        "heldout_images": [s.image.name for s in b.held.samples],
        "candidates": list(CANDIDATES),
        "activations": "8-bit everywhere (Mix-QSAM's W=A ids applied as wXa8)",
        "fidelity": "mean mask IoU (logits > 0) and mean per-pixel Bernoulli KL vs float",
        "profiles": profile_stats,
        "budgets": {str(k): v for k, v in budgets.items()},
        "front": {
            "points": points,
            "spearman_loss_vs_kl": _rho(losses, [p["kl"] for p in done]),
            "spearman_loss_vs_one_minus_iou": _rho(losses, [1 - p["iou"] for p in done]),
            "measured_points": len(done),
        },
        "evaluations_skipped_by_cap": b.skipped,
        "minutes": round(b.minutes(), 1),
        "machine": {"cpu_threads": args.threads, "python": platform.python_version()},
    }
    result["attention"] = attention_section(
        b, {bits: budgets[bits]["memory_bytes"] for bits in LEVELS}
    )
    result["targets"] = targets(result)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["targets"], indent=1))


if __name__ == "__main__":
    try:
        main()
    except BitbudgetError as exc:  # a bad model name, checkpoint or setting: say so, no traceback
        raise SystemExit(f"plan_quality: {exc}") from None

"""Measured latency tables against the exported model, end to end (issue 16's benchmark).

sam2.1-hiera-tiny, ONNX Runtime, 2 threads: measure the per-layer table of the image encoder's
layers (timing it), solve a 10-point latency front on the table, export each plan
(``profiling.export``) and time the exported image encoders with ``time_exported_encoder``: 20
runs per plan, in 5 interleaved passes over all plans (so that load drifting on a shared machine
falls on every plan alike; the median of the pass medians is kept). Then measure Build-3 pair
costs on chained layer pairs. Reports Spearman(predicted, measured) and the median relative
error of: the additive table alone, + the non-layer constant, + the constant and pair costs, and
the shipped roofline estimates on the same plans. Losses are a quantization-noise proxy
(Σ numel·4^-w + input numel·4^-a, normalised): the front is there to span latencies, not to
rank fidelity. Weights are seeded random (no checkpoint can be downloaded here).

Run: PYTHONPATH=. .venv/bin/python bench/latency.py [--image-size 256] [--no-pairs] [--out F]
(writes bench/results/latency.json, first without the pair costs, then with them; the table's
cells, the exports and the pair costs stay in --work, so a re-run reuses them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

OUT = Path(__file__).parent / "results" / "latency.json"
OPTIONS = ("w8a8", "w4a8", "w8a16", "w4a16", "w16a16")
TARGETS = {"spearman": 0.9, "median_rel_error": 0.15}
ROUNDS = 5  # timing passes over all exported plans (20 runs per plan in all)


def _say(msg: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {msg}\n")
    sys.stderr.flush()


def _problem(table: dict[str, Any], inventory: dict[str, Any], layers: list[str]) -> Any:
    from solvers import Problem
    from solvers.costs import parse_candidate

    entries = {x["name"]: x for x in inventory["layers"]}
    numel = sum(entries[n]["weight_numel"] for n in layers)
    acts = sum(_prod(entries[n]["in_shape"]) for n in layers)
    out = []
    for name in layers:
        e, options = entries[name], []
        for cid in OPTIONS:
            w, a = parse_candidate(cid)
            loss = e["weight_numel"] / numel * 4.0**-w + _prod(e["in_shape"]) / acts * 4.0**-a
            cell = table["latency_table"][name][cid]
            options.append({"id": cid, "loss": loss, "latency_ms": cell["median_ms"]})
        out.append({"name": name, "options": options})
    raw = {"format": "bitbudget.problem/v1", "layers": out, "fixed": {"latency_ms": 0.0}}
    return Problem.from_dict(raw | {"budget": {"latency_ms": None}})


def _prod(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _roofline(name: str, inventory: dict[str, Any], choices: dict[str, str]) -> float | None:
    from profiling.sensitivity.problem import layer_descs
    from solvers.costs import load_hardware, parse_candidate

    hw = load_hardware(name)
    descs = layer_descs(inventory)
    total = 0.0
    for layer, cid in choices.items():
        w, a = parse_candidate(cid)
        if hw.compute_type(w, a, descs[layer].kind) is None:
            return None
        total += hw.latency_ms(descs[layer], w, a)  # type: ignore[union-attr]
    return total


def _metrics(predicted: list[float | None], measured: list[float]) -> dict[str, Any]:
    from scipy.stats import spearmanr

    pairs = [(p, m) for p, m in zip(predicted, measured) if p is not None]
    if len(pairs) < 3:
        return {"points": len(pairs), "spearman": None, "median_rel_error": None}
    p, m = zip(*pairs)
    rel = [abs(a - b) / b for a, b in pairs]
    rho = float(spearmanr(p, m).statistic)
    return {"points": len(pairs), "spearman": rho, "median_rel_error": statistics.median(rel)}


def _export(choices: dict[str, str], size: int, folder: Path) -> float:
    """Export a plan into ``folder`` (kept: a re-run reuses it); the seconds it took."""
    from profiling.export.bundle import export_plan

    plan = {"format": "bitbudget.plan/v1", "status": "optimal", "choices": choices}
    stamp = folder / "choices.json"
    if stamp.exists() and json.loads(stamp.read_text()) == choices:
        return float(json.loads((folder.parent / f"{folder.name}.seconds").read_text()))
    if folder.exists():
        shutil.rmtree(folder)
    start = time.perf_counter()
    export_plan(plan, model="sam2.1-hiera-tiny", image_size=size, out_dir=folder)
    seconds = time.perf_counter() - start
    stamp.write_text(json.dumps(choices))
    (folder.parent / f"{folder.name}.seconds").write_text(json.dumps(seconds))
    return seconds


def _time_interleaved(folders: list[Path], threads: int, rounds: int, per_round: int) -> list[Any]:
    """Each exported encoder timed in ``rounds`` passes over all of them (``per_round`` runs a
    pass): load that drifts during the run falls on every plan alike. Per plan: the median of
    its pass medians, the passes' spread, and the runs."""
    from profiling.export.ort_model import time_exported_encoder

    passes: list[list[float]] = [[] for _ in folders]
    for r in range(rounds):
        for i, folder in enumerate(folders):
            timed = time_exported_encoder(folder, threads=threads, warmup=2, repeats=per_round)
            passes[i].append(timed["median_ms"])
        _say(f"timing pass {r + 1}/{rounds} done")
    return [
        {
            "median_ms": statistics.median(p),
            "pass_medians_ms": p,
            "p10_ms": min(p),
            "p90_ms": max(p),
            "repeats": rounds * per_round,
        }
        for p in passes
    ]


def run(
    size: int, points: int, threads: int, repeats: int, work: Path, out: Path, pairs: bool = True
) -> dict[str, Any]:
    from profiling.inventory import build_inventory
    from profiling.latency import MeasureRequest, measure_table
    from profiling.latency.end_to_end import encoder_layers
    from profiling.models import ModelSpec, build_model
    from solvers.pareto import pareto_front

    load_before = os.getloadavg()
    loaded = build_model(ModelSpec("sam2.1-hiera-tiny", image_size=size))
    inventory = build_inventory(loaded).to_json()
    req = MeasureRequest(
        "sam2.1-hiera-tiny",
        image_size=size,
        candidates=OPTIONS[:-1],
        runtime="onnxruntime",
        threads=threads,
        repeats=repeats,
        layers=tuple(encoder_layers(loaded)),  # what the exported encoder runs; the rest waits
    )
    start = time.perf_counter()
    table = measure_table(req, work / f"tiny-{size}.json", loaded=loaded, progress=_progress())
    table_seconds = time.perf_counter() - start
    encoder = list(table["end_to_end_layers"])
    _say(f"table: {len(table['latency_table'])} layers in {table_seconds:.0f} s")

    front = pareto_front(_problem(table, inventory, encoder), "latency_ms", points, method="dp")
    folders = [work / f"export-{size}-{i}" for i in range(len(front.points))]
    seconds = []
    for i, (point, folder) in enumerate(zip(front.points, folders)):
        seconds.append(_export(dict(point.plan.choices), size, folder))
        _say(f"exported point {i + 1}/{len(front.points)} in {seconds[-1]:.0f} s")
    timings = _time_interleaved(folders, threads, ROUNDS, 20 // ROUNDS)
    rows = []
    for point, timed, sec in zip(front.points, timings, seconds):
        rows.append(_point(point, table, inventory, timed | {"export_seconds": sec}))
        _say(
            f"predicted {rows[-1]['with_constant_ms']:.1f} ms, "
            f"measured {rows[-1]['measured_ms']:.1f} ms"
        )
    result = {
        "model": "sam2.1-hiera-tiny",
        "image_size": size,
        "random_weights": True,
        "runtime": table["measured"]["runtime"],
        "runtime_version": table["measured"]["runtime_version"],
        "threads": threads,
        "repeats_per_cell": repeats,
        "host": table["measured"]["host"],
        "cpu": table["measured"]["cpu"],
        "load_average_before": [round(x, 2) for x in load_before],
        "table_seconds": table_seconds,
        "table_layers": len(table["latency_table"]),
        "float_encoder_ms": table["float_ms"]["median_ms"],
        "fixed_ms": table["fixed_ms"],
        "front_points": len(rows),
        "points": rows,
        "targets": TARGETS,
    }
    _finish(result, rows, pair_costs=None)
    _write(out, result)  # what the pairs add comes next: a run cut short keeps this
    if not pairs:
        result["pairs"] = "not measured (--no-pairs)"
        return result
    start = time.perf_counter()
    chained = _pairs(inventory, encoder)
    cached = work / f"pairs-{size}.json"
    if cached.exists():
        pair_costs = json.loads(cached.read_text())
    else:
        pair_costs = _measure_pairs(loaded, inventory, table, chained, threads, repeats)
        cached.write_text(json.dumps(pair_costs))
    result |= {"pair_seconds": time.perf_counter() - start, "pairs": len(chained)}
    _say(f"pair costs: {len(chained)} pairs in {result['pair_seconds']:.0f} s")
    _finish(result, rows, pair_costs=pair_costs)
    return result


def _pairs(inventory: dict[str, Any], encoder: list[str]) -> list[tuple[str, str]]:
    from profiling.latency.pairs import chained_pairs

    return chained_pairs(inventory, encoder)


def _measure_pairs(
    loaded: Any, inventory: Any, table: Any, chained: Any, threads: int, repeats: int
) -> Any:
    from profiling.latency.pairs import measure_pair_costs

    return measure_pair_costs(
        loaded, inventory, table, chained, OPTIONS, threads=threads, repeats=repeats,
        progress=_progress(),
    )  # fmt: skip


def _point(point: Any, table: Any, inventory: Any, timed: dict[str, Any]) -> dict[str, Any]:
    from solvers.costs import hardware_profiles

    choices = dict(point.plan.choices)
    cells = sum(table["latency_table"][n][c]["median_ms"] for n, c in choices.items())
    return {
        "budget_ms": point.budget,
        "loss": point.plan.objective,
        "choices": choices,
        "options": {o: sum(1 for c in choices.values() if c == o) for o in OPTIONS},
        "measured_ms": timed["median_ms"],
        "measured_p10_ms": timed["p10_ms"],
        "measured_p90_ms": timed["p90_ms"],
        "measured_pass_medians_ms": timed["pass_medians_ms"],
        "export_seconds": timed["export_seconds"],
        "additive_ms": cells,
        "with_constant_ms": cells + table["fixed_ms"],
        "roofline_ms": {h: _roofline(h, inventory, choices) for h in hardware_profiles()},
    }


def _finish(result: dict[str, Any], rows: list[dict[str, Any]], pair_costs: Any) -> None:
    """The metrics of each predictor over the front (pairs once they are measured)."""
    from profiling.latency.pairs import pair_latency
    from solvers.costs import hardware_profiles

    measured = [r["measured_ms"] for r in rows]
    predictors = {
        "additive": _metrics([r["additive_ms"] for r in rows], measured),
        "with_constant": _metrics([r["with_constant_ms"] for r in rows], measured),
    }
    if pair_costs is not None:
        for r in rows:
            r["pairs_ms"] = pair_latency(pair_costs, r["choices"])
            r["with_constant_and_pairs_ms"] = r["with_constant_ms"] + r["pairs_ms"]
        predictors["with_constant_and_pairs"] = _metrics(
            [r["with_constant_and_pairs_ms"] for r in rows], measured
        )
    result["predictors"] = predictors
    result["roofline"] = {
        h: _metrics([r["roofline_ms"][h] for r in rows], measured) for h in hardware_profiles()
    }
    result["targets_met"] = {
        k: v["spearman"] is not None
        and v["spearman"] >= TARGETS["spearman"]
        and v["median_rel_error"] <= TARGETS["median_rel_error"]
        for k, v in predictors.items()
    }
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]


def _write(out: Path, result: dict[str, Any]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    tmp.replace(out)


def _progress() -> Any:
    last = [0.0]

    def say(message: str, fraction: float) -> None:
        if fraction - last[0] >= 0.05 or fraction >= 1.0:
            last[0] = fraction
            _say(f"{100 * fraction:5.1f}% {message}")

    return say


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--points", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per table cell")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-latency")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--no-pairs",
        action="store_true",
        help="skip the Build-3 pair costs (86 layer pairs x 25 option pairs: hours at 1024 px)",
    )
    args = parser.parse_args()
    result = run(
        args.image_size,
        args.points,
        args.threads,
        args.repeats,
        args.work,
        args.out,
        pairs=not args.no_pairs,
    )
    _write(args.out, result)
    _say(f"wrote {args.out}: {json.dumps(result['predictors'])}")


if __name__ == "__main__":
    main()

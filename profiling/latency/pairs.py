"""Build 3 of issue 16: what the additive model misses between two adjacent layers.

For a data-flow edge a -> b whose shapes chain (a's output is b's input), the two layers' ONNX
graphs are joined with ``onnx.compose.merge_models`` and timed as one; the pair cost of options
(oa, ob) is t(a+b) - t(a, oa) - t(b, ob): the cost of the precision change between them (an
extra QuantizeLinear / DequantizeLinear) and any fusion the runtime does or cannot do.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from profiling.latency.timing import time_callable

__all__ = ["chained_pairs", "measure_pair_costs", "pair_latency"]


def chained_pairs(inventory: Mapping[str, Any], layers: Sequence[str]) -> list[tuple[str, str]]:
    """Edges a -> b among ``layers`` (linear / conv2d) where a's output shape is b's input."""
    entries = {x["name"]: x for x in inventory["layers"]}
    wanted = set(layers)
    out = []
    for a, b in inventory.get("edges", []):
        if a not in wanted or b not in wanted:
            continue
        ea, eb = entries[a], entries[b]
        if {ea["kind"], eb["kind"]} <= {"linear", "conv2d"} and ea["out_shape"] == eb["in_shape"]:
            out.append((a, b))
    return out


def _chain(entry_a: Any, entry_b: Any, oa: str, ob: str, modules: Mapping[str, Any]) -> Any:
    from onnx import compose

    from profiling.export.layer_onnx import layer_model

    graphs = []
    for entry, option, prefix in ((entry_a, oa, "a_"), (entry_b, ob, "b_")):
        module = modules[entry["name"]]
        proto = layer_model(
            entry, option, list(entry["in_shape"]), weight=module.weight.detach(), bias=module.bias
        )
        graphs.append(compose.add_prefix(proto, prefix))
    return compose.merge_models(graphs[0], graphs[1], io_map=[("a_y", "b_x")])


def _runner(proto: Any, threads: int, x: np.ndarray) -> Callable[[], Any]:
    from profiling.export.ort_model import session

    sess = session(proto.SerializeToString(), threads)
    feed = {"a_x": x}
    return lambda: sess.run(None, feed)


def measure_pair_costs(
    loaded: Any,
    inventory: Mapping[str, Any],
    table: Mapping[str, Any],
    pairs: Sequence[tuple[str, str]],
    options: Sequence[str],
    *,
    threads: int = 2,
    warmup: int = 3,
    repeats: int = 20,
    progress: Callable[[str, float], None] | None = None,
) -> list[dict[str, Any]]:
    """``[{"a", "b", "options": [...], "cost_ms": [[...]]}]``: chained time minus both cells."""
    entries = {x["name"]: x for x in inventory["layers"]}
    modules = dict(loaded.module.named_modules())
    cells = table["latency_table"]
    out = []
    for i, (a, b) in enumerate(pairs):
        x = np.random.default_rng(0).standard_normal(entries[a]["in_shape"]).astype(np.float32)
        matrix = []
        for oa in options:
            row = []
            for ob in options:
                run = _runner(_chain(entries[a], entries[b], oa, ob, modules), threads, x)
                timed = time_callable(run, warmup=warmup, repeats=repeats)
                alone = cells[a][oa]["median_ms"] + cells[b][ob]["median_ms"]
                row.append(timed["median_ms"] - alone)
            matrix.append(row)
        out.append({"a": a, "b": b, "options": list(options), "cost_ms": matrix})
        if progress is not None:
            progress(f"pair {a} -> {b}", (i + 1) / len(pairs))
    return out


def pair_latency(pair_costs: Sequence[Mapping[str, Any]], choices: Mapping[str, str]) -> float:
    """Σ over the pairs of the cost at the options ``choices`` gives them (float elsewhere)."""
    total = 0.0
    for p in pair_costs:
        idx = {o: i for i, o in enumerate(p["options"])}
        oa, ob = choices.get(p["a"], "w16a16"), choices.get(p["b"], "w16a16")
        total += float(p["cost_ms"][idx[oa]][idx[ob]])
    return total

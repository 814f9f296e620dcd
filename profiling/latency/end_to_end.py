"""The float image encoder timed whole: the baseline the per-layer cells are checked against."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from profiling.latency.runtimes import WEIGHT_TYPES, torch_threads
from profiling.latency.timing import time_callable

__all__ = ["encoder_layers", "time_float_encoder", "MIN_DECILE_RUNS"]

MIN_DECILE_RUNS = 10


def _pixels(loaded: Any) -> torch.Tensor:
    from profiling.models.adapter import TaskAdapter

    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return TaskAdapter(loaded).preprocess(image)


def encoder_layers(loaded: Any) -> list[str]:
    """The weight layers one float ``embed`` runs, in the order they ran."""
    from profiling.models.adapter import TaskAdapter

    ran: list[str] = []
    handles = [
        mod.register_forward_hook(lambda *_a, _n=name: ran.append(_n) if _n not in ran else None)
        for name, mod in loaded.module.named_modules()
        if isinstance(mod, WEIGHT_TYPES)
    ]
    try:
        with torch.no_grad():
            TaskAdapter(loaded).embed(_pixels(loaded))
    finally:
        for h in handles:
            h.remove()
    return ran


def _time_torch(loaded: Any, threads: int, warmup: int, repeats: int) -> dict[str, Any]:
    from profiling.models.adapter import TaskAdapter

    adapter, pixels = TaskAdapter(loaded), _pixels(loaded)
    with torch_threads(threads), torch.no_grad():
        return time_callable(lambda: adapter.embed(pixels), warmup=warmup, repeats=repeats)


def _time_ort(loaded: Any, threads: int, warmup: int, repeats: int) -> dict[str, Any]:
    from profiling.export.bundle import export_plan
    from profiling.export.ort_model import time_exported_encoder

    plan = {"format": "bitbudget.plan/v1", "status": "optimal", "choices": {}}
    with tempfile.TemporaryDirectory(prefix="bitbudget-float-") as tmp:
        out = Path(tmp) / "export"
        spec = loaded.spec
        export_plan(
            plan, model=spec.name, checkpoint=spec.checkpoint, image_size=spec.size, out_dir=out
        )
        # at least 10 runs: its p10 / p90 are exclusive deciles, extrapolated below 9 samples
        runs = max(repeats, MIN_DECILE_RUNS)
        timed = time_exported_encoder(out, threads=threads, warmup=warmup, repeats=runs)
    keep = ("median_ms", "p10_ms", "p90_ms", "repeats")
    return {k: timed[k] for k in keep} | {"spread": timed["p90_ms"] - timed["p10_ms"]}


def time_float_encoder(
    loaded: Any, runtime: str, threads: int, warmup: int, repeats: int
) -> tuple[dict[str, Any], list[str]]:
    """The float image encoder's timing cell in ``runtime``, and the layers it runs."""
    layers = encoder_layers(loaded)
    timer = _time_ort if runtime == "onnxruntime" else _time_torch
    return timer(loaded, threads, warmup, repeats), layers

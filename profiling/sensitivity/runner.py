"""``run_profile``: build the model and data, run one metric, checkpoint per unit, cache whole
profiles by their content key."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from profiling.calibration import load_source, make_sets
from profiling.inventory import build_inventory
from profiling.models import build_model
from profiling.models.adapter import TaskAdapter
from profiling.quant.spec import parse_candidate
from profiling.sensitivity.context import Context
from profiling.sensitivity.fisher import run_fisher
from profiling.sensitivity.kl import run_kl
from profiling.sensitivity.mixqsam import run_mixqsam
from profiling.sensitivity.perturb import InputRanges
from profiling.sensitivity.profile import Profile
from profiling.sensitivity.request import ProfileRequest
from profiling.sensitivity.store import UnitStore
from profiling.sensitivity.synergy import run_synergy
from profiling.sensitivity.wais import run_wais
from profiling.sensitivity.walker import NOT_ON_IMAGES, Walker

__all__ = ["run_profile", "PROCESSORS", "default_device"]

PROCESSORS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "kl": run_kl,
    "fisher_kl": run_fisher,
    "mixqsam": run_mixqsam,
    "synergy": run_synergy,
    "wais": run_wais,
}


# metrics that run their own forward passes and record the input ranges there: no float pass
OWN_PASS = {"fisher_kl"}


def default_device() -> str:
    """CUDA when available, CPU otherwise."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def _context(
    req: ProfileRequest,
    store: UnitStore,
    device: str,
    progress: Any,
    should_stop: Any,
    loaded: Any = None,
) -> tuple[Context, Any]:
    loaded = build_model(req.model, device=device) if loaded is None else loaded
    inventory = build_inventory(loaded)
    calib, _ = make_sets(
        load_source(req.source),
        holdout=req.holdout,
        n_calib=req.images,
        n_points=req.n_points,
        n_boxes=req.n_boxes,
        seed=req.seed,
    )
    walker = Walker(TaskAdapter(loaded), calib, use_cache=req.options.get("cache", True))
    specs = [parse_candidate(c) for c in req.candidates]
    ctx = Context(
        model=loaded.module,
        inventory=inventory,
        walker=walker,
        store=store,
        w_bits=sorted({s.w_bits for s in specs}),
        a_bits=sorted({s.a_bits for s in specs}),
        progress=progress,
        should_stop=should_stop,
        seed=req.seed,
        options=req.options,
    )
    if req.metric not in OWN_PASS:
        names = [x.name for x in inventory.layers if x.weight_numel]
        with InputRanges(loaded.module, names) as ranges:
            walker.prepare()
        ctx.ranges = ranges.ranges
    return ctx, loaded


def run_profile(
    req: ProfileRequest,
    work_dir: Path | str,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | None = None,
) -> Profile:
    """Profile ``req``; a finished profile is served from ``work_dir`` without recomputation."""
    from profiling.models.checkpoint import state_dict_hash

    device = device or default_device()
    started = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(req.seed)
        probe = build_model(req.model)
        key = req.key(probe.weights_hash)
        root = Path(work_dir) / key
        cached = Profile.cached(root)
        if cached is not None:
            return cached
        store = UnitStore(root)
        reuse = probe if device == "cpu" else None  # built on the CPU already
        del probe
        ctx, loaded = _context(req, store, device, progress, should_stop, reuse)
        setup_done = time.perf_counter()
        result = PROCESSORS[req.metric](ctx)
    profile = Profile(
        key=key,
        request=req.to_dict(),
        metric=req.metric,
        candidates=list(req.candidates),
        random_weights=loaded.random_weights,
        weights_hash=state_dict_hash(loaded.module),
        calibration=ctx.walker.calib.describe(),
        layers=result.get("layers", {}),
        scores=result.get("scores", {}),
        synergy=result.get("synergy", []),
        pairs=result.get("pairs", []),
        probes=result.get("probes", []),
        unmeasured=result.get(
            "unmeasured",
            [
                x.name
                for x in ctx.inventory.layers
                if x.weight_numel and ctx.walker.stage_of(x.name) == NOT_ON_IMAGES
            ],
        ),
        stats={
            "computed_units": store.computed,
            "resumed_units": store.resumed,
            "seconds": round(time.perf_counter() - started, 3),
            "setup_seconds": round(setup_done - started, 3),
            "compute_seconds": round(time.perf_counter() - setup_done, 3),
            "device": device,
            "cache_hit": False,
            **result.get("stats", {}),
        },
    )
    profile.save(root)
    return profile

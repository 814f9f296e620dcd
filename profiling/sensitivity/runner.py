"""``run_profile``: build the model and data, run one metric, checkpoint per unit, cache whole
profiles by their content key. Units run here, on a local process pool, or on any fan-out the
caller passes (the service's Celery workers); see ``profiling.sensitivity.units``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from profiling.calibration import CalibrationSet, load_source, make_sets
from profiling.errors import BitbudgetError
from profiling.inventory import build_inventory
from profiling.models import LoadedModel, build_model
from profiling.models.adapter import TaskAdapter
from profiling.quant.spec import parse_candidate
from profiling.sensitivity.context import Context
from profiling.sensitivity.fisher import run_fisher
from profiling.sensitivity.kl import run_kl
from profiling.sensitivity.mixqsam import run_mixqsam
from profiling.sensitivity.perturb import InputRanges
from profiling.sensitivity.profile import Profile
from profiling.sensitivity.request import ProfileRequest
from profiling.sensitivity.store import Store, UnitStore
from profiling.sensitivity.synergy import run_synergy
from profiling.sensitivity.units import PhaseRunner
from profiling.sensitivity.wais import run_wais
from profiling.sensitivity.walker import NOT_ON_IMAGES, Walker

__all__ = [
    "run_profile",
    "PROCESSORS",
    "default_device",
    "build_context",
    "calibration_of",
    "WrongInputs",
    "torch_threads",
]

PROCESSORS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "kl": run_kl,
    "fisher_kl": run_fisher,
    "mixqsam": run_mixqsam,
    "synergy": run_synergy,
    "wais": run_wais,
}

# metrics that run their own forward passes and record the input ranges there: no float pass
OWN_PASS = {"fisher_kl"}

Fanout = Callable[[Context, ProfileRequest, str], PhaseRunner]


class WrongInputs(BitbudgetError):
    """This process built other weights or calibration data than the profile was keyed on."""

    http_status = 409


def default_device() -> str:
    """CUDA when available, CPU otherwise."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def calibration_of(req: ProfileRequest) -> CalibrationSet:
    """The request's calibration set, from its source."""
    calib, _ = make_sets(
        load_source(req.source),
        holdout=req.holdout,
        n_calib=req.images,
        n_points=req.n_points,
        n_boxes=req.n_boxes,
        seed=req.seed,
    )
    return calib


def build_context(
    req: ProfileRequest,
    store: Store,
    device: str,
    *,
    loaded: LoadedModel | None = None,
    calib: CalibrationSet | None = None,
    scratch: Path | None = None,
) -> tuple[Context, LoadedModel]:
    """Model, inventory, calibration, walker and (for most metrics) the float pass."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(req.seed)
        loaded = build_model(req.model, device=device) if loaded is None else loaded
        calib = calibration_of(req) if calib is None else calib
        inventory = build_inventory(loaded)
        walker = Walker(TaskAdapter(loaded), calib, use_cache=req.options.get("cache", True))
        specs = [parse_candidate(c) for c in req.candidates]
        ctx = Context(
            model=loaded.module,
            inventory=inventory,
            walker=walker,
            store=store,
            w_bits=sorted({s.w_bits for s in specs}),
            a_bits=sorted({s.a_bits for s in specs}),
            seed=req.seed,
            options=req.options,
            scratch=scratch,
            weights_hash=loaded.weights_hash,
            calibration_key=calib.key,
        )
        if req.metric not in OWN_PASS:
            names = [x.name for x in inventory.layers if x.weight_numel]
            with InputRanges(loaded.module, names) as ranges:
                walker.prepare()
            ctx.ranges = ranges.ranges
    return ctx, loaded


def _context(
    req: ProfileRequest,
    store: Any,
    device: str,
    progress: Any,
    should_stop: Any,
    loaded: Any = None,
) -> tuple[Context, Any]:
    """``build_context`` with progress hooks (kept for the benches and tests that call it)."""
    ctx, loaded = build_context(req, store, device, loaded=loaded)
    ctx.progress, ctx.should_stop = progress, should_stop
    return ctx, loaded


def _runner(
    ctx: Context, req: ProfileRequest, key: str, processes: int, fanout: Fanout | None
) -> PhaseRunner | None:
    if fanout is not None:
        return fanout(ctx, req, key)
    if processes > 1:
        from profiling.sensitivity.pool import LocalPool

        return LocalPool(processes, torch.get_num_threads(), req, ctx.store, ctx.scratch)
    return None


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with ``threads`` torch threads (None: as they are), then restore them."""
    saved = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def _stats(ctx: Context, started: float, setup_done: float, device: str) -> dict[str, Any]:
    return {
        "computed_units": ctx.counts["computed"],
        "resumed_units": ctx.counts["resumed"],
        "units_by_worker": dict(sorted(ctx.counts_by_worker.items())),
        "seconds": round(time.perf_counter() - started, 3),
        "setup_seconds": round(setup_done - started, 3),
        "compute_seconds": round(time.perf_counter() - setup_done, 3),
        "device": device,
        "cache_hit": False,
    }


def run_profile(
    req: ProfileRequest,
    work_dir: Path | str,
    progress: Callable[[float, str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    device: str | None = None,
    *,
    store: Store | None = None,
    processes: int = 1,
    threads: int | None = None,
    fanout: Fanout | None = None,
    expect_key: str | None = None,
) -> Profile:
    """Profile ``req``; a finished profile is served from ``work_dir`` without recomputation.

    Units go to ``store`` (default: files under ``work_dir/<key>``) and run on ``processes``
    local processes (1: here), or on ``fanout``'s workers; every local process runs ``threads``
    torch threads (default: cores // processes). ``expect_key`` refuses to run when the weights
    built here key the profile differently (other weights than the caller's)."""
    from profiling.sensitivity.pool import threads_per_process

    with torch_threads(threads or threads_per_process(processes)):
        return _run(
            req, Path(work_dir), progress, should_stop, device, store, processes, fanout, expect_key
        )


def _run(
    req: ProfileRequest,
    work_dir: Path,
    progress: Callable[[float, str], None] | None,
    should_stop: Callable[[], bool] | None,
    device: str | None,
    store: Store | None,
    processes: int,
    fanout: Fanout | None,
    expect_key: str | None,
) -> Profile:
    device = device or default_device()
    started = time.perf_counter()
    probe = build_model(req.model, device="cpu")
    key = req.key(probe.weights_hash)
    if expect_key is not None and key != expect_key:
        raise WrongInputs(
            f"the weights built on {os.uname().nodename} hash to {probe.weights_hash}, which keys "
            f"this profile as {key}, not {expect_key}: other weights than the registered model's"
        )
    root = work_dir / key
    cached = Profile.cached(root)
    if cached is not None:
        return cached
    root.mkdir(parents=True, exist_ok=True)  # scratch files and profile.json
    store = store if store is not None else UnitStore(root)
    reuse = probe if device == "cpu" else None  # built on the CPU already
    del probe
    ctx, loaded = build_context(req, store, device, loaded=reuse, scratch=root)
    ctx.progress, ctx.should_stop = progress, should_stop
    setup_done = time.perf_counter()
    ctx.runner = _runner(ctx, req, key, processes, fanout)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(req.seed)
            result = PROCESSORS[req.metric](ctx)
    finally:
        close = getattr(ctx.runner, "close", None)
        if close is not None:
            close()
    profile = Profile(
        key=key,
        request=req.to_dict(),
        metric=req.metric,
        candidates=list(req.candidates),
        random_weights=loaded.random_weights,
        weights_hash=loaded.weights_hash,
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
        stats=_stats(ctx, started, setup_done, device)
        | result.get("stats", {})
        | ({"resized_from": loaded.resized_from} if loaded.resized_from else {}),
    )
    profile.save(root)
    return profile

"""A profile's inputs on any machine: the coordinator publishes the checkpoint (by weights hash)
and the calibration set (by its key) to the shared store; a worker elsewhere takes what it
lacks from there, and the profiler's own hashes then decide whether it may compute."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from profiling.errors import BitbudgetError
from searchsvc.settings import Settings
from searchsvc.shared_store import SharedStore

__all__ = ["checkpoint_name", "calibration_name", "publish_inputs", "local_inputs"]


def checkpoint_name(weights_hash: str) -> str:
    """Where a checkpoint lives in the shared store."""
    return f"checkpoints/{weights_hash}.pt"


def calibration_name(key: str) -> str:
    """Where a calibration set lives in the shared store."""
    return f"calibration/{key}.npz"


def publish_inputs(store: SharedStore, *, checkpoint: str | None, ctx: Any) -> None:
    """Put the checkpoint and the calibration set of ``ctx`` in the store (once each)."""
    from profiling.calibration.archive import save_calibration

    if checkpoint is not None and not store.has(checkpoint_name(ctx.weights_hash)):
        store.put(checkpoint_name(ctx.weights_hash), Path(checkpoint))
    name = calibration_name(ctx.calibration_key)
    if not store.has(name):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "calibration.npz"
            save_calibration(ctx.walker.calib, path)
            store.put(name, path)


def _local_checkpoint(settings: Settings, store: SharedStore, spec: Any, weights: str) -> Any:
    cached = settings.data_dir / "cache" / checkpoint_name(weights)
    if cached.is_file() or store.fetch(checkpoint_name(weights), cached):
        return dataclasses.replace(spec, checkpoint=str(cached))
    if Path(spec.checkpoint).is_file():
        return spec
    raise _wrong(
        f"the checkpoint with weights hash {weights} is neither in the shared store "
        f"({store.url}) nor at {spec.checkpoint}"
    )


def _wrong(message: str) -> BitbudgetError:
    from profiling.sensitivity.runner import WrongInputs

    return WrongInputs(message)


def local_inputs(
    settings: Settings, store: SharedStore, request: Any, weights: str, calib_key: str
) -> tuple[Any, Any]:
    """``request`` with a checkpoint path on this machine, and the calibration set keyed
    ``calib_key`` (from the request's own source when it gives that set, else the store)."""
    from profiling.calibration.archive import load_calibration
    from profiling.sensitivity.runner import calibration_of

    spec = request.model
    if spec.checkpoint is not None:
        spec = _local_checkpoint(settings, store, spec, weights)
    try:
        calib = calibration_of(request)
    except BitbudgetError:  # e.g. the source folder is on another machine
        calib = None
    if calib is None or calib.key != calib_key:
        cached = settings.data_dir / "cache" / calibration_name(calib_key)
        if not (cached.is_file() or store.fetch(calibration_name(calib_key), cached)):
            raise _wrong(
                f"the calibration set {calib_key} is neither given by the source "
                f"{request.source!r} here nor in the shared store ({store.url})"
            )
        calib = load_calibration(cached)
    return dataclasses.replace(request, model=spec), calib

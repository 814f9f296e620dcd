"""The ``profiling.unit`` task: one unit of a profile, on any worker.

It takes a unit row id, re-reads the row, its profile and model, builds (once per process and
profile) the model from its spec and the calibration set from the shared store when this
machine lacks them, refuses the unit when what it built hashes differently from what the
coordinator recorded, claims the row, computes the unit by replaying the metric to it, and
writes the result. A row that is done, taken, or whose job has ended is left alone.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from searchsvc.db.session import session_scope
from searchsvc.jobs import repository as jobs
from searchsvc.jobs.repository import older_than
from searchsvc.profiles import repository as profiles
from searchsvc.profiles import units
from searchsvc.profiles.fanout import beating
from searchsvc.settings import Settings

__all__ = ["run_unit", "worker_context"]

log = logging.getLogger(__name__)
_CONTEXTS: dict[str, Any] = {}  # this process's context, by profile key (one at a time)


def worker_context(settings: Settings, key: str, request: Any, row: Any) -> Any:
    """The profiling context of profile ``key`` on this machine (built on first use)."""
    from profiling.sensitivity.runner import build_context, default_device
    from searchsvc.profiles.inputs import local_inputs
    from searchsvc.profiles.unit_store import DbUnitStore
    from searchsvc.shared_store import open_store

    if key not in _CONTEXTS:
        store = open_store(settings.store_url)
        request, calib = local_inputs(
            settings, store, request, row.weights_hash or "", row.calibration_key or ""
        )
        _CONTEXTS.clear()
        ctx, _ = build_context(
            request,
            DbUnitStore(settings.database, key),
            default_device(),
            calib=calib,
            scratch=settings.profile_dir / key,
        )
        _CONTEXTS[key] = ctx
    return _CONTEXTS[key]


def _load(settings: Settings, unit_id: int) -> tuple[Any, str, Any, str] | None:
    """(row snapshot, profile key, profiler request, metric) of a unit that may run, or None."""
    from searchsvc.profiles.tasks import request_of

    with session_scope(settings.database, write=False) as session:
        row = units.get(session, unit_id)
        if row is None or row.state in ("done", "refused"):
            return None
        job = jobs.get(session, row.job_id) if row.job_id else None
        if job is None or job.state not in ("queued", "running"):
            return None  # the profile ended (cancelled, failed): leave the unit
        profile = profiles.by_key(session, row.profile_key)
        if profile is None:
            return None
        session.expunge(row)
        return row, profile.key, request_of(session, profile), profile.metric


def _refusal(ctx: Any, row: Any, worker: str) -> str | None:
    if ctx.weights_hash != row.weights_hash:
        what = f"weights hash {ctx.weights_hash} differs from the profile's {row.weights_hash}"
    elif ctx.calibration_key != row.calibration_key:
        what = (
            f"calibration set {ctx.calibration_key} differs from the profile's "
            f"{row.calibration_key}"
        )
    else:
        return None
    return f"worker {worker} refused unit {row.unit!r} of profile {row.profile_key}: its {what}"


def run_unit(unit_id: int, settings: Settings) -> str:
    """Compute unit row ``unit_id`` if it still needs computing; returns what happened."""
    import torch

    from profiling.errors import BitbudgetError
    from profiling.sensitivity.runner import PROCESSORS
    from profiling.sensitivity.units import compute_unit, process_name

    loaded = _load(settings, unit_id)
    if loaded is None:
        return "skipped"
    row, key, request, metric = loaded
    me = process_name()
    try:
        ctx = worker_context(settings, key, request, row)
        why = _refusal(ctx, row, me)
    except BitbudgetError as exc:
        why = f"worker {me} refused unit {row.unit!r} of profile {key}: {exc}"
    if why is not None:
        with session_scope(settings.database) as session:
            units.refuse(session, unit_id, me, why)
        log.error(why)
        return "refused"
    with session_scope(settings.database) as session:
        if not units.claim(session, unit_id, me, older_than(settings.heartbeat_timeout_s)):
            return "skipped"
    started = time.perf_counter()
    with beating(settings, unit_id, me), torch.random.fork_rng(devices=[]):
        torch.manual_seed(request.seed)
        value = compute_unit(ctx, PROCESSORS[metric], row.unit)
    with session_scope(settings.database) as session:
        units.upsert_result(session, key, row.unit, value, me, time.perf_counter() - started)
    return "computed"

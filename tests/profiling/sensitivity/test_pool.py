"""Units on a local process pool: the same profile as one process, bit for bit, with the units
shared between the processes, and no process left behind (finished or stopped)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from profiling.models import ModelSpec, build_model
from profiling.sensitivity import Cancelled, ProfileRequest, run_profile
from profiling.sensitivity.fisher import run_fisher
from profiling.sensitivity.runner import build_context, torch_threads
from profiling.sensitivity.store import UnitStore
from profiling.sensitivity.units import compute_unit

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "searchsvc"))
from svc_helpers import children_of, wait_gone  # noqa: E402

# 3 images: stage 1 (forward + backward) and stage 2 (activation terms) have 3 units each
REQ = ProfileRequest(ModelSpec("sam2-micro"), "fisher_kl", ("w8a8", "w4a8", "w2a16"), images=3)


def _helpers() -> list[int]:
    """This process's pool helpers (not multiprocessing's resource tracker, which lives as
    long as this process and ends with it)."""
    out = []
    for pid in children_of(os.getpid()):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in cmd:
            out.append(pid)
    return out


def test_pool_of_two_equals_one_process(tmp_path: Path) -> None:
    serial = run_profile(REQ, tmp_path / "serial", threads=1)
    pooled = run_profile(REQ, tmp_path / "pool", processes=2)  # 1 torch thread each
    assert json.dumps(pooled.layers, sort_keys=True) == json.dumps(serial.layers, sort_keys=True)
    assert pooled.unmeasured == serial.unmeasured
    by_worker = pooled.stats["units_by_worker"]
    assert len(by_worker) == 2 and sum(by_worker.values()) == 6  # both computed units
    key = REQ.key(build_model(REQ.model).weights_hash)
    units = UnitStore(tmp_path / "pool" / key).computed_units()
    assert sorted(units) == sorted(set(units)) and len(units) == 6  # each unit once
    assert wait_gone(_helpers()) == []  # the pool is gone with the run


def test_stopped_pool_leaves_nothing_behind(tmp_path: Path) -> None:
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        run_profile(REQ, tmp_path, processes=2, should_stop=stop)
    assert wait_gone(_helpers()) == []
    resumed = run_profile(REQ, tmp_path, threads=1)
    assert resumed.stats["resumed_units"] >= 2  # the caller computed two before the stop
    assert resumed.stats["resumed_units"] + resumed.stats["computed_units"] == 6


def test_a_replayed_unit_equals_the_serial_one(tmp_path: Path) -> None:
    """A worker reaches a second-phase unit by replaying the first phase from the store."""
    req = ProfileRequest(ModelSpec("sam2-micro"), "fisher_kl", ("w8a8", "w4a8"), images=2)
    done = run_profile(req, tmp_path, threads=1)
    store = UnitStore(tmp_path / done.key)
    wanted = store.get("fisher-act:1")
    assert wanted is not None
    with torch_threads(1):  # as the run: the thread count can move the last bits
        ctx, _ = build_context(req, store, "cpu", scratch=tmp_path / "scratch")
        # its rows file is gone (used and deleted): the replay makes the same seeded rows again
        assert compute_unit(ctx, run_fisher, "fisher-act:1") == wanted
    with pytest.raises(Exception, match="not a unit"):
        compute_unit(ctx, run_fisher, "fisher-act:7")

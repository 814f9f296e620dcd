"""Units: the grain of a profile's work, and how a phase of them runs.

A metric's processor declares its work through ``ctx.units(ids, compute, label)``: one call is
one *phase*, a list of unit ids whose results are independent of each other (they may depend on
earlier phases). How a phase runs is the context's ``runner``:

- ``Serial`` (the default): each unit in turn in this process, read back when already stored.
- a fan-out (``profiling.sensitivity.pool.LocalPool``, the service's Celery fan-out): the
  missing units go to other processes, the caller computes some too, and the phase returns
  once every result is in the store.
- ``OneUnit`` (a worker's *replay*): the processor runs from the start; earlier phases are read
  back from the store, the target unit is computed and the run stops there. Whatever state a
  processor builds between phases (Fisher-KL's merged ranges) is rebuilt the same way.

So any metric that declares its units this way fans out without further work.
"""

from __future__ import annotations

import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from profiling.errors import BadInput, BitbudgetError

if TYPE_CHECKING:
    from profiling.sensitivity.context import Context

__all__ = [
    "PhaseRunner",
    "Serial",
    "OneUnit",
    "UnitNotReady",
    "UnitTally",
    "compute_unit",
    "process_name",
    "report",
]

Compute = Callable[[str], Any]


def process_name() -> str:
    """This process as a worker name: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


class UnitNotReady(BitbudgetError):
    """A replay reached a phase whose results are not all stored yet."""


class PhaseRunner(Protocol):
    """Runs one phase: returns ``{unit: value}`` for every id, each computed once."""

    def phase(
        self, ctx: Context, ids: list[str], compute: Compute, label: str, share: tuple[float, float]
    ) -> dict[str, Any]: ...


@dataclass
class UnitTally:
    """Units done / total of the current phase, who computed them, and the rate."""

    total: int = 0
    done: int = 0
    resumed: int = 0
    per_worker: Counter[str] = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)

    def add(self, worker: str) -> None:
        self.done += 1
        self.per_worker[worker] += 1

    def rate(self) -> float:
        """Units computed per second since the phase began."""
        computed = self.done - self.resumed
        return computed / max(time.monotonic() - self.started, 1e-9)

    def line(self) -> str:
        """``units 12/40 · 1.4/s · host:1 7, host:2 5``."""
        workers = ", ".join(f"{w} {n}" for w, n in sorted(self.per_worker.items()))
        return f"units {self.done}/{self.total} · {self.rate():.2f}/s" + (
            f" · {workers}" if workers else ""
        )


def report(
    ctx: Context, tally: UnitTally, label: str, share: tuple[float, float], check: bool = True
) -> None:
    """Progress within the phase's share of the run, and (``check``) a stop check."""
    lo, hi = share
    fraction = tally.done / max(tally.total, 1)
    ctx.tick_fraction(lo + (hi - lo) * fraction, f"{label}: {tally.line()}", check)


class Serial:
    """Each unit in turn in this process (a stored one is read back, never recomputed)."""

    def phase(
        self, ctx: Context, ids: list[str], compute: Compute, label: str, share: tuple[float, float]
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        tally = UnitTally(total=len(ids))
        me = process_name()
        for unit in ids:
            report(ctx, tally, label, share)
            value = ctx.store.get(unit)
            if value is None:
                started = time.perf_counter()
                value = compute(unit)
                ctx.store.put(unit, value, worker=me, seconds=time.perf_counter() - started)
                ctx.counts["computed"] += 1
                ctx.counts_by_worker[me] += 1
                tally.add(me)
            else:
                ctx.counts["resumed"] += 1
                tally.resumed += 1
                tally.done += 1
            out[unit] = value
        report(ctx, tally, label, share, check=False)
        return out


class _Reached(Exception):
    """Carries the target unit's value out of a replayed processor."""

    def __init__(self, value: Any) -> None:
        super().__init__("unit reached")
        self.value = value


class OneUnit:
    """A worker's replay: earlier phases read back, the target unit computed, then stop."""

    def __init__(self, target: str) -> None:
        self.target = target

    def phase(
        self, ctx: Context, ids: list[str], compute: Compute, label: str, share: tuple[float, float]
    ) -> dict[str, Any]:
        if self.target in ids:
            raise _Reached(compute(self.target))
        values = ctx.store.get_many(ids)
        missing = [u for u in ids if u not in values]
        if missing:
            raise UnitNotReady(
                f"unit {self.target!r} needs the earlier phase {label!r}, which still lacks "
                f"{len(missing)} unit(s), e.g. {missing[0]!r}"
            )
        return values


def compute_unit(ctx: Context, processor: Callable[[Context], Any], unit: str) -> Any:
    """The value of ``unit``: replay ``processor`` on ``ctx`` up to it (see the module notes)."""
    saved, ctx.runner = ctx.runner, OneUnit(unit)
    try:
        processor(ctx)
    except _Reached as reached:
        return reached.value
    finally:
        ctx.runner = saved
    raise BadInput(f"{unit!r} is not a unit of this profile")

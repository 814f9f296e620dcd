"""Timing one callable: warm-up, repeats, median and spread (p90 - p10) in milliseconds."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["time_callable", "summarize"]


def summarize(samples_ms: list[float]) -> dict[str, Any]:
    """median, p10, p90 and spread (p90 - p10) of timings in milliseconds."""
    arr = np.asarray(samples_ms, dtype=np.float64)
    p10, median, p90 = (float(v) for v in np.percentile(arr, [10, 50, 90]))
    return {
        "median_ms": median,
        "spread": p90 - p10,
        "p10_ms": p10,
        "p90_ms": p90,
        "repeats": len(samples_ms),
    }


def time_callable(fn: Callable[[], Any], *, warmup: int = 3, repeats: int = 20) -> dict[str, Any]:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (wall clock)."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e3)
    return summarize(samples)

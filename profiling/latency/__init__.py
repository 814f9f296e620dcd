"""Per-layer latency tables measured in a deployment runtime (docs/latency.md).

``measure_table`` times each quantizable layer at each candidate option in isolation, in the
runtime that will run it, and writes a measured ``bitbudget.hardware/v1`` document; cells are
appended to a ``.cells.jsonl`` file beside the output as they are measured, so a killed run
resumes where it stopped.
"""

from __future__ import annotations

from profiling.latency.measure import MeasureRequest, cells_path, measure_table
from profiling.latency.runtimes import RUNTIMES, runtime_version
from profiling.latency.timing import time_callable

__all__ = [
    "RUNTIMES",
    "MeasureRequest",
    "cells_path",
    "measure_table",
    "runtime_version",
    "time_callable",
]

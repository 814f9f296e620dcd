"""``jobs.selftest``: a job that only sleeps and reports progress, to check a deployment's
workers (and the job machinery in tests) without touching a model."""

from __future__ import annotations

import time
from typing import Any

from searchsvc.errors import BadInput
from searchsvc.jobs.context import JobContext
from searchsvc.jobs.registry import register_task

__all__ = ["run_selftest"]


def run_selftest(ctx: JobContext) -> dict[str, Any]:
    """``params``: ``steps`` (default 5) of ``seconds`` each (default 0.2), optionally failing
    at step ``fail_at``; stops when asked."""
    steps = int(ctx.params.get("steps", 5))
    seconds = float(ctx.params.get("seconds", 0.2))
    for step in range(steps):
        ctx.raise_if_stopped()
        if step == ctx.params.get("fail_at"):
            raise BadInput(f"selftest failed at step {step} as asked")
        time.sleep(seconds)
        ctx.progress((step + 1) / steps, f"step {step + 1}/{steps}")
    return {"steps": steps, "worker": ctx.worker}


register_task("jobs.selftest", run_selftest)

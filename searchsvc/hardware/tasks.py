"""``hardware.measure``: time a model's layers on the worker that takes the job (the ``latency``
queue), and store the table with that worker's host and hardware. Resumable: the cells file
lives in the worker's data folder, so a re-delivered job keeps the cells it had timed."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from searchsvc.db.base import utcnow
from searchsvc.db.tables import JobRow
from searchsvc.errors import NotFound
from searchsvc.hardware import repository
from searchsvc.hardware.service import MEASURE
from searchsvc.jobs.context import JobContext
from searchsvc.jobs.registry import register_task

__all__ = ["run_measure_job", "LATENCY_QUEUE"]

LATENCY_QUEUE = "latency"


def run_measure_job(ctx: JobContext) -> dict[str, Any]:
    """Measure the job's profile; a finished one is returned as is."""
    from profiling.latency import MeasureRequest, measure_table
    from profiling.latency.runtimes import machine_info

    hardware_id = int(ctx.params["hardware_id"])
    with ctx.session(write=False) as read:
        row = repository.get(read, hardware_id)
        if row is None:
            raise NotFound(f"hardware profile {hardware_id} was deleted")
        if row.status == "ready":
            return {"hardware_id": hardware_id}
        p, name = dict(row.params), row.name
    req = MeasureRequest(
        p["model"],
        image_size=p["image_size"],
        candidates=tuple(p["candidates"]),
        runtime=p["runtime"],
        threads=p["threads"],
        warmup=p["warmup"],
        repeats=p["repeats"],
        name=name,
    )
    host = machine_info()["host"]
    out = ctx.settings.data_dir / "hardware" / f"{hardware_id}-{host}.json"

    def progress(message: str, fraction: float) -> None:
        ctx.progress(min(fraction, 0.99), message)
        ctx.raise_if_stopped()

    table = measure_table(req, out, progress=progress)
    with ctx.session() as session:
        row = repository.get(session, hardware_id)
        if row is None:
            raise NotFound(f"hardware profile {hardware_id} was deleted")
        row.doc, row.status, row.host = table, "ready", host
        row.finished_at, row.error = utcnow(), None
    return {"hardware_id": hardware_id, "host": host}


def _on_fail(session: Session, job: JobRow, error: str) -> None:
    row = repository.get(session, int(job.params["hardware_id"]))
    if row is not None and row.status == "measuring":
        row.status, row.error = "failed", error


register_task(MEASURE, run_measure_job, _on_fail, queue=LATENCY_QUEUE)

"""The Celery app: ``celery -A searchsvc.worker worker`` (or ``bitbudget worker``).

Every job kind in ``searchsvc.jobs.registry`` becomes a task of the same name that takes a job id
and calls ``runner.execute``; ``profiling.unit`` (on the ``profile-units`` queue) takes a unit row
id and computes one unit of a profile (``searchsvc.profiles.unit_task``). Tasks ack late and are
rejected (re-delivered) when the worker dies; the reconciler, started with each worker,
re-enqueues jobs whose heartbeat went stale, and a profile's coordinator re-sends its units
whose worker went silent.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, signals
from kombu import Queue

from searchsvc.settings import QUEUES, Settings, get_settings

__all__ = ["make_celery", "app", "QUEUE", "UNITS_QUEUE"]

log = logging.getLogger(__name__)
QUEUE, UNITS_QUEUE = QUEUES[0], QUEUES[1]
_reconcilers: list[Any] = []


def _task(name: str) -> Any:
    def run(job_id: int) -> str:
        from searchsvc.jobs.runner import execute

        return execute(int(job_id), get_settings())

    run.__name__ = run.__qualname__ = name.replace(".", "_")
    run.__doc__ = f"Run job kind {name} for one job id (the row is re-read and claimed)."
    return run


def _unit(unit_id: int) -> str:
    """Compute one unit of a profile (the row is re-read, checked and claimed)."""
    from searchsvc.profiles.unit_task import run_unit

    return run_unit(int(unit_id), get_settings())


def make_celery(settings: Settings) -> Celery:
    """A Celery app on ``settings.broker_url`` with one task per registered job kind."""
    from searchsvc.jobs.registry import load_tasks

    celery = Celery("bitbudget", broker=settings.broker_url, set_as_current=False)
    celery.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_default_queue=QUEUE,
        task_queues=tuple(Queue(name) for name in QUEUES),
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    for name, spec in sorted(load_tasks().items()):
        queue = spec.queue or QUEUE
        celery.task(name=name, acks_late=True, reject_on_worker_lost=True, queue=queue)(_task(name))
    from searchsvc.profiles.fanout import UNIT_TASK

    celery.task(name=UNIT_TASK, acks_late=True, reject_on_worker_lost=True, queue=UNITS_QUEUE)(
        _unit
    )
    return celery


@signals.worker_ready.connect
def _start_reconciler(**_: Any) -> None:
    """Each worker reconciles periodically (lost jobs come back even if the API is down)."""
    from searchsvc.db import migrate
    from searchsvc.jobs.reconciler import Reconciler

    settings = get_settings()
    migrate.upgrade(settings.database)
    _reconcilers.append(Reconciler(settings).start())


@signals.worker_shutdown.connect
def _stop_reconciler(**_: Any) -> None:
    while _reconcilers:
        _reconcilers.pop().stop()


app = make_celery(get_settings())

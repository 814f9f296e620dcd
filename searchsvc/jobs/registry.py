"""Job kinds by name. Each domain's ``tasks`` module registers its handlers here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

if TYPE_CHECKING:
    from searchsvc.db.tables import JobRow
    from searchsvc.jobs.context import JobContext

__all__ = ["TaskSpec", "TASKS", "register_task", "get_task", "load_tasks", "TASK_MODULES"]

Handler = Callable[["JobContext"], dict[str, Any]]
FailHook = Callable[[Session, "JobRow", str], None]
UnitsHook = Callable[[Session, "JobRow"], dict[str, Any] | None]


@dataclass(frozen=True)
class TaskSpec:
    """A job kind: ``run`` does the work and returns result ids; ``on_fail`` marks domain rows;
    ``units`` says how far a job that fans out units has come (done, total, per worker, rate)."""

    name: str
    run: Handler
    on_fail: FailHook | None = None
    units: UnitsHook | None = None
    queue: str | None = None  # the Celery queue (None: the default ``bitbudget`` queue)


TASKS: dict[str, TaskSpec] = {}

# Modules whose import registers job kinds (the validation work adds its module here).
TASK_MODULES = [
    "searchsvc.jobs.selftest",
    "searchsvc.profiles.tasks",
    "searchsvc.plans.tasks",
    "searchsvc.pareto.tasks",
    "searchsvc.validation.tasks",
    "searchsvc.exports.tasks",
    "searchsvc.hardware.tasks",
]


def register_task(
    name: str,
    run: Handler,
    on_fail: FailHook | None = None,
    units: UnitsHook | None = None,
    queue: str | None = None,
) -> TaskSpec:
    """Register (or replace) the handler of job kind ``name`` (sent on ``queue``)."""
    spec = TaskSpec(name, run, on_fail, units, queue)
    TASKS[name] = spec
    return spec


def load_tasks() -> dict[str, TaskSpec]:
    """Import every task module once; returns the registry."""
    import importlib

    for module in TASK_MODULES:
        importlib.import_module(module)
    return TASKS


def get_task(name: str) -> TaskSpec:
    """The spec of job kind ``name``; an unknown kind lists the known ones."""
    load_tasks()
    if name not in TASKS:
        raise ValueError(f"unknown job kind {name!r}; known: {', '.join(sorted(TASKS))}")
    return TASKS[name]

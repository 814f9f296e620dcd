"""Hardware profiles: the shipped roofline estimates and the stored measured tables.

A name resolves to what a solve needs: a shipped name stays a name (``solvers.costs`` loads it),
a stored table becomes its document. Stored names never change meaning: a name is taken once.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from searchsvc.db.base import utcnow
from searchsvc.db.tables import HardwareProfileRow, JobRow
from searchsvc.errors import BadInput, Conflict, NotFound
from searchsvc.hardware import repository
from searchsvc.hardware.schemas import HardwareOut, MeasureBody
from searchsvc.settings import Settings

__all__ = [
    "MEASURE",
    "hardware_out",
    "list_hardware",
    "get_hardware",
    "upload",
    "start_measure",
    "resolve",
    "check_name",
    "stored_table",
    "shipped_doc",
]

MEASURE = "hardware.measure"


def _shipped() -> list[str]:
    from solvers.costs import hardware_profiles

    return hardware_profiles()


def shipped_doc(name: str) -> dict[str, Any]:
    """A shipped roofline profile's JSON document."""
    text = (resources.files("solvers") / "hardware" / f"{name}.json").read_text(encoding="utf-8")
    return dict(json.loads(text))


def _estimate_out(name: str, table: bool = False) -> HardwareOut:
    doc = shipped_doc(name)
    return HardwareOut(
        name=name,
        kind=str(doc.get("kind", "estimate")),
        status="ready",
        title=str(doc.get("title", "")),
        table=doc if table else None,
    )


def hardware_out(row: HardwareProfileRow, table: bool = False) -> HardwareOut:
    """The resource of a stored profile (with its document when ``table``)."""
    doc = row.doc if table else None
    return HardwareOut(
        name=row.name,
        kind="measured",
        status=row.status,
        title=str((doc or {}).get("title", "")) if doc else f"{row.model} at {row.image_size} px",
        model=row.model,
        image_size=row.image_size,
        runtime=row.runtime,
        host=row.host,
        error=row.error,
        job_id=row.job_id,
        created_at=row.created_at,
        table=doc,
    )


def list_hardware(session: Session) -> list[HardwareOut]:
    """The stored tables (newest first), then the shipped estimates."""
    stored = [hardware_out(r) for r in repository.listing(session)]
    return stored + [_estimate_out(n) for n in _shipped()]


def get_hardware(session: Session, *, name: str) -> HardwareOut:
    """One profile with its document; NotFound lists the known names."""
    if name in _shipped():
        return _estimate_out(name, table=True)
    row = repository.by_name(session, name, doc=True)
    if row is None:
        raise NotFound(f"hardware {name!r} does not exist; known: {', '.join(_known(session))}")
    return hardware_out(row, table=True)


def _known(session: Session) -> list[str]:
    return [r.name for r in repository.listing(session)] + _shipped()


def _take_name(session: Session, name: str) -> None:
    if name in _shipped() or repository.by_name(session, name) is not None:
        raise Conflict(f"hardware {name!r} exists already; choose another name")


def upload(session: Session, *, name: str | None, table: dict[str, Any]) -> HardwareProfileRow:
    """Store a measured table under ``name`` (default: the table's own name)."""
    from solvers.latency_table import TableError, check_table

    try:
        check_table(table)
    except TableError as exc:
        raise BadInput(f"table.{exc}") from None
    name = name or str(table["name"])
    _take_name(session, name)
    row = HardwareProfileRow(
        name=name,
        model=table["model"],
        image_size=table["image_size"],
        runtime=str(table["measured"]["runtime"]),
        host=str(table["measured"]["host"]),
        status="ready",
        params={},
        doc=dict(table) | {"name": name},
        finished_at=utcnow(),
    )
    return _insert(session, row)


def _insert(session: Session, row: HardwareProfileRow) -> HardwareProfileRow:
    try:
        with session.begin_nested():
            session.add(row)
            session.flush()
    except IntegrityError:  # a concurrent request took the name first
        raise Conflict(f"hardware {row.name!r} exists already; choose another name") from None
    return row


def start_measure(
    session: Session, *, settings: Settings, name: str | None, body: MeasureBody
) -> tuple[HardwareProfileRow, JobRow]:
    """A ``measuring`` row and its job on the ``latency`` queue (run by a worker there)."""
    from profiling.latency import MeasureRequest
    from profiling.models import ModelSpec
    from searchsvc.jobs.service import create_job

    spec = ModelSpec(body.model, image_size=body.image_size)  # BadInput for an unknown model
    MeasureRequest(body.model, spec.size, tuple(body.candidates), body.runtime)  # checks
    name = name or f"{body.model}-{spec.size}-{body.runtime}-{utcnow():%Y%m%d%H%M%S}"
    _take_name(session, name)
    params = body.model_dump() | {"image_size": spec.size}
    row = HardwareProfileRow(
        name=name,
        model=body.model,
        image_size=spec.size,
        runtime=body.runtime,
        status="measuring",
        params=params,
    )
    _insert(session, row)
    job = create_job(session, settings=settings, kind=MEASURE, params={"hardware_id": row.id})
    row.job_id = job.id
    return row, job


def check_name(session: Session, hardware: str | None) -> None:
    """Refuse an unknown or unfinished hardware profile, listing the known ones."""
    if hardware is not None:
        resolve(session, hardware)


def resolve(session: Session, hardware: str | None) -> str | dict[str, Any] | None:
    """What ``problem_from_profile`` takes: a shipped name as is, a stored table's document."""
    if hardware is None or hardware in _shipped():
        return hardware
    row = repository.by_name(session, hardware, doc=True)
    if row is None:
        raise BadInput(f"unknown hardware {hardware!r}; known: {', '.join(_known(session))}")
    if row.status != "ready" or row.doc is None:
        raise BadInput(f"hardware {hardware!r} is {row.status}, not ready")
    return dict(row.doc)


def stored_table(name: str) -> dict[str, Any]:
    """A stored table by name from the configured database (the CLI's ``--hardware NAME``)."""
    from searchsvc.db import migrate
    from searchsvc.db.session import session_scope
    from searchsvc.settings import get_settings

    settings = get_settings()
    migrate.upgrade(settings.database)
    with session_scope(settings.database, write=False) as session:
        found = resolve(session, name)
    if not isinstance(found, dict):
        raise BadInput(f"hardware {name!r} is a roofline estimate, not a measured latency table")
    return found

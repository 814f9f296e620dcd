"""GET /v1/plans/{id} as ready JSON bytes with an ETag, cached until the plan changes.

Building the resource (four ORM queries, JSON documents decoded, a pydantic model, its JSON)
costs several milliseconds; most GETs ask for a plan that has not changed. The cache keeps the
JSON bytes of each plan with a *fingerprint*: the raw stored values (JSON columns as text, not
decoded) of everything the resource is made of — the plan row, its model's row, the plan's newest
validation and its artifacts (the packed file, the refinements). A GET reads the fingerprint
with three light Core queries and answers from the cache when it is unchanged. Any write, by this
process or another one (a Celery worker, the CLI), changes the fingerprint, so the cache needs no
invalidation hooks in the code that writes.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Integer, Select, Table, Text, bindparam, cast, or_, select
from sqlalchemy.orm import Session

from searchsvc.db.tables import ArtifactRow, ModelRow, PlanRow, ValidationRow
from searchsvc.plans.schemas import PlanOut
from searchsvc.responses import to_json

__all__ = ["lookup", "store", "clear", "etag_matches", "fingerprint", "SIZE"]

SIZE = 1024  # plans kept (a plan's JSON is a few kB to a few hundred kB)

_lock = threading.Lock()
_entries: OrderedDict[tuple[str, int], tuple[tuple[Any, ...], bytes, str]] = OrderedDict()


def _raw_columns(table: Table, skip: tuple[str, ...] = ()) -> list[Any]:
    """Every column of ``table``, JSON ones as their stored text (compared, never decoded)."""
    return [
        cast(col, Text) if isinstance(col.type, JSON) else col
        for col in table.columns
        if col.name not in skip
    ]


@lru_cache(maxsize=1)
def _statements() -> tuple[Select[Any], Select[Any], Select[Any]]:
    """The three fingerprint queries (built once; ``plan_id`` and ``packed`` are parameters)."""
    plans, models = PlanRow.__table__, ModelRow.__table__
    validations, artifacts = ValidationRow.__table__, ArtifactRow.__table__
    assert isinstance(plans, Table) and isinstance(models, Table)
    assert isinstance(validations, Table) and isinstance(artifacts, Table)
    plan_id = bindparam("plan_id", type_=Integer)
    # a model's inventory is large and fixed by its spec; the rest of its row is compared
    plan = (
        select(*_raw_columns(plans), *_raw_columns(models, skip=("inventory",)))
        .join_from(plans, models, plans.c.model_id == models.c.id)
        .where(plans.c.id == plan_id)
    )
    validation = (
        select(*_raw_columns(validations))
        .where(validations.c.plan_id == plan_id)
        .order_by(validations.c.id.desc())
        .limit(1)
    )
    artifact = (
        select(*_raw_columns(artifacts))
        .where(or_(artifacts.c.plan_id == plan_id, artifacts.c.key == bindparam("packed")))
        .order_by(artifacts.c.id)
    )
    return plan, validation, artifact


def fingerprint(session: Session, plan_id: int) -> tuple[Any, ...] | None:
    """The raw stored state a plan's resource is built from; None when the plan is missing."""
    plan, validation, artifact = _statements()
    connection = session.connection()
    params = {"plan_id": plan_id, "packed": f"plan:{plan_id}:packed"}
    row = connection.execute(plan, params).first()
    if row is None:
        return None
    latest = connection.execute(validation, params).first()
    files = connection.execute(artifact, params).all()
    return (tuple(row), None if latest is None else tuple(latest), tuple(map(tuple, files)))


def lookup(session: Session, database: str, plan_id: int) -> tuple[bytes, str] | None:
    """The cached JSON and ETag of a plan when it is unchanged since it was cached."""
    with _lock:
        entry = _entries.get((database, plan_id))
    if entry is None:
        return None
    if fingerprint(session, plan_id) != entry[0]:
        return None
    with _lock:
        if (database, plan_id) in _entries:
            _entries.move_to_end((database, plan_id))
    return entry[1], entry[2]


def store(
    session: Session, database: str, plan_id: int, build: Callable[[], PlanOut]
) -> tuple[bytes, str]:
    """Build the resource (``build()`` -> PlanOut) and cache its JSON under its fingerprint.

    The fingerprint is read first: if a write lands while the resource is built, the stored
    fingerprint is the older one, so the next GET rebuilds (never serves the stale bytes)."""
    seen = fingerprint(session, plan_id)
    body = to_json(build())
    etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
    if seen is not None:
        with _lock:
            _entries[(database, plan_id)] = (seen, body, etag)
            _entries.move_to_end((database, plan_id))
            while len(_entries) > SIZE:
                _entries.popitem(last=False)
    return body, etag


def clear() -> None:
    """Drop every entry."""
    with _lock:
        _entries.clear()


def etag_matches(if_none_match: str, etag: str) -> bool:
    """RFC 9110 weak comparison of an ``If-None-Match`` list (or ``*``) against ``etag``."""
    wanted = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in wanted or etag.removeprefix("W/") in wanted

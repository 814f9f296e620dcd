"""GET /v1/plans/{id} as ready JSON bytes with an ETag, cached until the plan changes.

Building the resource (four ORM queries, JSON documents decoded, a pydantic model, its JSON)
costs several milliseconds; most GETs ask for a plan that has not changed. The cache keeps the
JSON bytes of each plan with a *fingerprint* of everything the resource is made of — the plan
row, its model's row, the plan's newest validation and its artifacts (the packed file, the
refinements) — read in one consistent snapshot:

* on PostgreSQL, one statement of row identities and versions: each row's ``xmin`` (the
  transaction that wrote this version of the row; every committed UPDATE writes a new version
  with a new ``xmin``, whatever process made it), the id of the newest validation and the ids of
  the artifacts. A few bytes per plan, however large its document;
* on SQLite (which has no row versions), the raw stored values (JSON columns as their text,
  compared, never decoded), three small queries in one read transaction.

A GET reads the fingerprint and answers from the cache when it is unchanged. Any write, by this
process or another one (a Celery worker, the CLI, another server), changes the fingerprint, so
the cache needs no invalidation hooks in the code that writes. The fingerprint is read through
the driver (no ORM, no result types), so the server's fast path (:class:`Reader`, on the event
loop: psycopg's async connections on PostgreSQL) and the build path (a worker thread's session)
read identical values.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from sqlalchemy import JSON, Integer, Select, Table, Text, bindparam, cast, or_, select
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from searchsvc.db.tables import ArtifactRow, ModelRow, PlanRow, ValidationRow
from searchsvc.plans.schemas import PlanOut
from searchsvc.responses import to_json

__all__ = [
    "Reader",
    "cached",
    "hit",
    "store",
    "clear",
    "etag_matches",
    "fingerprint",
    "SIZE",
    "POSTGRES_FINGERPRINT",
]

SIZE = 1024  # plans kept (a plan's JSON is a few kB to a few hundred kB)

Fingerprint = tuple[Any, ...]
Entry = tuple[Fingerprint, bytes, str]  # fingerprint, JSON, ETag

_lock = threading.Lock()
_entries: OrderedDict[tuple[str, int], Entry] = OrderedDict()

# One statement, one snapshot, one round trip. ``xmin`` changes with every committed write of a
# row (a new row version), so a changed plan, model, validation or artifact changes the answer,
# as does a new validation (its id) or a new or deleted artifact (the id list).
POSTGRES_FINGERPRINT = """\
SELECT p.xmin::text, m.xmin::text,
  (SELECT v.id::text || ':' || v.xmin::text FROM validations v
     WHERE v.plan_id = p.id ORDER BY v.id DESC LIMIT 1),
  (SELECT string_agg(a.id::text || ':' || a.xmin::text, ',' ORDER BY a.id) FROM artifacts a
     WHERE a.plan_id = p.id OR a.key = %(packed)s)
FROM plans p JOIN models m ON m.id = p.model_id
WHERE p.id = %(plan_id)s"""


def _raw_columns(table: Table, skip: tuple[str, ...] = ()) -> list[Any]:
    """Every column of ``table``, JSON ones as their stored text (compared, never decoded)."""
    return [
        cast(col, Text) if isinstance(col.type, JSON) else col
        for col in table.columns
        if col.name not in skip
    ]


@lru_cache(maxsize=1)
def _sqlite_statements() -> tuple[str, str, str, dict[str, Any]]:
    """SQLite's three fingerprint queries as SQL (``:plan_id`` and ``:packed`` parameters) and
    the constant parameters they also take."""
    plans, models = PlanRow.__table__, ModelRow.__table__
    validations, artifacts = ValidationRow.__table__, ArtifactRow.__table__
    assert isinstance(plans, Table) and isinstance(models, Table)
    assert isinstance(validations, Table) and isinstance(artifacts, Table)
    plan_id = bindparam("plan_id", type_=Integer)
    # a model's inventory is large and fixed by its spec; the rest of its row is compared
    plan: Select[Any] = (
        select(*_raw_columns(plans), *_raw_columns(models, skip=("inventory",)))
        .join_from(plans, models, plans.c.model_id == models.c.id)
        .where(plans.c.id == plan_id)
    )
    validation: Select[Any] = (
        select(*_raw_columns(validations))
        .where(validations.c.plan_id == plan_id)
        .order_by(validations.c.id.desc())
        .limit(1)
    )
    artifact: Select[Any] = (
        select(*_raw_columns(artifacts))
        .where(or_(artifacts.c.plan_id == plan_id, artifacts.c.key == bindparam("packed")))
        .order_by(artifacts.c.id)
    )
    dialect = sqlite.dialect(paramstyle="named")
    compiled = [s.compile(dialect=dialect) for s in (plan, validation, artifact)]
    # the statements' own constants (the LIMIT) are parameters too
    constants = {k: v for c in compiled for k, v in c.params.items() if k not in _params(0)}
    sql = [str(c) for c in compiled]
    return sql[0], sql[1], sql[2], constants


def _params(plan_id: int) -> dict[str, Any]:
    return {"plan_id": plan_id, "packed": f"plan:{plan_id}:packed"}


def _sqlite_read(connection: Any, plan_id: int) -> Fingerprint | None:
    """The fingerprint through a sqlite3 connection (the caller holds one read transaction)."""
    plan, validation, artifact, constants = _sqlite_statements()
    params = _params(plan_id) | constants
    row = connection.execute(plan, params).fetchone()
    if row is None:
        return None
    latest = connection.execute(validation, params).fetchone()
    files = connection.execute(artifact, params).fetchall()
    return (tuple(row), None if latest is None else tuple(latest), tuple(map(tuple, files)))


def _postgres_row(row: Any) -> Fingerprint | None:
    return None if row is None else tuple(row)


def fingerprint(session: Session, plan_id: int) -> Fingerprint | None:
    """The state a plan's resource is built from, in ``session``'s transaction (through its
    driver connection, as :class:`Reader` reads it); None when the plan is missing."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    if isinstance(driver, sqlite3.Connection):
        return _sqlite_read(driver, plan_id)
    with driver.cursor() as cursor:
        cursor.execute(POSTGRES_FINGERPRINT, _params(plan_id))
        return _postgres_row(cursor.fetchone())


def cached(database: str, plan_id: int) -> Entry | None:
    """The cache entry of a plan (not checked against the database: see :func:`hit`)."""
    with _lock:
        return _entries.get((database, plan_id))


def hit(database: str, plan_id: int, entry: Entry, current: Fingerprint | None) -> bool:
    """Whether ``entry`` is current (its fingerprint is the one just read); marks it used."""
    if current is None or current != entry[0]:
        return False
    with _lock:
        if (database, plan_id) in _entries:
            _entries.move_to_end((database, plan_id))
    return True


def lookup(session: Session, database: str, plan_id: int) -> tuple[bytes, str] | None:
    """The cached JSON and ETag of a plan when it is unchanged since it was cached."""
    entry = cached(database, plan_id)
    if entry is None or not hit(database, plan_id, entry, fingerprint(session, plan_id)):
        return None
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


class Reader:
    """Checks cached plans from the server's event loop, without a worker thread.

    A worker-thread hop (and the wait for the GIL on the way back) costs more than the check
    itself. PostgreSQL: psycopg's async connections (autocommit: one statement is one snapshot),
    at most ``connections`` at a time, opened when first needed; awaiting the answer blocks
    nothing. SQLite: the three reads on one sqlite3 connection in the loop's thread (~0.1 ms, a
    local file; a busy database answers at once, never waits). Any database error answers
    "unknown" (``None`` from :meth:`current`) and the caller takes the thread path, whose pool
    checks its connections; the failed connection is dropped."""

    def __init__(self, url: str, *, connections: int = 4) -> None:
        parsed = make_url(url)
        self.url = url
        self._sqlite_path: str | None = None
        self._connect: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite":
            self._sqlite_path = parsed.database or ":memory:"
        elif parsed.get_driver_name() == "psycopg":  # others: the thread path
            _, connect = parsed.get_dialect()().create_connect_args(parsed)
            self._connect = dict(connect)
        self.enabled = self._sqlite_path not in (None, ":memory:") or bool(self._connect)
        self._size = connections
        self._slots = asyncio.Semaphore(connections)
        self._idle: list[Any] = []
        self._sqlite: sqlite3.Connection | None = None

    async def current(self, plan_id: int) -> tuple[Fingerprint | None] | None:
        """``(fingerprint,)`` (the fingerprint None when the plan is missing), or None when it
        could not be read here."""
        if not self.enabled:
            return None
        if self._sqlite_path is not None:
            return self._sqlite_current(plan_id)
        return await self._postgres_current(plan_id)

    def _sqlite_current(self, plan_id: int) -> tuple[Fingerprint | None] | None:
        assert self._sqlite_path is not None
        try:
            if self._sqlite is None:
                # timeout 0: a locked database answers SQLITE_BUSY at once (the thread path waits)
                conn = sqlite3.connect(self._sqlite_path, timeout=0, isolation_level=None)
                conn.execute("PRAGMA query_only=ON")
                self._sqlite = conn
            self._sqlite.execute("BEGIN")
            try:
                return (_sqlite_read(self._sqlite, plan_id),)
            finally:
                self._sqlite.execute("COMMIT")
        except sqlite3.Error:
            self._close_sqlite()
            return None

    def _close_sqlite(self) -> None:
        if self._sqlite is not None:
            with contextlib.suppress(sqlite3.Error):
                self._sqlite.close()
            self._sqlite = None

    async def _postgres_current(self, plan_id: int) -> tuple[Fingerprint | None] | None:
        import psycopg

        async with self._slots:
            conn = self._idle.pop() if self._idle else None
            try:
                if conn is None or conn.closed:
                    conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._connect)
                cursor = await conn.execute(POSTGRES_FINGERPRINT, _params(plan_id))
                row = await cursor.fetchone()
            except psycopg.Error:
                if conn is not None:
                    await conn.close()
                return None
            except BaseException:  # cancelled mid-statement: the connection's state is unknown
                if conn is not None:
                    await conn.close()
                raise
            self._idle.append(conn)
            return (_postgres_row(row),)

    async def warm(self) -> None:
        """Open the connections now (PostgreSQL), not in the first burst of GETs; a failure
        is left to the first GETs (they fall back to the thread path)."""
        import psycopg

        if not self._connect:
            return
        try:
            for _ in range(self._size - len(self._idle)):
                conn = await psycopg.AsyncConnection.connect(autocommit=True, **self._connect)
                self._idle.append(conn)
        except psycopg.Error:
            return

    async def close(self) -> None:
        """Close every connection (at shutdown)."""
        self._close_sqlite()
        idle, self._idle = self._idle, []
        for conn in idle:
            await conn.close()

"""Engines and sessions. Services never commit: ``session_scope`` (a request, a task) does.

On SQLite (the embedded default) a write session takes the write lock when its transaction
begins (``BEGIN IMMEDIATE``): concurrent writers then queue on the busy timeout instead of
failing with "database is locked" when a read snapshot goes stale. Read sessions (the GET
endpoints) begin deferred and never block. On PostgreSQL both are ordinary transactions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

__all__ = ["make_engine", "get_engine", "get_sessionmaker", "session_scope"]


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    """WAL lets readers run beside the writer; foreign keys on; wait on locks; we BEGIN."""
    dbapi_connection.isolation_level = None  # SQLAlchemy's "begin" event issues BEGIN
    cursor = dbapi_connection.cursor()
    for pragma in (
        "journal_mode=WAL",
        "foreign_keys=ON",
        "busy_timeout=60000",
        "synchronous=NORMAL",
    ):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def make_engine(url: str, *, write: bool = True) -> Engine:
    """A new engine for ``url``; SQLite gets its folder created, pragmas and explicit BEGINs."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # connections are opened on demand; up to ``pool_size`` are kept. The server runs its
        # database work on at most 40 worker threads: keeping 10 meant that every burst of
        # requests opened (a PostgreSQL backend each, a few ms of CPU) and closed up to 30 more
        # a database host that does not answer fails a request in 5 s (a 503) instead of hanging
        return create_engine(
            url,
            pool_pre_ping=True,
            pool_size=40,
            max_overflow=10,
            connect_args={"connect_timeout": 5},
        )
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 60},
        pool_size=50,
        max_overflow=50,
    )
    event.listen(engine, "connect", _sqlite_connect)
    begin = "BEGIN IMMEDIATE" if write else "BEGIN"

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql(begin)

    return engine


def _is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


@lru_cache(maxsize=16)
def get_engine(url: str, write: bool = True) -> Engine:
    """One engine per URL (and, on SQLite, per read/write) per process."""
    if not write and not _is_sqlite(url):
        return get_engine(url, True)
    return make_engine(url, write=write)


@lru_cache(maxsize=16)
def get_sessionmaker(url: str, write: bool = True) -> sessionmaker[Session]:
    """One session factory per URL and mode (objects stay readable after commit)."""
    return sessionmaker(get_engine(url, write), expire_on_commit=False)


@contextmanager
def session_scope(url: str, *, write: bool = True) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error, always close."""
    session = get_sessionmaker(url, write)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()

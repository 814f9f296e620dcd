"""Service fixtures: a throwaway PostgreSQL database, a flushed Redis database, and helpers that
run the real API (uvicorn via ``bitbudget serve``) and real Celery workers as subprocesses."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest
from svc_helpers import PG_ADMIN, TOKEN, Proc

__all__ = ["PG_ADMIN", "TOKEN"]  # older tests import them from here

# the tests' own Redis database; BITBUDGET_TEST_REDIS_URL lets two test sessions run side by side
REDIS_URL = os.environ.get("BITBUDGET_TEST_REDIS_URL", "redis://127.0.0.1:6379/7")


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    if not _reachable(5432):
        pytest.skip("PostgreSQL is not running on 127.0.0.1:5432")
    import psycopg

    name = f"bitbudget_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    try:
        yield url
    finally:
        from searchsvc.db.session import get_engine

        get_engine(url).dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    """Redis database 7 (or BITBUDGET_TEST_REDIS_URL), flushed once per session (the tests'
    own broker)."""
    if not _reachable(6379):
        pytest.skip("Redis is not running on 127.0.0.1:6379")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    client.close()
    return REDIS_URL


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Processes a test starts; all stopped at its end."""
    started: list[Proc] = []
    yield started
    for proc in started:
        proc.stop()

"""FastAPI dependencies: settings, a request-scoped session (committed by the request, never by
services), and the write guard.

The settings and the write guard are ``async``: a plain ``def`` dependency costs a hop to a
worker thread and back, and under load those hops (each one waits for the GIL) cost more than
the work itself. The write guard looks a token up (in a worker thread) only when it was not
verified in the last few seconds."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from searchsvc.auth.service import authorize_write, recently_verified
from searchsvc.db.session import session_scope
from searchsvc.settings import Settings

__all__ = ["SettingsDep", "SessionDep", "ReadSessionDep", "WriterDep"]


async def _settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(_settings)]


def _session(settings: SettingsDep) -> Iterator[Session]:
    """One unit of work per request: commit before the response is sent, roll back on error."""
    with session_scope(settings.database) as session:
        yield session


def _read_session(settings: SettingsDep) -> Iterator[Session]:
    """A session for reading (on SQLite it never takes the write lock)."""
    with session_scope(settings.database, write=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(_session, scope="function")]
ReadSessionDep = Annotated[Session, Depends(_read_session, scope="function")]


def _authorize(settings: Settings, authorization: str | None) -> None:
    with session_scope(settings.database, write=False) as session:
        authorize_write(session, settings=settings, authorization=authorization)


async def _writer(
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    if not recently_verified(settings, authorization):
        await run_in_threadpool(_authorize, settings, authorization)


WriterDep = Annotated[None, Depends(_writer)]

"""FastAPI dependencies: settings, a request-scoped session (committed by the request, never by
services), and the write guard."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from searchsvc.auth.service import authorize_write
from searchsvc.db.session import session_scope
from searchsvc.settings import Settings

__all__ = ["SettingsDep", "SessionDep", "ReadSessionDep", "WriterDep"]


def _settings(request: Request) -> Settings:
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


def _writer(
    session: ReadSessionDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    authorize_write(session, settings=settings, authorization=authorization)


WriterDep = Annotated[None, Depends(_writer)]

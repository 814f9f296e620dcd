"""FastAPI dependencies: settings, a request-scoped session (committed by the request, never by
services), and the write guard.

The settings and the write guard are ``async``: a plain ``def`` dependency costs a hop to a
worker thread and back, and under load those hops (each one waits for the GIL) cost more than
the work itself. The write guard looks a token up (in a worker thread) only when it was not
verified in the last few seconds.

Routes of the API use ``GuardedRoute``: a route that needs a token checks it before FastAPI reads
and parses the request body, so an unauthenticated client cannot make the server parse (or
validate) anything it sends."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any

from fastapi import Depends, Header, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from searchsvc.auth.service import authorize_write, recently_verified
from searchsvc.db.session import session_scope
from searchsvc.settings import Settings

__all__ = ["SettingsDep", "SessionDep", "ReadSessionDep", "WriterDep", "GuardedRoute"]

_CHECKED = "bitbudget_writer_checked"  # request.state flag: the token was checked already
# declares the bearer scheme in the OpenAPI document (the lock in /docs); the header itself is
# read by ``_writer``, whose messages say what is wrong with it
_bearer = HTTPBearer(auto_error=False, description="a token from `bitbudget token create`")


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


async def _check_writer(settings: Settings, authorization: str | None) -> None:
    if not recently_verified(settings, authorization):
        await run_in_threadpool(_authorize, settings, authorization)


async def _writer(
    request: Request,
    settings: SettingsDep,
    _scheme: Annotated[Any, Depends(_bearer)] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> None:
    if not getattr(request.state, _CHECKED, False):
        await _check_writer(settings, authorization)


WriterDep = Annotated[None, Depends(_writer)]


def _needs_token(dependant: Dependant) -> bool:
    return any(d.call is _writer or _needs_token(d) for d in dependant.dependencies)


class GuardedRoute(APIRoute):
    """An API route whose token check (``WriterDep``) runs before its body is read."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not _needs_token(self.dependant):
            return handler

        async def guarded(request: Request) -> Response:
            settings: Settings = request.app.state.settings
            await _check_writer(settings, request.headers.get("authorization"))
            setattr(request.state, _CHECKED, True)
            return await handler(request)

        return guarded

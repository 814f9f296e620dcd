"""The FastAPI app: routers, the one error handler, and start-up (migrate, reconcile)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from searchsvc.body_limit import BodyLimit, BodyTooLarge
from searchsvc.errors import (
    BitbudgetError,
    InfeasibleBudget,
    TooLarge,
    Unauthorized,
    Unavailable,
    as_unavailable,
    error_body,
)
from searchsvc.openapi import install_openapi
from searchsvc.settings import Settings, get_settings

__all__ = ["create_app"]

log = logging.getLogger(__name__)


def _startup(settings: Settings) -> None:
    """Migrate, choose the job transport, and re-enqueue work lost by a previous process."""
    from searchsvc.db import migrate
    from searchsvc.jobs.dispatch import configure_dispatcher
    from searchsvc.jobs.reconciler import reconcile
    from searchsvc.jobs.registry import load_tasks
    from searchsvc.plans.router import warm_up
    from searchsvc.plans.service import configure_solver

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    migrate.upgrade(settings.database)
    load_tasks()
    configure_solver(settings)
    configure_dispatcher(settings)
    warm_up(settings)
    requeued = reconcile(settings, fresh_process=settings.embedded)
    if requeued:
        log.warning("re-enqueued jobs lost by an earlier process: %s", requeued)


def _lifespan(settings: Settings) -> Any:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        from starlette.concurrency import run_in_threadpool

        from searchsvc.jobs.dispatch import shutdown_dispatcher
        from searchsvc.plans.plan_cache import Reader
        from searchsvc.plans.service import shutdown_solver

        await run_in_threadpool(_startup, settings)
        # GET /v1/plans/{id} checks cached plans on this loop (see plans.plan_cache)
        app.state.plan_reader = reader = Reader(settings.database)
        await reader.warm()
        yield
        await reader.close()
        shutdown_dispatcher(settings)
        shutdown_solver()

    return lifespan


async def _bitbudget_error(request: Request, exc: Exception) -> JSONResponse:
    """THE handler of the error family: status from ``http_status``, the message as is."""
    assert isinstance(exc, BitbudgetError)
    extra: dict[str, Any] = {}
    if isinstance(exc, InfeasibleBudget):
        extra["least"] = exc.least
    body = error_body(type(exc).__name__, str(exc), **extra)
    return JSONResponse(body, status_code=exc.http_status, headers=_error_headers(exc))


def _error_headers(exc: BitbudgetError) -> dict[str, str] | None:
    """What a client needs beside the message: the auth scheme of a 401, when to retry a 503."""
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, Unavailable):
        return {"Retry-After": str(exc.retry_after)}
    return None


def _location(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def _text(error: Any) -> str:
    return str(error.get("msg", "")).removeprefix("Value error, ")


_OUT_OF_RANGE = ("greater_than_equal", "less_than_equal")


def _impossible_ids(errors: list[Any]) -> list[str]:
    """Path ids that are integers no row can have (outside 1 .. 2^31 - 1): a 404, not a 422."""
    if not errors or any(e.get("loc", ("",))[0] != "path" for e in errors):
        return []
    if any(e.get("type") not in _OUT_OF_RANGE for e in errors):
        return []
    return [f"{_location(tuple(e['loc']))} {e.get('input')}" for e in errors]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """Malformed JSON is a 400; a well-formed body that breaks the schema is a 422; a path id
    no row can have is a 404."""
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    impossible = _impossible_ids(errors)
    if impossible:
        message = f"no such resource: {', '.join(impossible)} (ids run from 1 to 2147483647)"
        return JSONResponse(error_body("NotFound", message), status_code=404)
    if any(e.get("type") == "json_invalid" for e in errors):
        detail = errors[0].get("ctx", {}).get("error", "")
        message = f"request body is not valid JSON ({detail})".replace(" ()", "")
        return JSONResponse(error_body("MalformedJSON", message), status_code=400)
    message = "; ".join(f"{_location(tuple(e.get('loc', ())))}: {_text(e)}" for e in errors)
    return JSONResponse(error_body("InvalidRequest", message), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Routing errors (404 unknown path, 405 wrong method) in the same JSON shape."""
    assert isinstance(exc, StarletteHTTPException)
    message = str(exc.detail)
    if exc.status_code == 404 and message == "Not Found":
        message = f"no such endpoint: {request.method} {request.url.path} (see /docs)"
    headers = exc.headers
    if exc.status_code == 405:
        allowed = ", ".join(_allowed_methods(request))
        message = f"{request.method} is not allowed on {request.url.path}; allowed: {allowed}"
        headers = {**(headers or {}), "Allow": allowed}
    body = error_body("HTTPError", message)
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route answers on this path (Starlette's 405 names only the methods of
    the first route that matched the path, e.g. POST but not GET on /v1/models)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)
    ]


async def _too_large(request: Request, exc: Exception) -> JSONResponse:
    """A body that grew past the limit while it was read (a declared one never gets here)."""
    assert isinstance(exc, BodyTooLarge)
    return await _bitbudget_error(request, TooLarge(str(exc.detail)))


async def _database(request: Request, exc: Exception) -> JSONResponse:
    """A database that cannot be reached is a 503 with ``Retry-After``; any other database error
    is a bug (``_unexpected``)."""
    unavailable = as_unavailable(exc)
    if unavailable is None:
        return await _unexpected(request, exc)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
    return await _bitbudget_error(request, unavailable)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback; the client gets JSON, not HTML."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    message = f"internal error ({type(exc).__name__}); the server log has the details"
    return JSONResponse(error_body("InternalError", message), status_code=500)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service app for ``settings`` (default: from the environment)."""
    from searchsvc.catalog.router import router as models_router
    from searchsvc.catalog.router import specs_router
    from searchsvc.dashboard.router import install as install_dashboard
    from searchsvc.exports.router import router as exports_router
    from searchsvc.hardware.router import router as hardware_router
    from searchsvc.health import router as health_router
    from searchsvc.jobs.router import router as jobs_router
    from searchsvc.pareto.router import router as pareto_router
    from searchsvc.plans.router import router as plans_router
    from searchsvc.profiles.router import router as profiles_router
    from searchsvc.validation.router import router as validation_router

    settings = settings or get_settings()
    # /docs and /redoc with their assets served by this app (fastapi-offline ships Swagger UI 5
    # and ReDoc): FastAPI's own pages load them from a CDN, blank on an offline machine
    app = FastAPIOffline(
        static_url="/docs-assets",
        title="bitbudget",
        summary="Mixed-precision quantization search for the Segment Anything models",
        version="0.1.0",
        lifespan=_lifespan(settings),
    )
    app.state.settings = settings
    for router in (
        models_router,
        specs_router,
        profiles_router,
        plans_router,
        exports_router,
        pareto_router,
        validation_router,
        hardware_router,
        jobs_router,
        health_router,
    ):
        app.include_router(router)
    install_dashboard(app)
    app.add_exception_handler(BitbudgetError, _bitbudget_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(BodyTooLarge, _too_large)
    app.add_exception_handler(SQLAlchemyError, _database)
    app.add_exception_handler(Exception, _unexpected)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    install_openapi(app)
    return app

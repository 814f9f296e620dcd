"""Dashboard errors are HTML pages of the right status, never JSON or a traceback: the route
class every dashboard route uses."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from searchsvc.dashboard.templating import templates
from searchsvc.errors import BitbudgetError, Unavailable, as_unavailable

__all__ = ["HtmlErrors", "error_page"]

log = logging.getLogger(__name__)

_TITLES = {
    400: "Bad request",
    404: "Not found",
    409: "Conflict",
    422: "Invalid request",
    503: "Unavailable",
}


def error_page(
    request: Request, status: int, message: str, headers: dict[str, str] | None = None
) -> Response:
    context = {"status": status, "title": _TITLES.get(status, "Error"), "message": message}
    return templates.TemplateResponse(
        request, "error.html", context, status_code=status, headers=headers
    )


def _bitbudget_page(request: Request, exc: BitbudgetError) -> Response:
    retry = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Unavailable) else None
    return error_page(request, exc.http_status, str(exc), retry)


class HtmlErrors(APIRoute):
    """Dashboard routes answer errors with an HTML page of the right status."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except BitbudgetError as exc:
                return _bitbudget_page(request, exc)
            except RequestValidationError as exc:
                text = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', '')}"
                    for e in exc.errors()
                )
                path = any(e.get("loc", ("",))[0] == "path" for e in exc.errors())
                return error_page(request, 404 if path else 422, text)
            except Exception as exc:
                unavailable = as_unavailable(exc)  # the database is down: 503, not a bug
                if unavailable is not None:
                    return _bitbudget_page(request, unavailable)
                log.exception("dashboard error on %s", request.url.path)
                message = f"internal error ({type(exc).__name__}); the server log has the details"
                return error_page(request, 500, message)

        return handler

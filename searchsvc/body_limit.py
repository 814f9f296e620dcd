"""Request bodies over ``BITBUDGET_MAX_BODY_BYTES`` are refused with 413 before they are read.

A body that declares its size (``Content-Length``) is refused before the app sees the request;
a chunked one is counted as it arrives and refused at the first chunk past the limit, so a
client can never make the server buffer or parse more than the limit.

Starlette has a body limiter (FastAPI's ``max_body_size``), but when an endpoint answers without
reading the body — a write refused for its token before the body is touched — it replaces that
answer with a ``text/plain`` 413, outside the API's ``{"error": ...}`` shape; this one answers
in that shape, from one place.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from searchsvc.errors import TooLarge, error_body

__all__ = ["BodyLimit", "BodyTooLarge", "too_large_body"]


class BodyTooLarge(HTTPException):
    """Raised while reading a body past the limit (FastAPI lets HTTP exceptions through its body
    parsing, so the app's handler for this class answers it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _message(limit))
        self.limit = limit


def _message(limit: int) -> str:
    return (
        f"request body over {limit:,} bytes (the server's BITBUDGET_MAX_BODY_BYTES); "
        "send less (e.g. fewer candidates, a smaller validation document)"
    )


def too_large_body(limit: int) -> dict[str, object]:
    """The 413's JSON body."""
    return error_body(TooLarge.__name__, _message(limit))


class BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse(too_large_body(self.limit), 413)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, counted, send)

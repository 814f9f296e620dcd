"""Write endpoints answer with a ready JSONResponse built in their own thread.

FastAPI serialises a returned model in a worker thread *after* the view; a write view that held
the (SQLite) write lock would then wait for a free thread before its unit of work commits, and
under load every thread can be busy waiting for that very lock. A ready response skips that step:
the request scope commits as soon as the view returns.
"""

from __future__ import annotations

from pydantic import BaseModel
from starlette.responses import JSONResponse

__all__ = ["json_response"]


def json_response(
    model: BaseModel, status_code: int, headers: dict[str, str] | None = None
) -> JSONResponse:
    """``model`` as JSON (by alias), with a status and headers."""
    body = model.model_dump(mode="json", by_alias=True)
    return JSONResponse(body, status_code=status_code, headers=headers)

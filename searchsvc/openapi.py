"""The OpenAPI document declares every error an operation can answer, in the API's error shape.

FastAPI declares only the success and a 422 in its own ``{"detail": ...}`` shape; this API
answers errors as ``{"error": {"type", "message"}}`` (``searchsvc.errors.error_body``). One pass
over the generated document declares them by what each operation has: a body (400 malformed
JSON, 413 too large, 404 for the rows it names, 422), a bearer token (401), a path id (404),
a database behind it (503 with ``Retry-After``). Statuses particular to an endpoint (409, 403)
are declared by the endpoint itself, with :data:`ERROR_RESPONSE`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorOut", "ERROR_RESPONSE", "errors", "install_openapi"]

_REF = "#/components/schemas/ErrorOut"


class ErrorDetail(BaseModel):
    """What went wrong, in one line a user can act on."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="the error's class, e.g. NotFound, InvalidRequest")
    message: str = Field(description="one line naming the field or the resource")
    least: dict[str, float] | None = Field(
        None, description="an infeasible budget (422): the least each resource can reach"
    )


class ErrorOut(BaseModel):
    """Every error: ``{"error": {"type", "message"}}``."""

    model_config = ConfigDict(extra="allow")

    error: ErrorDetail


ERROR_RESPONSE: dict[str, Any] = {"model": ErrorOut}

_TEXT = {
    400: "malformed JSON, or a request the server cannot act on",
    401: "no valid bearer token (writes need one)",
    404: "no such row, or an id no row can have",
    413: "request body over BITBUDGET_MAX_BODY_BYTES",
    422: "a field breaks the schema or names something unknown",
    503: "the database (or a solver process) is unavailable; retry after Retry-After seconds",
}


def errors(*codes: int, **texts: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for endpoint-specific errors: ``errors(409, t409="...")``."""
    return {
        code: {"model": ErrorOut, "description": texts.get(f"t{code}", _TEXT.get(code, "error"))}
        for code in codes
    }


def _response(code: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "description": _TEXT[code],
        "content": {"application/json": {"schema": {"$ref": _REF}}},
    }
    if code == 503:
        out["headers"] = {
            "Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}
        }
    return out


def _codes(operation: dict[str, Any]) -> list[int]:
    params = operation.get("parameters", [])
    codes = [422, 503]
    if operation.get("requestBody"):
        codes += [400, 404, 413]
    if any(p.get("in") == "path" for p in params):
        codes.append(404)
    if operation.get("security"):
        codes.append(401)
    return codes


def _declare(doc: dict[str, Any]) -> None:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorOut, ErrorDetail):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    for path in doc.get("paths", {}).values():
        for operation in path.values():
            responses = operation.setdefault("responses", {})
            if not operation.get("parameters") and not operation.get("requestBody"):
                responses.pop("422", None)
            for code in sorted(set(_codes(operation))):
                entry = responses.setdefault(str(code), _response(code))
                entry["content"] = _response(code)["content"]  # FastAPI's 422: its own shape
                entry.update({k: v for k, v in _response(code).items() if k == "headers"})


def install_openapi(app: FastAPI) -> None:
    """Serve the generated document with every error response declared."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = generate()
            _declare(doc)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

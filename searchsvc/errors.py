"""The service's errors: one family (``profiling.errors.BitbudgetError``), each with an HTTP status.

Service errors subclass the library's base, so ONE handler (``searchsvc.app``) maps the whole
family — library and service alike — to ``{"error": {"type", "message"}}`` by ``http_status``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import exc as sa

from profiling.errors import BadCheckpoint, BadInput, BitbudgetError, UnknownModel

__all__ = [
    "BitbudgetError",
    "BadInput",
    "BadCheckpoint",
    "UnknownModel",
    "NotFound",
    "Conflict",
    "Unauthorized",
    "Forbidden",
    "InfeasibleBudget",
    "Unavailable",
    "TooLarge",
    "RETRY_AFTER_S",
    "as_unavailable",
    "error_body",
]

RETRY_AFTER_S = 5  # what a 503 tells clients to wait (``Retry-After``) before trying again


class NotFound(BitbudgetError):
    """A row that does not exist."""

    http_status = 404


class Conflict(BitbudgetError):
    """A request that contradicts the current state (e.g. cancelling a finished job)."""

    http_status = 409


class Unauthorized(BitbudgetError):
    """A write without a valid bearer token."""

    http_status = 401


class Forbidden(BitbudgetError):
    """A request the configuration refuses (e.g. a checkpoint outside the allowed folders)."""

    http_status = 403


class InfeasibleBudget(BitbudgetError):
    """No plan meets the budget; ``least`` holds the least each constrained resource can reach."""

    http_status = 422

    def __init__(self, message: str, least: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.least = least or {}


class Unavailable(BitbudgetError):
    """A dependency (database, broker, solver process) is down: try again in ``retry_after`` s."""

    http_status = 503

    def __init__(self, message: str, retry_after: int = RETRY_AFTER_S) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class TooLarge(BitbudgetError):
    """A request body over the configured limit (``BITBUDGET_MAX_BODY_BYTES``)."""

    http_status = 413


def as_unavailable(exc: BaseException) -> Unavailable | None:
    """The 503 for a database that cannot be reached (stopped, restarting, out of connections,
    SQLite locked past its timeout); None for any other error."""
    if isinstance(exc, sa.OperationalError | sa.InterfaceError | sa.TimeoutError):
        return Unavailable(
            f"the database is unavailable ({type(exc).__name__}); "
            f"try again in {RETRY_AFTER_S} s (/healthz says when it is back)"
        )
    return None


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """The one JSON error shape: ``{"error": {"type", "message", ...}}``."""
    return {"error": {"type": kind, "message": message, **extra}}

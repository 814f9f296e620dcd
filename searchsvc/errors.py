"""The service's errors: one family (``profiling.errors.BitbudgetError``), each with an HTTP status.

Service errors subclass the library's base, so ONE handler (``searchsvc.app``) maps the whole
family — library and service alike — to ``{"error": {"type", "message"}}`` by ``http_status``.
"""

from __future__ import annotations

from typing import Any

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
    "error_body",
]


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
    """A dependency (database, broker) is down."""

    http_status = 503


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """The one JSON error shape: ``{"error": {"type", "message", ...}}``."""
    return {"error": {"type": kind, "message": message, **extra}}

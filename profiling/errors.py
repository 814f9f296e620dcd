"""The library's error family; the service maps each to an HTTP status in one handler."""

from __future__ import annotations

__all__ = ["BitbudgetError", "UnknownModel", "BadCheckpoint", "BadInput"]


class BitbudgetError(Exception):
    """Base of every error a user can act on; ``str(err)`` is the one-line message."""

    http_status = 400


class UnknownModel(BitbudgetError):
    """A model name that is not in the registry."""

    http_status = 404


class BadCheckpoint(BitbudgetError):
    """A checkpoint that is unreadable, not a state dict, or does not fit the architecture."""

    http_status = 422


class BadInput(BitbudgetError):
    """Any other malformed request: bad image size, bad prompt, bad plan."""

    http_status = 422

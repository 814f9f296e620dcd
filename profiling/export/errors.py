"""The export's error: a plan, model or folder that cannot be exported (HTTP 422)."""

from __future__ import annotations

from profiling.errors import BadInput

__all__ = ["ExportError"]


class ExportError(BadInput):
    """A plan the runtime cannot express, a plan for another model, or an unusable output folder."""

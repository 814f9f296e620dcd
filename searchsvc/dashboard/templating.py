"""The dashboard's Jinja2 environment: templates, static files and the filters pages use."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates

__all__ = ["templates", "STATIC_DIR", "TEMPLATE_DIR"]

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATE_DIR = HERE / "templates"

templates = Jinja2Templates(directory=str(TEMPLATE_DIR))


def _num(value: Any, digits: int = 4) -> str:
    """A number for people: significant digits, no float noise; '—' for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        value = int(value)  # a count stored as a float (bytes, BOPs): digits, not 1.49981e+06
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _mb(value: Any) -> str:
    return "—" if value is None else f"{float(value) / 1e6:.3f} MB"


def _ago(when: datetime | None) -> str:
    if when is None:
        return "—"
    seconds = (datetime.now(UTC) - when).total_seconds()
    if seconds < 60:
        return f"{seconds:.0f} s ago"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h ago"
    return when.strftime("%Y-%m-%d %H:%M")


def _budget(budget: dict[str, Any] | None) -> str:
    units = {"memory_mb": "MB", "latency_ms": "ms", "bops_g": "G BOPs", "avg_bits": "avg bits"}
    parts = [f"{_num(v)} {units.get(k, k)}" for k, v in (budget or {}).items() if k != "hardware"]
    hw = (budget or {}).get("hardware")
    return ", ".join(parts) + (f" on {hw}" if hw else "")


templates.env.filters.update(num=_num, mb=_mb, ago=_ago, budget=_budget)

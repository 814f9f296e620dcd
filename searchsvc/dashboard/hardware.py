"""The Hardware pages: every profile, and one measured table as a layers x options heatmap."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Path, Request, Response

from searchsvc.bounds import MAX_NAME_CHARS
from searchsvc.dashboard.errors import HtmlErrors
from searchsvc.dashboard.templating import templates
from searchsvc.deps import ReadSessionDep

__all__ = ["router", "heatmap_rows"]

router = APIRouter(prefix="/dashboard", route_class=HtmlErrors, include_in_schema=False)


def _color(ms: float, lo: float, hi: float) -> str:
    """Light yellow (fastest) to dark red (slowest) on a log scale."""
    span = math.log(hi / lo) if hi > lo > 0 else 1.0
    t = 0.0 if ms <= 0 or lo <= 0 else min(1.0, max(0.0, math.log(ms / lo) / span))
    r, g, b = 255 - int(80 * t), 245 - int(200 * t), 200 - int(170 * t)
    return f"rgb({r},{g},{b})"


def heatmap_rows(table: dict[str, Any]) -> tuple[list[str], list[dict[str, Any]]]:
    """The options (columns) and one row per layer: median, spread and a colour per cell."""
    cells = table.get("latency_table") or {}
    options = sorted({o for v in cells.values() for o in v})
    values = [c["median_ms"] for v in cells.values() for c in v.values() if c["median_ms"] > 0]
    lo, hi = (min(values), max(values)) if values else (1.0, 1.0)
    rows = []
    for layer, row in cells.items():
        rows.append(
            {
                "layer": layer,
                "cells": [
                    None
                    if o not in row
                    else {
                        "ms": row[o]["median_ms"],
                        "spread": row[o]["spread"],
                        "repeats": row[o]["repeats"],
                        "color": _color(row[o]["median_ms"], lo, hi),
                    }
                    for o in options
                ],
            }
        )
    return options, rows


@router.get("/hardware", name="dashboard_hardware")
def hardware_page(request: Request, session: ReadSessionDep) -> Response:
    """Every hardware profile: measured tables (with their host) and the shipped estimates."""
    from searchsvc.hardware.service import list_hardware

    context = {"nav": "hardware", "items": list_hardware(session)}
    return templates.TemplateResponse(request, "hardware.html", context)


@router.get("/hardware/{name}", name="dashboard_hardware_one")
def hardware_one(
    request: Request,
    session: ReadSessionDep,
    name: str = Path(..., min_length=1, max_length=MAX_NAME_CHARS),
) -> Response:
    """One profile: how it was measured, the end-to-end float latency and its heatmap."""
    from searchsvc.hardware.service import get_hardware

    item = get_hardware(session, name=name)
    table = item.table or {}
    options, rows = heatmap_rows(table) if item.kind == "measured" else ([], [])
    context = {"nav": "hardware", "item": item, "doc": table, "options": options, "rows": rows}
    return templates.TemplateResponse(request, "hardware_one.html", context)

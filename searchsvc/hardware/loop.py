"""Closing the loop (issue 16 item 5): a plan solved on a measured table, once exported, has its
exported image encoder timed in the same runtime, beside what the table predicted for it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from searchsvc.db.tables import PlanRow

__all__ = ["predicted_encoder", "time_export"]


def predicted_encoder(table: dict[str, Any], choices: dict[str, str]) -> float:
    """The table's prediction for the exported image encoder: ``fixed_ms`` + the medians of the
    encoder's layers at the plan's options (float where the plan leaves a layer out)."""
    cells = table["latency_table"]
    layers = [n for n in table.get("end_to_end_layers", []) if n in cells]
    return float(table["fixed_ms"]) + sum(
        float(cells[n][choices.get(n, "w16a16")]["median_ms"]) for n in layers
    )


def _measured_table(session: Session, plan: PlanRow) -> dict[str, Any] | None:
    from searchsvc.hardware.service import resolve

    found = resolve(session, plan.hardware) if plan.hardware else None
    return found if isinstance(found, dict) else None


def time_export(session: Session, *, plan: PlanRow, folder: Path) -> dict[str, Any] | None:
    """For a plan solved on a measured ONNX Runtime table: the exported encoder timed with the
    table's threads (median of 20) and the table's prediction for it; None otherwise."""
    from profiling.export.ort_model import time_exported_encoder

    table = _measured_table(session, plan)
    if table is None or table["measured"].get("runtime") != "onnxruntime":
        return None
    threads = int(table["measured"].get("threads") or 2)
    timed = time_exported_encoder(folder, threads=threads, warmup=3, repeats=20)
    predicted = predicted_encoder(table, dict((plan.doc or {}).get("choices", {})))
    return {
        "hardware": plan.hardware,
        "scope": "image_encoder",
        "predicted_ms": predicted,
        "measured_ms": timed["median_ms"],
        "measured": timed,
        "error": (predicted - timed["median_ms"]) / timed["median_ms"],
        "plan_total_ms": (plan.totals or {}).get("latency_ms"),
    }

"""The only queries on ``profile_units``. State changes are conditional UPDATEs (a unit is
claimed by one worker at a time), results are an idempotent upsert that counts its writes."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from sqlalchemy import CursorResult, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from searchsvc.db.base import utcnow
from searchsvc.db.tables import ProfileUnitRow

__all__ = [
    "upsert_result",
    "values",
    "prepare",
    "claim",
    "claim_next",
    "heartbeat",
    "refuse",
    "reclaim_stale",
    "states",
    "get",
    "summary",
]

Row = ProfileUnitRow


def _changed(session: Session, stmt: Any) -> int:
    result: CursorResult[Any] = session.execute(stmt)  # type: ignore[assignment]
    return result.rowcount


def _insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def upsert_result(
    session: Session, key: str, unit: str, value: Any, worker: str | None, seconds: float | None
) -> None:
    """Store ``unit``'s result (insert, or update whatever row is there); ``computed`` counts
    every write, so a unit written twice shows as rework."""
    now = utcnow()
    fields = {"value": value, "state": "done", "worker": worker, "seconds": seconds}
    stmt = _insert(session)(Row).values(
        profile_key=key, unit=unit, computed=1, attempts=0, phase=0, finished_at=now, **fields
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["profile_key", "unit"],
        set_={**fields, "computed": Row.computed + 1, "finished_at": now, "error": None},
    )
    session.execute(stmt)


def values(session: Session, key: str, units: list[str]) -> dict[str, Any]:
    """The stored results among ``units`` of profile ``key``."""
    out: dict[str, Any] = {}
    for start in range(0, len(units), 500):  # bounded IN lists
        stmt = select(Row.unit, Row.value).where(
            Row.profile_key == key, Row.unit.in_(units[start : start + 500]), Row.state == "done"
        )
        out.update({unit: value for unit, value in session.execute(stmt)})
    return out


def prepare(
    session: Session,
    *,
    key: str,
    units: list[str],
    phase: int,
    job_id: int,
    weights_hash: str,
    calibration_key: str,
) -> list[int]:
    """Rows for ``units`` that are not done, pending for ``job_id`` (a refused one is retried);
    returns their ids."""
    expect = {"weights_hash": weights_hash, "calibration_key": calibration_key}
    fresh = [
        {"profile_key": key, "unit": u, "phase": phase, "job_id": job_id, "state": "pending"}
        | expect
        for u in units
    ]
    if fresh:
        stmt = _insert(session)(Row).values(fresh)
        session.execute(stmt.on_conflict_do_nothing(index_elements=["profile_key", "unit"]))
    rows = select(Row.id).where(Row.profile_key == key, Row.unit.in_(units), Row.state != "done")
    ids = list(session.scalars(rows))
    if ids:
        again = update(Row).where(Row.id.in_(ids), Row.state == "refused")
        session.execute(again.values(state="pending", error=None, worker=None))
        mine = update(Row).where(Row.id.in_(ids))
        session.execute(mine.values(job_id=job_id, phase=phase, **expect))
    return ids


def claim(session: Session, unit_id: int, worker: str, stale_before: datetime) -> bool:
    """pending (or running with a silent worker) -> running for ``worker``."""
    now = utcnow()
    stmt = (
        update(Row)
        .where(
            Row.id == unit_id,
            (Row.state == "pending")
            | ((Row.state == "running") & (Row.heartbeat_at < stale_before)),
        )
        .values(state="running", worker=worker, attempts=Row.attempts + 1)
        .values(claimed_at=now, heartbeat_at=now)
    )
    return _changed(session, stmt) == 1


def claim_next(
    session: Session, key: str, units: list[str], worker: str, stale_before: datetime
) -> Row | None:
    """Claim the last claimable unit among ``units`` (workers fed by messages take them from
    the front); None when every one is done or taken."""
    stmt = (
        select(Row)
        .where(Row.profile_key == key, Row.unit.in_(units))
        .where(
            (Row.state == "pending")
            | ((Row.state == "running") & (Row.heartbeat_at < stale_before))
        )
        .order_by(Row.id.desc())
        .limit(4)
    )
    for row in session.scalars(stmt).all():
        if claim(session, row.id, worker, stale_before):
            return row
    return None


def heartbeat(session: Session, unit_id: int, worker: str) -> bool:
    """Refresh a claim; False when the unit is no longer ours."""
    stmt = (
        update(Row)
        .where(Row.id == unit_id, Row.state == "running", Row.worker == worker)
        .values(heartbeat_at=utcnow())
    )
    return _changed(session, stmt) == 1


def refuse(session: Session, unit_id: int, worker: str, error: str) -> None:
    """Record that ``worker`` cannot compute this unit (other weights or calibration)."""
    session.execute(
        update(Row)
        .where(Row.id == unit_id, Row.state != "done")
        .values(state="refused", worker=worker, error=error[:2000], finished_at=utcnow())
    )


def reclaim_stale(
    session: Session, key: str, units: list[str], stale_before: datetime
) -> list[int]:
    """Running units whose worker went silent -> pending again; returns their ids."""
    stale = select(Row.id).where(
        Row.profile_key == key,
        Row.unit.in_(units),
        Row.state == "running",
        Row.heartbeat_at < stale_before,
    )
    ids = list(session.scalars(stale))
    if ids:
        session.execute(
            update(Row)
            .where(Row.id.in_(ids), Row.state == "running", Row.heartbeat_at < stale_before)
            .values(state="pending", worker=None)
        )
    return ids


def states(
    session: Session, key: str, units: list[str]
) -> tuple[Counter[str], list[str], Counter[str]]:
    """Counts of ``units`` by state (missing rows count as pending), refusals' errors, and the
    done units per worker."""
    stmt = select(Row.state, Row.error, Row.worker).where(
        Row.profile_key == key, Row.unit.in_(units)
    )
    counts: Counter[str] = Counter()
    per_worker: Counter[str] = Counter()
    errors = []
    for state, error, worker in session.execute(stmt):
        counts[state] += 1
        if state == "refused":
            errors.append(error or "refused")
        elif state == "done":
            per_worker[worker or "?"] += 1
    counts["pending"] += len(units) - sum(counts.values())
    return counts, errors, per_worker


def get(session: Session, unit_id: int) -> Row | None:
    """The unit row, or None."""
    return session.get(Row, unit_id, populate_existing=True)


def summary(session: Session, key: str, since: datetime | None) -> dict[str, Any]:
    """Units done / total of profile ``key``, done per worker, and the rate since ``since``."""
    stmt = select(Row.state, Row.worker, Row.finished_at).where(Row.profile_key == key)
    total, done, per_worker, recent, last = 0, 0, Counter[str](), 0, None
    for state, worker, finished in session.execute(stmt):
        total += 1
        if state != "done":
            continue
        done += 1
        per_worker[worker or "?"] += 1
        if since is not None and finished is not None and finished >= since:
            recent += 1
            last = finished if last is None or finished > last else last
    rate = recent / max((last - since).total_seconds(), 1e-3) if last and since else 0.0
    return {
        "done": done,
        "total": total,
        "per_worker": dict(sorted(per_worker.items())),
        "rate_per_s": round(rate, 4),
    }

"""The profiler's unit store on the service database (``profile_units``): picklable (a database
URL and a profile key), so local pool processes and Celery workers each open their own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from searchsvc.db.session import session_scope
from searchsvc.profiles import units

__all__ = ["DbUnitStore"]


class DbUnitStore:
    """``profiling.sensitivity.store.Store`` on the ``profile_units`` table."""

    root: Path | None = None

    def __init__(self, database: str, key: str) -> None:
        self.database, self.key = database, key

    def get(self, unit: str) -> Any | None:
        return self.get_many([unit]).get(unit)

    def get_many(self, unit_ids: list[str]) -> dict[str, Any]:
        with session_scope(self.database, write=False) as session:
            return units.values(session, self.key, unit_ids)

    def put(
        self, unit: str, value: Any, *, worker: str | None = None, seconds: float | None = None
    ) -> None:
        with session_scope(self.database) as session:
            units.upsert_result(session, self.key, unit, value, worker, seconds)

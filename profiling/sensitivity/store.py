"""Per-unit checkpoints: a killed run resumes where it stopped and never recomputes a unit.

``Store`` is what the profiler needs of a unit store; ``UnitStore`` keeps one JSON file per unit
(the command line's default); the service keeps them in its database (``profile_units``)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Store", "UnitStore"]


class Store(Protocol):
    """Finished units' results by unit id; ``put`` is idempotent (a repeat overwrites)."""

    root: Path | None

    def get(self, unit: str) -> Any | None: ...

    def get_many(self, units: list[str]) -> dict[str, Any]: ...

    def put(
        self, unit: str, value: Any, *, worker: str | None = None, seconds: float | None = None
    ) -> None: ...


class UnitStore:
    """One JSON file per finished unit under ``root``, written atomically; a log of computations."""

    def __init__(self, root: Path) -> None:
        self.root: Path | None = root
        (root / "units").mkdir(parents=True, exist_ok=True)
        self.computed = 0
        self.resumed = 0

    def _path(self, unit: str) -> Path:
        assert self.root is not None
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", unit)
        return self.root / "units" / f"{safe}.json"

    def get(self, unit: str) -> Any | None:
        """The stored result of ``unit``, or None when it has not finished."""
        path = self._path(unit)
        if not path.exists():
            return None
        try:
            value = json.loads(path.read_text())
        except json.JSONDecodeError:  # a torn write from a killed run: recompute
            return None
        self.resumed += 1
        return value

    def get_many(self, units: list[str]) -> dict[str, Any]:
        """The stored results among ``units``."""
        found = {u: self.get(u) for u in units}
        return {u: v for u, v in found.items() if v is not None}

    def put(
        self, unit: str, value: Any, *, worker: str | None = None, seconds: float | None = None
    ) -> None:
        """Store ``unit``'s result (tmp file + rename, so a kill never leaves half a file) and
        log the computation (``time pid unit``; appends of one short line are atomic)."""
        assert self.root is not None
        path = self._path(unit)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, path)
        self.computed += 1
        who = (worker or str(os.getpid())).replace(" ", "_")
        with open(self.root / "computed.log", "a") as log:
            log.write(f"{time.time():.3f} {who} {unit}\n")

    def computed_units(self) -> list[str]:
        """Every unit ever computed under this key, in order (repeats would mean rework)."""
        assert self.root is not None
        log = self.root / "computed.log"
        if not log.exists():
            return []
        return [
            line.split(" ", 2)[2] for line in log.read_text().splitlines() if line.count(" ") >= 2
        ]

    def computed_by(self) -> dict[str, int]:
        """How many units each worker computed (from the log)."""
        assert self.root is not None
        log = self.root / "computed.log"
        counts: dict[str, int] = {}
        for line in log.read_text().splitlines() if log.exists() else []:
            who = line.split(" ", 2)[1]
            counts[who] = counts.get(who, 0) + 1
        return counts

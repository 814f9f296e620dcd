"""Per-unit checkpoints: a killed run resumes where it stopped and never recomputes a unit."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

__all__ = ["UnitStore"]


class UnitStore:
    """One JSON file per finished unit under ``root``, written atomically; a log of computations."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "units").mkdir(parents=True, exist_ok=True)
        self.computed = 0
        self.resumed = 0

    def _path(self, unit: str) -> Path:
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

    def put(self, unit: str, value: Any) -> None:
        """Store ``unit``'s result (tmp file + rename, so a kill never leaves half a file)."""
        path = self._path(unit)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, path)
        self.computed += 1
        with open(self.root / "computed.log", "a") as log:
            log.write(f"{time.time():.3f} {os.getpid()} {unit}\n")

    def computed_units(self) -> list[str]:
        """Every unit ever computed under this key, in order (repeats would mean rework)."""
        log = self.root / "computed.log"
        if not log.exists():
            return []
        return [
            line.split(" ", 2)[2] for line in log.read_text().splitlines() if line.count(" ") >= 2
        ]

"""An export folder written all at once: a temporary sibling folder renamed into place."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from profiling.export.errors import ExportError

__all__ = ["MANIFEST_FORMAT", "is_export", "check_out_dir", "write_atomically"]

MANIFEST_FORMAT = "bitbudget.onnx_export/v1"
T = TypeVar("T")


def is_export(folder: Path) -> bool:
    """True when ``folder`` holds a manifest written by ``export_plan``."""
    try:
        return json.loads((folder / "manifest.json").read_text()).get("format") == MANIFEST_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def check_out_dir(out_dir: Path) -> None:
    """Refuse a file, or a non-empty folder that is not a previous export."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(
            f"out: {out_dir} is a file; give a folder (new, empty or a previous export)"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not is_export(out_dir):
        raise ExportError(f"out: {out_dir} is a non-empty folder that is not a bitbudget export")


def write_atomically(out_dir: Path, write: Callable[[Path], T]) -> T:
    """Run ``write(tmp)`` in a temporary sibling of ``out_dir``, then rename it into place.

    On any failure the temporary folder is removed and ``out_dir`` is left as it was; a
    previous export in ``out_dir`` is replaced only once the new one is complete.
    """
    check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        result = write(tmp)
        check_out_dir(out_dir)  # nothing else wrote there meanwhile
        if out_dir.is_dir():
            old = Path(
                tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent)
            )
            out_dir.rename(old / "previous")
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
        return result
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)

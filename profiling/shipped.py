"""What ships: the files of an export folder weighed and hashed on disk (no torch, no onnx)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from profiling.errors import BadInput

__all__ = ["sha256_file", "export_files"]


def sha256_file(path: Path) -> str:
    """sha256 hex of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_files(folder: Path | str) -> dict[str, Any]:
    """The files of an export folder as they lie on disk: each one's bytes and sha256, and
    ``file_bytes``, their total (what ships). The files are those ``manifest.json`` lists,
    plus the manifest itself; a folder without a manifest is refused."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise BadInput(f"{folder}: not an export folder (no manifest.json); run bitbudget export")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{manifest_path}: unreadable manifest ({exc})") from None
    listed = manifest.get("files") if isinstance(manifest, Mapping) else None
    names = sorted(listed) if isinstance(listed, Mapping) else []
    names = names or sorted(p.name for p in folder.glob("*.onnx"))
    files: dict[str, Any] = {}
    for name in [*names, "manifest.json"]:
        path = folder / name
        if not path.is_file():
            raise BadInput(f"{folder}: {name} is missing; export the plan again")
        files[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return {
        "folder": str(folder.resolve()),
        "files": files,
        "file_bytes": sum(f["bytes"] for f in files.values()),
    }

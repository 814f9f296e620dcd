"""A calibration set as one file, so that a worker on another machine profiles on exactly the
same images: the pixels, names and boxes of its samples and the prompt scheme (prompts are
re-derived from them, as they are everywhere). Loading checks every image's content hash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from profiling.calibration import CalibrationSet, Sample
from profiling.calibration.images import ImageRecord, content_hash
from profiling.calibration.prompts import prompts_for
from profiling.errors import BadInput

__all__ = ["save_calibration", "load_calibration"]


def save_calibration(calib: CalibrationSet, path: Path) -> None:
    """Write ``calib`` to ``path`` (an uncompressed ``.npz``)."""
    meta = {
        "scheme": calib.scheme,
        "images": [
            {"name": s.image.name, "sha256": s.image.sha256, "boxes": list(s.image.boxes)}
            for s in calib.samples
        ],
    }
    arrays = {f"pixels{i}": s.image.pixels for i, s in enumerate(calib.samples)}
    with open(path, "wb") as fh:
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        np.savez(fh, **arrays)  # type: ignore[arg-type]


def load_calibration(path: Path) -> CalibrationSet:
    """The calibration set written by ``save_calibration``; a damaged image is an error."""
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(data["meta"].tobytes().decode())
        pixels = [data[f"pixels{i}"] for i in range(len(meta["images"]))]
    scheme = meta["scheme"]
    samples = []
    for info, px in zip(meta["images"], pixels, strict=True):
        if content_hash(px) != info["sha256"]:
            raise BadInput(f"calibration file {path.name}: image {info['name']!r} is damaged")
        boxes = [tuple(b) for b in info["boxes"]]
        rec = ImageRecord(name=info["name"], pixels=px, sha256=info["sha256"], boxes=boxes)
        prompts = prompts_for(rec, scheme["n_points"], scheme["n_boxes"], scheme["seed"])
        samples.append(Sample(rec, prompts))
    return CalibrationSet(samples, scheme)

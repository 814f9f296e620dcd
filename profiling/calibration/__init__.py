"""Calibration data: images (shipped photos, folders, COCO files), prompts and the split."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from profiling.calibration.coco import load_coco
from profiling.calibration.images import ImageRecord, load_folder, shipped_photos
from profiling.calibration.prompts import prompts_for
from profiling.errors import BadInput
from profiling.models.adapter import Prompts

__all__ = ["ImageRecord", "Sample", "CalibrationSet", "split", "load_source", "make_sets"]


@dataclass
class Sample:
    """One image with its prompt batches."""

    image: ImageRecord
    prompts: list[Prompts]


@dataclass
class CalibrationSet:
    """Samples plus what identifies them: content hashes and the prompt scheme."""

    samples: list[Sample]
    scheme: dict[str, Any] = field(default_factory=dict)

    @property
    def hashes(self) -> list[str]:
        return [s.image.sha256 for s in self.samples]

    @property
    def key(self) -> str:
        """Content hash of the images and the prompt scheme."""
        doc = json.dumps({"images": self.hashes, "scheme": self.scheme}, sort_keys=True)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "images": [s.image.name for s in self.samples],
            "sha256": self.hashes,
            "scheme": self.scheme,
        }


def split(records: list[ImageRecord], holdout: int, seed: int = 0) -> tuple[list, list]:
    """Deduplicate by content, then a seeded, order-independent split: (calibration, held-out)."""
    unique = {r.sha256: r for r in records}
    if holdout < 0 or holdout >= len(unique):
        raise BadInput(f"cannot hold out {holdout} of {len(unique)} distinct images")
    order = sorted(unique, key=lambda h: hashlib.sha256(f"{seed}:{h}".encode()).hexdigest())
    held = set(order[:holdout])
    calib = [unique[h] for h in sorted(unique, key=lambda h: unique[h].name) if h not in held]
    test = [unique[h] for h in sorted(unique, key=lambda h: unique[h].name) if h in held]
    return calib, test


def load_source(source: str = "shipped", coco_images: str | None = None) -> list[ImageRecord]:
    """``shipped`` (scikit-image photos), a folder path, or a COCO ``.json`` file."""
    if source == "shipped":
        return shipped_photos()
    if source.endswith(".json"):
        return load_coco(source, coco_images)
    return load_folder(source)


def make_sets(
    records: list[ImageRecord],
    holdout: int = 4,
    n_calib: int | None = None,
    n_points: int = 2,
    n_boxes: int = 2,
    seed: int = 0,
) -> tuple[CalibrationSet, CalibrationSet]:
    """Calibration and held-out sets with deterministic prompts; they never share an image."""
    calib, test = split(records, holdout, seed)
    if n_calib is not None:
        calib = calib[:n_calib]
    scheme = {"n_points": n_points, "n_boxes": n_boxes, "seed": seed}

    def build(recs: list[ImageRecord]) -> CalibrationSet:
        return CalibrationSet(
            [Sample(r, prompts_for(r, n_points, n_boxes, seed)) for r in recs], scheme
        )

    return build(calib), build(test)

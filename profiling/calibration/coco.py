"""COCO-format annotation files: images with instance masks (polygons or RLE) and boxes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from profiling.calibration.images import ImageRecord, content_hash, to_rgb
from profiling.errors import BadInput

__all__ = ["load_coco", "decode_rle", "polygons_to_mask"]


def decode_rle(rle: dict[str, Any], h: int, w: int) -> np.ndarray:
    """COCO RLE (uncompressed list or compressed string) -> bool HxW (column-major runs)."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = _decode_compressed(counts)
    flat = np.zeros(h * w, dtype=bool)
    pos, val = 0, False
    for c in counts:
        if val:
            flat[pos : pos + c] = True
        pos += c
        val = not val
    return flat.reshape(w, h).T


def _decode_compressed(s: str) -> list[int]:
    """The LEB128-like string COCO's maskApi writes (rleFrString)."""
    counts: list[int] = []
    i = 0
    while i < len(s):
        x, k, more = 0, 0, True
        while more:
            c = ord(s[i]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            i += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def polygons_to_mask(polys: list[list[float]], h: int, w: int) -> np.ndarray:
    """Polygon list [[x0, y0, x1, y1, ...], ...] -> bool HxW."""
    from skimage.draw import polygon

    mask = np.zeros((h, w), dtype=bool)
    for poly in polys:
        xy = np.asarray(poly, dtype=float).reshape(-1, 2)
        rr, cc = polygon(xy[:, 1], xy[:, 0], shape=(h, w))
        mask[rr, cc] = True
    return mask


def _mask(ann: dict[str, Any], h: int, w: int) -> np.ndarray:
    seg = ann.get("segmentation")
    if isinstance(seg, list):
        return polygons_to_mask(seg, h, w)
    if isinstance(seg, dict):
        return decode_rle(seg, h, w)
    raise BadInput(f"annotation {ann.get('id')}: segmentation must be polygons or RLE")


def load_coco(
    annotation_file: str | Path, image_dir: str | Path | None = None
) -> list[ImageRecord]:
    """Images of a COCO json (``file_name`` relative to ``image_dir``) with their instances."""
    from PIL import Image

    path = Path(annotation_file)
    try:
        doc = json.loads(path.read_text())
        images, anns = doc["images"], doc.get("annotations", [])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BadInput(f"{path.name}: not a COCO annotation file ({exc})") from None
    root = Path(image_dir) if image_dir else path.parent
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for ann in anns:
        by_image.setdefault(ann["image_id"], []).append(ann)
    out = []
    for info in images:
        file = root / info["file_name"]
        try:
            with Image.open(file) as im:
                px = to_rgb(np.asarray(im.convert("RGB")))
        except OSError as exc:
            raise BadInput(f"{path.name}: cannot read image {info['file_name']!r}: {exc}") from None
        h, w = px.shape[:2]
        rec = ImageRecord(name=str(info["file_name"]), pixels=px, sha256=content_hash(px))
        for ann in by_image.get(info["id"], []):
            x, y, bw, bh = ann["bbox"]
            rec.boxes.append((float(x), float(y), float(x + bw), float(y + bh)))
            rec.masks.append(_mask(ann, h, w))
        out.append(rec)
    return out

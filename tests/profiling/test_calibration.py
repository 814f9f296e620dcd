"""Calibration data: shipped photos, folders, COCO files, deterministic prompts, disjoint split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from profiling.calibration import load_source, make_sets, split
from profiling.calibration.coco import decode_rle, load_coco
from profiling.calibration.images import SHIPPED_PHOTOS, load_folder, shipped_photos
from profiling.calibration.prompts import prompts_for
from profiling.errors import BadInput


def test_shipped_photos_are_real_rgb() -> None:
    recs = shipped_photos()
    assert [r.name for r in recs] == list(SHIPPED_PHOTOS)
    for r in recs:
        assert r.pixels.dtype == np.uint8 and r.pixels.ndim == 3 and r.pixels.shape[2] == 3
    assert len({r.sha256 for r in recs}) == len(recs)


def test_split_is_disjoint_deterministic_and_order_free() -> None:
    recs = shipped_photos()
    calib, test = split(recs, holdout=4, seed=0)
    assert not {r.sha256 for r in calib} & {r.sha256 for r in test}
    assert len(calib) + len(test) == len(recs)
    calib2, test2 = split(list(reversed(recs)) + recs[:2], holdout=4, seed=0)  # dupes removed
    assert [r.sha256 for r in test2] == [r.sha256 for r in test]
    assert [r.sha256 for r in calib2] == [r.sha256 for r in calib]
    with pytest.raises(BadInput):
        split(recs, holdout=len(recs))


def test_prompts_are_deterministic_and_inside_the_image() -> None:
    rec = shipped_photos(["coffee"])[0]
    a = prompts_for(rec, 3, 2, seed=5)
    b = prompts_for(rec, 3, 2, seed=5)
    c = prompts_for(rec, 3, 2, seed=6)
    assert torch.equal(a[0].points, b[0].points) and torch.equal(a[1].boxes, b[1].boxes)
    assert not torch.equal(a[0].points, c[0].points)
    h, w = rec.hw
    assert (a[0].points[..., 0] < w).all() and (a[0].points[..., 1] < h).all()
    boxes = a[1].boxes
    assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all() and (boxes[:, :2] >= 0).all()


def test_make_sets_keys_change_with_content() -> None:
    c1, h1 = make_sets(load_source(), holdout=4)
    c2, _ = make_sets(load_source(), holdout=4, n_points=3)
    assert c1.key != c2.key and c1.key != h1.key
    assert not set(c1.hashes) & set(h1.hashes)


def test_folder_loading(tmp_path) -> None:
    for i, r in enumerate(shipped_photos(["coffee", "camera"])):
        Image.fromarray(r.pixels).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("ignored")
    recs = load_folder(tmp_path)
    assert [r.name for r in recs] == ["0.png", "1.png"]
    (tmp_path / "2.png").write_bytes(b"broken")
    with pytest.raises(BadInput, match="2.png"):
        load_folder(tmp_path)
    with pytest.raises(BadInput, match="does not exist"):
        load_folder(tmp_path / "missing")


def _rle_encode(mask: np.ndarray) -> list[int]:
    flat = mask.T.reshape(-1)
    counts, val, run = [], False, 0
    for px in flat:
        if bool(px) == val:
            run += 1
        else:
            counts.append(run)
            val, run = not val, 1
    counts.append(run)
    return counts


def test_coco_polygons_and_rle(tmp_path) -> None:
    img = np.zeros((40, 60, 3), dtype=np.uint8)
    Image.fromarray(img).save(tmp_path / "a.png")
    square = np.zeros((40, 60), dtype=bool)
    square[5:15, 10:30] = True
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 40}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "bbox": [10, 5, 20, 10],
                "category_id": 1,
                "segmentation": [[10, 5, 29, 5, 29, 14, 10, 14]],
            },
            {
                "id": 2,
                "image_id": 1,
                "bbox": [10, 5, 20, 10],
                "category_id": 1,
                "segmentation": {"size": [40, 60], "counts": _rle_encode(square)},
            },
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(doc))
    rec = load_coco(tmp_path / "ann.json")[0]
    assert rec.boxes[0] == (10.0, 5.0, 30.0, 15.0)
    assert np.array_equal(rec.masks[1], square)
    assert np.array_equal(rec.masks[0], square)
    assert np.array_equal(decode_rle({"counts": _rle_encode(square)}, 40, 60), square)
    # compressed RLE string for a 2x2 mask with the top-left pixel set: runs [0, 1, 3]
    assert decode_rle({"counts": "013"}, 2, 2).tolist() == [[True, False], [False, False]]
    prompts = prompts_for(rec, 2, 2, seed=0)
    assert len(prompts) == 1 and prompts[0].boxes.shape == (2, 4)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(BadInput, match="not a COCO"):
        load_coco(tmp_path / "bad.json")

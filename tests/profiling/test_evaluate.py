"""Fidelity metrics: hand-computed cases, then sam2-micro against itself quantized, and mIoU
against COCO-format ground truth written to disk."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from profiling.evaluate import (
    gt_ious,
    iou_head_agreement,
    logit_kl,
    mask_iou,
    mask_ious,
    measure_fidelity,
    upsample_logits,
)
from profiling.models.adapter import TaskAdapter

POS, NEG = 3.0, -3.0


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """Two busy cores: one intra-op thread avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _logits(*rows: list[list[int]]) -> torch.Tensor:
    """Masks given as 0/1 grids -> (1, M, h, w) logits (+3 inside, -3 outside)."""
    grid = torch.tensor(rows, dtype=torch.float32)
    return torch.where(grid > 0, POS, NEG)[None]


def test_mask_iou_hand_computed() -> None:
    a = _logits([[1, 0], [1, 0]], [[0, 0], [0, 0]], [[1, 1], [1, 1]])
    b = _logits([[1, 1], [0, 0]], [[0, 0], [0, 0]], [[1, 1], [1, 0]])
    # 1 shared of 3 pixels; two empty masks = 1; 3 shared of 4
    assert mask_ious(a, b)[0].tolist() == pytest.approx([1 / 3, 1.0, 3 / 4])
    assert mask_iou(a, b) == pytest.approx((1 / 3 + 1 + 3 / 4) / 3)
    assert mask_iou(a, a) == 1.0
    empty_vs_full = mask_iou(_logits([[0, 0], [0, 0]]), _logits([[1, 1], [1, 1]]))
    assert empty_vs_full == 0.0


def test_logit_kl_hand_computed() -> None:
    ref = torch.zeros(1, 1, 1, 2)  # p = 1/2 on both pixels
    q = torch.tensor([[[[math.log(3.0), 0.0]]]], dtype=torch.float64)  # q = 3/4, then 1/2
    # pixel 1: 1/2 ln(2/3) + 1/2 ln(2) = 1/2 ln(4/3); pixel 2: 0; mean over the 2 pixels
    assert logit_kl(ref, q) == pytest.approx(0.25 * math.log(4 / 3), rel=1e-9)
    assert logit_kl(q, q) == pytest.approx(0.0, abs=1e-12)


def test_iou_head_agreement_hand_computed() -> None:
    ref = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.7, 0.1]])
    q = torch.tensor([[0.8, 0.3, 0.4], [0.2, 0.1, 0.6]])
    got = iou_head_agreement(ref, q)
    assert got["mae"] == pytest.approx((0.1 + 0.2 + 0.1 + 0.0 + 0.6 + 0.5) / 6, rel=1e-6)
    assert got["argmax"] == 0.5  # the first prompt keeps its best mask, the second does not
    single = iou_head_agreement(ref[:, :1], q[:, :1])
    assert single["argmax"] is None and single["mae"] == pytest.approx(0.05, rel=1e-6)


def test_upsample_crops_sam_padding_but_not_sam2() -> None:
    low = torch.tensor([[[[1.0, 1.0], [-1.0, -1.0]]]])  # top half positive
    # SAM2: the square input covers the whole image -> half of a 4x8 image is foreground
    sam2 = upsample_logits(low, (4, 8), 8, "sam2")
    assert sam2.shape == (1, 1, 4, 8) and (sam2 > 0).float().mean() == 0.5
    # SAM: a 4x8 image fills only the top half of the padded 8x8 input -> all foreground
    sam = upsample_logits(low, (4, 8), 8, "sam")
    assert sam.shape == (1, 1, 4, 8) and bool((sam > 0).all())


def test_gt_ious_hand_computed() -> None:
    logits = _logits([[1, 1, 0], [0, 0, 0]], [[0, 0, 0], [0, 0, 0]])[0]
    gt = torch.tensor([[[1, 0, 0], [1, 0, 0]], [[0, 0, 0], [0, 0, 0]]], dtype=torch.bool)
    assert gt_ious(logits, gt).tolist() == pytest.approx([1 / 3, 1.0])


# ---------------------------------------------------------------- sam2-micro, real models


@pytest.fixture(scope="module")
def sets() -> tuple[Any, Any]:
    from profiling.calibration import load_source, make_sets

    return make_sets(load_source("shipped"), holdout=3, n_calib=2, n_points=2, n_boxes=1)


def _iou_at(sam2_micro: Any, sets: tuple[Any, Any], candidate: str) -> dict[str, Any]:
    from profiling.quant.apply import quantized_copy
    from profiling.quant.plan import uniform_plan

    calib, held = sets
    quant = quantized_copy(sam2_micro, uniform_plan(sam2_micro.module, candidate), calib)
    return measure_fidelity(TaskAdapter(sam2_micro), TaskAdapter(quant), held.samples).to_dict()


def test_float_against_itself_is_perfect(sam2_micro: Any, sets: tuple[Any, Any]) -> None:
    ad = TaskAdapter(sam2_micro)
    got = measure_fidelity(ad, ad, sets[1].samples).to_dict()
    assert got["iou"] == 1.0 and got["kl"] == pytest.approx(0.0, abs=1e-12)
    assert got["iou_head_mae"] == 0.0 and got["images"] == 3 and got["masks"] == 9
    assert got["gt_miou_float"] is None  # the shipped photos carry no annotations


def test_iou_falls_as_bits_fall(sam2_micro: Any, sets: tuple[Any, Any]) -> None:
    w8, w4, w2 = (_iou_at(sam2_micro, sets, c) for c in ("w8a8", "w4a8", "w2a8"))
    assert w8["iou"] >= 0.95
    assert w8["iou"] > w4["iou"] > w2["iou"]
    assert w8["kl"] < w4["kl"] < w2["kl"]


def test_multimask_head_agreement(sam2_micro: Any, sets: tuple[Any, Any]) -> None:
    ad = TaskAdapter(sam2_micro, multimask=True)
    got = measure_fidelity(ad, ad, sets[1].samples[:1]).to_dict()
    assert got["iou_head_argmax"] == 1.0 and got["masks"] == 3 * 3


# ------------------------------------------------------- COCO-format ground truth on disk


def _rle(mask: np.ndarray) -> dict[str, Any]:
    """Uncompressed COCO RLE (column-major runs, starting with a run of zeros)."""
    flat = mask.T.reshape(-1).astype(np.uint8)
    change = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], change])).tolist()
    return {"size": list(mask.shape), "counts": counts}


def _write_coco(tmp_path: Path, sam2_micro: Any, flip: set[str]) -> Path:
    """Three crops of shipped photos with two boxes each; GT = the float model's own masks,
    complemented on the images named in ``flip``."""
    from PIL import Image

    from profiling.calibration import load_source
    from profiling.models.adapter import Prompts

    photos = {r.name: r.pixels for r in load_source("shipped")}
    ad = TaskAdapter(sam2_micro)
    doc: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": 1}]}
    for i, name in enumerate(("astronaut", "coffee", "chelsea")):
        px = np.ascontiguousarray(photos[name][40:136, 60:188])  # 96 x 128
        Image.fromarray(px).save(tmp_path / f"{name}.png")
        doc["images"].append({"id": i, "file_name": f"{name}.png", "height": 96, "width": 128})
        boxes = [(10.5, 8.0, 70.0, 60.0), (50.0, 30.0, 120.0, 90.0)]
        with torch.inference_mode():
            out = ad(px, Prompts(boxes=torch.tensor(boxes)))
        masks = (upsample_logits(out.logits[:, 0], (96, 128), ad.size, ad.family) > 0).numpy()
        for j, (box, mask) in enumerate(zip(boxes, masks)):
            gt = ~mask if f"{name}.png" in flip else mask
            bbox = [box[0], box[1], box[2] - box[0], box[3] - box[1]]
            ann = {"id": 10 * i + j, "image_id": i, "category_id": 1, "bbox": bbox}
            doc["annotations"].append(ann | {"segmentation": _rle(gt), "iscrowd": 0})
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(doc))
    return path


def test_gt_miou_from_a_coco_file(sam2_micro: Any, tmp_path: Path) -> None:
    from profiling.calibration import load_source, make_sets
    from profiling.quant.apply import quantized_copy
    from profiling.quant.plan import uniform_plan

    path = _write_coco(tmp_path, sam2_micro, flip=set())
    calib, held = make_sets(load_source(str(path)), holdout=2)
    ref = TaskAdapter(sam2_micro)
    quant = quantized_copy(sam2_micro, uniform_plan(sam2_micro.module, "w8a8"), calib)
    got = measure_fidelity(ref, TaskAdapter(quant), held.samples).to_dict()
    assert got["gt_instances"] == 4 and got["gt_miou_float"] == 1.0  # GT = its own masks
    assert 0.5 < got["gt_miou_quant"] <= 1.0


def test_gt_miou_counts_wrong_instances(sam2_micro: Any, tmp_path: Path) -> None:
    from profiling.calibration import load_source, make_sets

    # a complemented GT mask has IoU exactly 0 with the prediction, an exact one 1
    path = _write_coco(tmp_path, sam2_micro, flip={"astronaut.png", "coffee.png"})
    _, held = make_sets(load_source(str(path)), holdout=2)
    ref = TaskAdapter(sam2_micro)
    got = measure_fidelity(ref, ref, held.samples).to_dict()
    exact = [s.image.name not in ("astronaut.png", "coffee.png") for s in held.samples]
    assert got["gt_instances"] == 4 and got["gt_miou_float"] == pytest.approx(np.mean(exact))
    assert got["iou"] == 1.0  # against itself the fidelity is still perfect

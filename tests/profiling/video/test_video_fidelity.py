"""J, F and J&F on hand-built masks (DAVIS conventions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from profiling.video.fidelity import (
    boundary_f,
    jf_scores,
    jf_summary,
    mean_scores,
    region_similarity,
    seg2bmap,
    video_masks,
)


def square(x0: int, y0: int, side: int, size: int = 40) -> np.ndarray:
    m = np.zeros((size, size), bool)
    m[y0 : y0 + side, x0 : x0 + side] = True
    return m


def test_j_two_squares_with_known_overlap() -> None:
    a, b = square(5, 5, 10), square(10, 5, 10)  # overlap 5x10 = 50, union 150
    assert region_similarity(a, b) == pytest.approx(50 / 150)
    assert region_similarity(a, a) == 1.0
    assert region_similarity(a, square(25, 25, 10)) == 0.0


def test_empty_masks_convention() -> None:
    empty = np.zeros((20, 20), bool)
    assert region_similarity(empty, empty) == 1.0
    assert boundary_f(empty, empty) == 1.0
    assert region_similarity(empty, square(2, 2, 5, 20)) == 0.0
    assert boundary_f(empty, square(2, 2, 5, 20)) == 0.0
    assert boundary_f(square(2, 2, 5, 20), empty) == 0.0


def test_seg2bmap_marks_the_inner_edge() -> None:
    b = seg2bmap(square(1, 1, 3, 6))
    # pixels of the square whose right / lower / lower-right neighbour differs, plus the
    # outside pixels just left of and above it that see the square
    assert b[1:4, 1:4].sum() == 5  # right column and bottom row of the 3x3 square
    assert b.sum() == 5 + 3 + 3 + 1


def test_f_identical_and_tolerance() -> None:
    a = square(10, 10, 12)
    assert boundary_f(a, a) == 1.0
    shifted = square(11, 10, 12)
    assert boundary_f(a, shifted, bound_th=1) == 1.0  # 1 px shift within a 1 px tolerance
    assert boundary_f(a, shifted, bound_th=0.0001) == 1.0  # any ratio > 0 rounds up to 1 px
    assert boundary_f(a, shifted, bound_th=0.0) < 1.0  # no tolerance
    far = square(26, 26, 12)
    assert boundary_f(a, far, bound_th=2) == 0.0


def test_f_hand_computed_partial_match() -> None:
    # 2-px shift, radius 1: boundary columns do not match, rows match where columns overlap.
    a, b = square(10, 10, 10), square(12, 10, 10)
    ba, bb = seg2bmap(a), seg2bmap(b)
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk

    p = (bb & binary_dilation(ba, structure=disk(1))).sum() / bb.sum()
    r = (ba & binary_dilation(bb, structure=disk(1))).sum() / ba.sum()
    assert boundary_f(a, b, bound_th=1) == pytest.approx(2 * p * r / (p + r))
    assert 0.0 < boundary_f(a, b, bound_th=1) < 1.0


def test_davis_ratio_radius() -> None:
    # 0.008 of a 300x400 diagonal (500) is 4 px: a 4-px shift is tolerated, 6 px is not.
    a = np.zeros((300, 400), bool)
    a[100:200, 100:200] = True
    b4, b6 = np.roll(a, 4, axis=1), np.roll(a, 6, axis=1)
    assert math.ceil(0.008 * 500) == 4
    assert boundary_f(a, b4) == 1.0
    assert boundary_f(a, b6) < 1.0


def test_clip_scores_and_summaries() -> None:
    ref = {0: square(5, 5, 10), 1: square(5, 5, 10), 2: square(5, 5, 10)}
    pred = {0: square(0, 0, 3), 1: square(5, 5, 10), 2: square(10, 5, 10)}
    s = jf_scores(ref, pred, [1, 2])  # frame 0 is not scored
    assert s["frames"] == 2
    assert s["J"] == pytest.approx((1 + 1 / 3) / 2)
    summ = jf_summary([s])
    assert summ is not None and summ["JF"] == pytest.approx((summ["J"] + summ["F"]) / 2, abs=1e-3)
    assert jf_summary([jf_scores(ref, pred, [])]) is None
    assert mean_scores([None, {"J": 50.0, "F": 70.0, "JF": 60.0}]) == {
        "J": 50.0, "F": 70.0, "JF": 60.0,
    }  # fmt: skip


def test_video_masks_upsample_and_threshold() -> None:
    logits = torch.full((2, 1, 4, 4), -5.0)
    logits[1, 0, :, :2] = 5.0
    m = video_masks(logits, (8, 8))
    assert m.shape == (2, 8, 8) and m.dtype == bool
    assert not m[0].any() and m[1, :, :3].all() and not m[1, :, 5:].any()

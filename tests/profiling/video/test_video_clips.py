"""Clips: synthetic motion over the shipped photos (deterministic, right shapes, warped ground
truth) and user frame folders in the DAVIS and SA-V layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from profiling.errors import BadInput
from profiling.video.clips import MOTIONS, Clip, ClipObject, synthetic_clips
from profiling.video.folders import load_clips


def test_synthetic_clips_are_deterministic_and_shaped() -> None:
    a = synthetic_clips(2, frames=4, seed=3, long_side=96)
    b = synthetic_clips(2, frames=4, seed=3, long_side=96)
    c = synthetic_clips(2, frames=4, seed=4, long_side=96)
    for x, y in zip(a, b):
        assert x.sha256 == y.sha256 and np.array_equal(x.frames, y.frames)
    assert [x.sha256 for x in a] != [z.sha256 for z in c]
    for clip in a:
        t, h, w, ch = clip.frames.shape
        assert (t, ch, max(h, w)) == (4, 3, 96) and clip.frames.dtype == np.uint8
        obj = clip.objects[0]
        assert sorted(obj.masks) == [0, 1, 2, 3]
        assert all(m.shape == (h, w) and m.dtype == bool for m in obj.masks.values())
        assert obj.first_mask is not None and obj.first_mask[int(obj.point[1]), int(obj.point[0])]
        x0, y0, x1, y1 = obj.box
        assert 0 <= x0 < x1 < w and 0 <= y0 < y1 < h
        assert clip.has_ground_truth and clip.meta["motion"]["kind"] in MOTIONS


def test_frames_move_smoothly_and_masks_follow() -> None:
    clip = synthetic_clips(1, frames=5, seed=0, motion="pan", long_side=96)[0]
    diffs = [np.abs(np.diff(clip.frames[i : i + 2].astype(int), axis=0)).mean() for i in range(4)]
    assert all(0 < d < 40 for d in diffs)  # it moves, and not by a cut
    masks = clip.objects[0].masks
    ious = [(masks[i] & masks[i + 1]).sum() / (masks[i] | masks[i + 1]).sum() for i in range(4)]
    assert min(ious) > 0.6 and not np.array_equal(masks[0], masks[4])


def test_every_motion_kind() -> None:
    for kind in MOTIONS:
        clip = synthetic_clips(1, frames=3, seed=1, motion=kind, long_side=64)[0]
        assert clip.meta["motion"]["kind"] == kind and len(clip) == 3
    with pytest.raises(BadInput, match="unknown motion"):
        synthetic_clips(1, frames=3, motion="shake")


def _write_video(folder: Path, frames: int, size: tuple[int, int] = (40, 48)) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(frames):
        px = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(px).save(folder / f"{i:05d}.jpg")


def _palette_png(path: Path, labels: np.ndarray) -> None:
    im = Image.fromarray(labels.astype(np.uint8), mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def test_davis_layout_with_palette_annotations(tmp_path: Path) -> None:
    _write_video(tmp_path / "JPEGImages" / "480p" / "bear", 4)
    lab = np.zeros((40, 48), np.uint8)
    lab[5:15, 5:15], lab[20:30, 25:40], lab[0, 0] = 1, 2, 255  # two objects and a void pixel
    for i in (0, 2):
        _palette_png(tmp_path / "Annotations" / "480p" / "bear" / f"{i:05d}.png", lab)
    (clip,) = load_clips(tmp_path)
    assert clip.name == "bear" and clip.frames.shape == (4, 40, 48, 3)
    assert [o.obj_id for o in clip.objects] == [1, 2]
    one = clip.objects[0]
    assert sorted(one.masks) == [0, 2] and one.masks[2].sum() == 100
    assert one.box == (5.0, 5.0, 14.0, 14.0) and clip.has_ground_truth


def test_sav_layout_with_per_object_folders(tmp_path: Path) -> None:
    _write_video(tmp_path / "JPEGImages_24fps" / "sav_001", 6)
    m = np.zeros((40, 48), np.uint8)
    m[10:20, 10:30] = 255
    for i in (0, 4):
        path = tmp_path / "Annotations_6fps" / "sav_001" / "003" / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(m).save(path)
    (clip,) = load_clips(tmp_path, max_frames=5, stride=1)
    assert len(clip) == 5 and [o.obj_id for o in clip.objects] == [3]
    assert sorted(clip.objects[0].masks) == [0, 4]


def test_plain_folder_gets_a_salient_prompt(tmp_path: Path) -> None:
    _write_video(tmp_path / "v", 3)
    (clip,) = load_clips(tmp_path / "v")
    assert len(clip) == 3 and len(clip.objects) == 1 and not clip.has_ground_truth
    with pytest.raises(BadInput, match="does not exist"):
        load_clips(tmp_path / "missing")
    with pytest.raises(BadInput):
        Clip("bad", np.zeros((2, 4, 4), np.uint8), [ClipObject(1, (0, 0), (0, 0, 1, 1))])

"""``video_validation``: J&F of a plan against the float model, and against ground truth where a
clip has annotations (DAVIS layout), with the memory costs of the policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from profiling.models import LoadedModel
from profiling.quant.plan import uniform_plan
from profiling.video import load_clips, video_validation
from profiling.video.clips import Clip
from profiling.video.validation import VIDEO_VALIDATION_FORMAT


def davis_folder(clip: Clip, root: Path, annotated: bool) -> Path:
    """The clip as DAVIS JPEGImages/480p/<video> (+ palette Annotations when ``annotated``)."""
    frames = root / "JPEGImages" / "480p" / "vid"
    frames.mkdir(parents=True)
    ann = root / "Annotations" / "480p" / "vid"
    if annotated:
        ann.mkdir(parents=True)
    for t, frame in enumerate(clip.frames):
        Image.fromarray(frame).save(frames / f"{t:05d}.jpg", quality=95)
        if annotated:
            lab = Image.fromarray(clip.objects[0].masks[t].astype(np.uint8), mode="P")
            lab.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
            lab.save(ann / f"{t:05d}.png")
    return root


def test_jf_against_float_and_ground_truth(
    micro128: LoadedModel, clip6: Clip, tmp_path: Path
) -> None:
    clips = load_clips(davis_folder(clip6, tmp_path / "a", annotated=True))
    assert clips[0].has_ground_truth
    plan = uniform_plan(micro128.module, "w4a4")
    doc = video_validation(micro128, plan, clips, "fifo")
    assert doc["format"] == VIDEO_VALIDATION_FORMAT and doc["plan_layers"] > 0
    row = doc["clips"][0]
    for key in ("vs_float", "vs_gt", "float_vs_gt"):
        s = row[key]
        assert s is not None and 0 <= s["J"] <= 100 and 0 <= s["F"] <= 100
        assert s["JF"] == pytest.approx((s["J"] + s["F"]) / 2, abs=1e-3)
    assert row["vs_float"]["JF"] < 100  # 4-bit weights and activations change the tracks
    assert doc["summary"]["vs_gt"] == row["vs_gt"]
    assert doc["memory"]["policy"]["frames"] == len(clip6) - 1
    assert doc["memory"]["policy"]["memory_attention_macs"] > 0
    assert doc["random_weights"] and doc["object_bias"] > 0

    # the float model against itself: perfect; a folder without annotations: no ground truth
    plain = load_clips(davis_folder(clip6, tmp_path / "b", annotated=False))
    same = video_validation(micro128, None, plain, None)
    assert same["summary"]["vs_float"] == {"J": 100.0, "F": 100.0, "JF": 100.0}
    assert same["summary"]["vs_gt"] is None and same["clips"][0]["vs_gt"] is None
    assert same["policy"] == {"name": "fifo"}


def test_plan_memory_policy_is_used(micro128: LoadedModel, clip6: Clip) -> None:
    plan = {"choices": {}, "memory_policy": {"name": "mutual_kv", "threshold": -1.0}}
    doc = video_validation(micro128, plan, [clip6])
    assert doc["policy"] == {"name": "mutual_kv", "threshold": -1.0}
    mem, ref = doc["memory"]["policy"], doc["memory"]["reference"]
    assert mem["slots"] < ref["slots"] and mem["bank_bytes"] < ref["bank_bytes"]
    assert mem["cross_attention_macs"] < ref["cross_attention_macs"]

"""Memory-path profiling on clips: measured apart from the image path, reported apart, merged."""

from __future__ import annotations

from pathlib import Path

import pytest

from profiling.errors import BadInput
from profiling.models import LoadedModel, ModelSpec
from profiling.sensitivity import ProfileRequest, run_profile
from profiling.video.clips import Clip
from profiling.video.profile import (
    MEMORY_PREFIXES,
    VIDEO_METRIC,
    memory_path_layers,
    merge_video_profile,
    run_video_profile,
)

CANDS = ("w8a8", "w4a8")


def test_memory_path_profiled_on_clips_and_reported_apart(
    micro128: LoadedModel, clip6: Clip, tmp_path: Path
) -> None:
    names = memory_path_layers(micro128.module)
    assert names and all(n.startswith(MEMORY_PREFIXES) for n in names)
    pick = [n for n in names if n.startswith("memory_attention.")][:1]
    pick += [n for n in names if n.startswith("memory_encoder.")][:1]
    video = run_video_profile(micro128, [clip6], tmp_path / "v", CANDS, layers=pick)
    assert video.metric == VIDEO_METRIC and sorted(video.layers) == sorted(pick)
    for entry in video.layers.values():
        assert set(entry["weight"]) == {"8", "4"} and set(entry["act"]) == {"8"}
        assert entry["weight"]["4"] >= 0 and entry["weight"]["4"] > entry["weight"]["8"] * 0.5
    assert any(e["weight"]["4"] > 0 for e in video.layers.values())  # the memory path matters
    assert video.calibration["clips"][0]["name"] == clip6.name
    assert video.stats["computed_units"] == len(pick)
    again = run_video_profile(micro128, [clip6], tmp_path / "v", CANDS, layers=pick)
    assert again.stats["cache_hit"] and again.layers == video.layers

    # the image path on images: its profile cannot measure the memory path
    req = ProfileRequest(ModelSpec("sam2-micro", image_size=128), "fisher_kl", CANDS, images=2)
    image = run_profile(req, tmp_path / "img", device="cpu")
    assert not set(image.layers) & set(names)
    assert set(pick) <= set(image.unmeasured)
    merged = merge_video_profile(image, video)
    assert set(merged.layers) == set(image.layers) | set(pick)
    assert not set(pick) & set(merged.unmeasured)
    assert merged.stats["video"] == {
        "profile": video.key,
        "metric": VIDEO_METRIC,
        "layers": sorted(pick),
    }
    with pytest.raises(BadInput, match="not a video profile"):
        merge_video_profile(image, image)

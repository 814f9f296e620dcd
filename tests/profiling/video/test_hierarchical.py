"""The hierarchical profile: image path on images, memory path on clips, merged, so the solver
gives the memory path real options instead of pinning it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from profiling.errors import BadInput
from profiling.inventory import build_inventory
from profiling.models import LoadedModel, ModelSpec
from profiling.sensitivity import ProfileRequest, problem_from_profile, run_profile
from profiling.video.hierarchical import (
    VideoCalibration,
    image_request,
    run_hierarchical_profile,
    video_calibration,
    video_request,
)
from profiling.video.profile import MEMORY_PREFIXES

CANDS = ("w8a8", "w4a8")


def test_hierarchical_profile_gives_the_memory_path_options(
    micro128: LoadedModel, tmp_path: Path
) -> None:
    base = ProfileRequest(ModelSpec("sam2-micro", image_size=128), "fisher_kl", CANDS, images=2)
    req = video_request(base, VideoCalibration(clips=1, frames=3))
    assert video_calibration(req) == VideoCalibration(1, 3)
    assert image_request(req) == base and req.key("w") != base.key("w")
    seen: list[float] = []

    def run_image(r: ProfileRequest, progress: Any) -> Any:
        return run_profile(r, tmp_path / "img", device="cpu", progress=progress)

    merged = run_hierarchical_profile(req, tmp_path, run_image, lambda f, _: seen.append(f))
    image = run_image(base, None)  # served from the cache the hierarchical run filled
    assert image.stats["cache_hit"]
    memory = [n for n in merged.layers if n.startswith(MEMORY_PREFIXES)]
    assert memory and not set(memory) & set(image.layers)
    assert not set(memory) & set(merged.unmeasured) and set(memory) <= set(image.unmeasured)
    assert merged.request["options"]["video"] == {"clips": 1, "frames": 3}
    assert merged.stats["video"]["clips"] == {"clips": 1, "frames": 3}
    assert seen == sorted(seen) and seen[-1] <= 1.0 and max(seen) > 0.5
    inv = build_inventory(micro128).to_json()
    budget = {"memory_bytes": 1e12}
    with_video = {ly.name: ly for ly in problem_from_profile(merged, inv, budget).layers}
    image_only = {ly.name: ly for ly in problem_from_profile(image, inv, budget).layers}
    for name in memory:  # pinned at one option on images alone; both candidates now
        assert image_only[name].option_ids() == ["w8a8"]
        assert with_video[name].option_ids() == list(CANDS)
    losses = [o.loss for n in memory for o in with_video[n].options if o.id == "w4a8"]
    assert any(loss > 0 for loss in losses)


@pytest.mark.parametrize(
    ("name", "metric", "cal", "needle"),
    [
        ("sam-micro", "fisher_kl", {}, "not a SAM2 model"),
        ("sam2-micro", "wais", {}, "metric 'wais' cannot hold memory-path losses"),
        ("sam2-micro", "fisher_kl", {"clips": 0}, "video.clips"),
        ("sam2-micro", "fisher_kl", {"frames": 1}, "video.frames"),
    ],
)
def test_bad_video_requests_name_the_field(name: str, metric: str, cal: dict, needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        base = ProfileRequest(ModelSpec(name, image_size=128), metric, CANDS, images=2)
        video_request(base, VideoCalibration(**cal))

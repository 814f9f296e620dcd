"""The hierarchical profile of a SAM2 model (Q-MiniSAM2's hierarchy-aware calibration): the
image path calibrated on images (``run_profile``), the memory path (memory attention, memory
encoder, object-pointer projections) on clip frames through the memory bank
(``run_video_profile``), joined by ``merge_video_profile`` into one profile the solver reads,
so the memory path gets real options instead of being pinned.

A request asks for it with ``options={"video": {"clips": 2, "frames": 6}}``: the option is part
of the request's key (a video profile never serves an image-only request), and the image part
is run as the same request without it, so it is shared with (and cached like) the image-only
profile of the same settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from profiling.errors import BadInput
from profiling.models import ModelSpec, build_model
from profiling.sensitivity.profile import Profile
from profiling.sensitivity.request import ProfileRequest
from profiling.video.clips import Clip, synthetic_clips
from profiling.video.folders import load_clips
from profiling.video.profile import merge_video_profile, run_video_profile

__all__ = [
    "VIDEO_METRICS",
    "MAX_CLIPS",
    "MAX_FRAMES",
    "VideoCalibration",
    "check_video_model",
    "video_request",
    "video_calibration",
    "image_request",
    "run_hierarchical_profile",
]

VIDEO_METRICS = ("kl", "fisher_kl")  # the image metrics whose losses merge with kl_video
MAX_CLIPS, MAX_FRAMES = 16, 64
IMAGE_SHARE = 0.5  # of the progress bar: the image part, then the memory path
Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class VideoCalibration:
    """The clips the memory path is calibrated on: ``clips`` synthetic clips of ``frames``
    frames over the shipped photographs, or the first ``clips`` videos of ``folder``."""

    clips: int = 2
    frames: int = 6
    folder: str | None = None

    def __post_init__(self) -> None:
        for name, value, low, high in (
            ("clips", self.clips, 1, MAX_CLIPS),
            ("frames", self.frames, 2, MAX_FRAMES),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise BadInput(f"video.{name}: a whole number from {low} to {high}, got {value!r}")

    def load(self, long_side: int, seed: int) -> list[Clip]:
        """The clips, frames ``long_side`` pixels on their long side when synthetic."""
        if self.folder is not None:
            return load_clips(self.folder, videos=self.clips, max_frames=self.frames, seed=seed)
        return synthetic_clips(self.clips, frames=self.frames, seed=seed, long_side=long_side)

    def to_dict(self) -> dict[str, Any]:
        doc = dataclasses.asdict(self)
        return doc if self.folder is not None else {k: v for k, v in doc.items() if k != "folder"}


def check_video_model(spec: ModelSpec) -> None:
    """Refuse a model without a memory path (SAM v1) in one line naming the field."""
    if spec.info.family != "sam2":
        raise BadInput(
            f"video: {spec.name} is not a SAM2 model; only SAM2 has a memory path to profile"
        )


def video_request(req: ProfileRequest, cal: VideoCalibration) -> ProfileRequest:
    """``req`` asking for the hierarchical profile on ``cal``'s clips (checked)."""
    check_video_model(req.model)
    if req.metric not in VIDEO_METRICS:
        raise BadInput(
            f"video: metric {req.metric!r} cannot hold memory-path losses; "
            f"use {' or '.join(VIDEO_METRICS)}"
        )
    return dataclasses.replace(req, options={**req.options, "video": cal.to_dict()})


def video_calibration(req: ProfileRequest) -> VideoCalibration | None:
    """The clips a request asks the memory path to be calibrated on (None: image-only)."""
    raw = req.options.get("video")
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"clips", "frames", "folder"}:
        raise BadInput("video: expected {clips, frames[, folder]}")
    return VideoCalibration(**raw)


def image_request(req: ProfileRequest) -> ProfileRequest:
    """The image part of a hierarchical request: the same request without ``video``."""
    return dataclasses.replace(req, options={k: v for k, v in req.options.items() if k != "video"})


def _scaled(progress: Progress | None, start: float, share: float) -> Progress | None:
    if progress is None:
        return None
    return lambda f, msg: progress(start + share * min(max(f, 0.0), 1.0), msg)


def run_hierarchical_profile(
    req: ProfileRequest,
    work_dir: str | Path,
    run_image: Callable[[ProfileRequest, Progress | None], Profile],
    progress: Progress | None = None,
) -> Profile:
    """Image path by ``run_image`` (the caller's ``run_profile`` with its stores and workers),
    memory path on clips, merged; the result's ``request`` is ``req`` (video included)."""
    cal = video_calibration(req)
    if cal is None:
        raise BadInput("video: the request does not ask for a video profile")
    video_request(image_request(req), cal)  # the model and metric are checked before any work
    image = run_image(image_request(req), _scaled(progress, 0.0, IMAGE_SHARE))
    loaded = build_model(req.model)
    clips = cal.load(req.model.size, req.seed)
    if progress is not None:
        progress(IMAGE_SHARE, f"memory path on {len(clips)} clips")
    video = run_video_profile(
        loaded, clips, Path(work_dir) / "video", req.candidates,
        progress=_scaled(progress, IMAGE_SHARE, 1 - IMAGE_SHARE),
    )  # fmt: skip
    merged = merge_video_profile(image, video)
    doc = merged.to_json()
    doc["request"] = req.to_dict()
    doc["stats"]["video"] |= {"clips": cal.to_dict(), "seconds": video.stats.get("seconds")}
    return Profile.from_json(doc)

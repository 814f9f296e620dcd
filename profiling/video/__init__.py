"""SAM2 video: clips, tracking with memory-bank policies, J&F fidelity, memory-path profiling.

The one entry point other components call is ``video_validation(loaded, plan, clips, policy)``.
"""

from __future__ import annotations

from profiling.video.clips import Clip, ClipObject, synthetic_clips
from profiling.video.fidelity import boundary_f, region_similarity
from profiling.video.folders import load_clips
from profiling.video.memory import POLICIES, make_policy, policy_from_plan, with_policy
from profiling.video.profile import merge_video_profile, run_video_profile
from profiling.video.validation import VIDEO_VALIDATION_FORMAT, video_ready, video_validation

__all__ = [
    "POLICIES",
    "VIDEO_VALIDATION_FORMAT",
    "Clip",
    "ClipObject",
    "boundary_f",
    "load_clips",
    "make_policy",
    "merge_video_profile",
    "policy_from_plan",
    "region_similarity",
    "run_video_profile",
    "synthetic_clips",
    "video_ready",
    "video_validation",
    "with_policy",
]

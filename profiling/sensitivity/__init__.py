"""The sensitivity profiler: exact KL, Fisher-KL, Mix-QSAM importance and synergy, measured
synergy and Mix-QSAM2 WAIS — cached by content key, resumable per unit, with progress."""

from __future__ import annotations

from profiling.sensitivity.context import Cancelled
from profiling.sensitivity.problem import problem_from_profile
from profiling.sensitivity.profile import PROFILE_FORMAT, Profile
from profiling.sensitivity.request import DEFAULT_CANDIDATES, METRICS, ProfileRequest
from profiling.sensitivity.runner import run_profile

__all__ = [
    "METRICS",
    "DEFAULT_CANDIDATES",
    "PROFILE_FORMAT",
    "Cancelled",
    "Profile",
    "ProfileRequest",
    "problem_from_profile",
    "run_profile",
]

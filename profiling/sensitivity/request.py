"""What to profile, and the content hash that keys its result."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from profiling.errors import BadInput
from profiling.models import ModelSpec
from profiling.quant.spec import parse_candidate

__all__ = [
    "METRICS",
    "DEFAULT_CANDIDATES",
    "CODE_VERSION",
    "FISHER_SAMPLE",
    "ProfileRequest",
    "sample_fraction",
    "check_attention_options",
]

METRICS = ("kl", "fisher_kl", "mixqsam", "synergy", "wais")
DEFAULT_CANDIDATES = ("w8a8", "w6a8", "w4a8", "w3a8", "w2a8", "w8a16", "w4a16", "w2a16")
CODE_VERSION = "profile-3"  # bump when a metric's numbers change
FISHER_SAMPLE = 0.125  # default share of tokens at which fisher_kl evaluates Δh


def sample_fraction(options: dict[str, Any]) -> float:
    """The ``fisher_sample`` option (share of tokens fisher_kl samples), checked."""
    value = options.get("fisher_sample", FISHER_SAMPLE)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise BadInput(f"fisher_sample must be a number in (0, 1], got {value!r}")
    return float(value)


def check_attention_options(options: dict[str, Any]) -> None:
    """``attention`` is a boolean; ``attention_options`` are site option ids (``a8``, ``a4log``)."""
    from profiling.attention import check_site_option

    if not isinstance(options.get("attention", False), bool):
        raise BadInput(f"attention: expected true or false, got {options['attention']!r}")
    wanted = options.get("attention_options")
    if wanted is None:
        return
    if not options.get("attention"):
        raise BadInput("attention_options: needs attention: true")
    if not isinstance(wanted, list | tuple) or not wanted:
        raise BadInput("attention_options: expected a list of option ids such as a8, a4log")
    for option in wanted:
        try:
            check_site_option("matmul_sv", option)
        except ValueError as exc:
            raise BadInput(f"attention_options: {exc}") from None


@dataclass(frozen=True)
class ProfileRequest:
    """A profile request: model, metric, candidates and calibration data."""

    model: ModelSpec
    metric: str = "fisher_kl"
    candidates: tuple[str, ...] = DEFAULT_CANDIDATES
    images: int = 8
    source: str = "shipped"
    holdout: int = 4
    n_points: int = 2
    n_boxes: int = 2
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise BadInput(f"unknown metric {self.metric!r}; known: {', '.join(METRICS)}")
        if not self.candidates:
            raise BadInput("candidates: give at least one candidate such as w8a8")
        for cid in self.candidates:
            parse_candidate(cid)
        if len(set(self.candidates)) != len(self.candidates):
            raise BadInput("candidates: duplicate ids")
        if self.images < 1:
            raise BadInput("images must be at least 1")
        sample_fraction(self.options)
        check_attention_options(self.options)
        object.__setattr__(self, "candidates", tuple(self.candidates))

    def key(self, weights_hash: str) -> str:
        """Content hash of model, weights, calibration set, candidates, metric and code."""
        doc = {
            "model": self.model.name,
            "image_size": self.model.size,
            "weights": weights_hash,
            **self._settings(),
            "code": CODE_VERSION,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]

    def _settings(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "candidates": list(self.candidates),
            "images": self.images,
            "source": self.source,
            "holdout": self.holdout,
            "n_points": self.n_points,
            "n_boxes": self.n_boxes,
            "seed": self.seed,
            "options": self.options,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model.to_dict(), **self._settings()}

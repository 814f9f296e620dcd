"""The profile result (``bitbudget.profile/v1``) and the solver problem built from it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from profiling.errors import BadInput
from profiling.quant.spec import parse_candidate

__all__ = ["PROFILE_FORMAT", "Profile", "candidate_losses"]

PROFILE_FORMAT = "bitbudget.profile/v1"


@dataclass
class Profile:
    """Per-layer scores of one metric for one model, calibration set and candidate list."""

    key: str
    request: dict[str, Any]
    metric: str
    candidates: list[str]
    random_weights: bool
    weights_hash: str
    calibration: dict[str, Any]
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)  # kl / fisher_kl
    scores: dict[str, float] = field(default_factory=dict)  # mixqsam Ω / wais
    synergy: list[dict[str, Any]] = field(default_factory=list)  # mixqsam Ŝ
    pairs: list[dict[str, Any]] = field(default_factory=list)  # measured interactions
    probes: list[int] = field(default_factory=list)
    unmeasured: list[str] = field(default_factory=list)  # memory path: never runs on images
    stats: dict[str, Any] = field(default_factory=dict)

    def losses(self) -> dict[str, dict[str, float]]:
        """{layer: {candidate: loss}}; weight and activation terms add (documented). Attention
        sites list their own options instead of the candidates."""
        return {
            name: {c: candidate_losses(entry, c) for c in entry.get("options") or self.candidates}
            for name, entry in self.layers.items()
        }

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"format": PROFILE_FORMAT}
        doc.update({k: getattr(self, k) for k in self.__dataclass_fields__})
        if self.layers:
            doc["losses"] = self.losses()
        return doc

    def save(self, root: Path) -> None:
        """Write ``root/profile.json`` atomically (what ``cached`` reads back)."""
        done = root / "profile.json"
        tmp = done.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(self.to_json()))
        os.replace(tmp, done)

    @classmethod
    def cached(cls, root: Path) -> Profile | None:
        """The finished profile in the run folder ``root`` (marked ``cache_hit``), or None."""
        done = root / "profile.json"
        if not done.exists():
            return None
        profile = cls.from_json(json.loads(done.read_text()))
        profile.stats["cache_hit"] = True
        return profile

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Profile:
        if doc.get("format") != PROFILE_FORMAT:
            raise BadInput(f"not a profile: format must be {PROFILE_FORMAT!r}")
        try:
            return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})
        except TypeError as exc:
            raise BadInput(f"malformed profile: {exc}") from None


def candidate_losses(entry: dict[str, Any], candidate: str) -> float:
    """Loss of a (w, a) candidate: the weight term at w plus the activation term at a. An
    attention site's entry holds its own options' losses (``{"options": {"a8": …}}``)."""
    if "options" in entry:
        return float(entry["options"][candidate])
    spec = parse_candidate(candidate)
    w = entry["weight"].get(str(spec.w_bits), 0.0) if spec.w_bits < 16 else 0.0
    a = entry["act"].get(str(spec.a_bits), 0.0) if spec.a_bits < 16 else 0.0
    return float(w) + float(a)

"""Sensitivity of the memory path (memory attention, memory encoder, object-pointer
projections), measured on clips: these layers never run on single images.

Following Q-MiniSAM2's hierarchy-aware calibration, the image path is profiled on images
(``profiling.sensitivity``) and the memory path here, on clips; the two are reported apart and
joined by ``merge_video_profile``. For each memory-path weight layer and each candidate width,
the layer alone is quantized (weights: per-channel min-max; inputs: per-tensor over the range
seen on the clips, as the image profiler does) and the loss is ``bernoulli_kl`` of the mask
logits against the float model, averaged over every frame after the first of every object of
every clip (FIFO memory). One ``UnitStore`` unit per layer: a killed run resumes; a finished
profile is served from ``work_dir/<key>/profile.json``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from profiling.errors import BadInput
from profiling.models import LoadedModel
from profiling.quant.spec import parse_candidate
from profiling.sensitivity.divergence import bernoulli_kl
from profiling.sensitivity.perturb import (
    InputRanges,
    input_quantized,
    quantized_weight,
    weight_swapped,
)
from profiling.sensitivity.profile import PROFILE_FORMAT, Profile
from profiling.sensitivity.request import DEFAULT_CANDIDATES
from profiling.sensitivity.store import UnitStore
from profiling.video.clips import Clip
from profiling.video.track import FrameFeatures, encode_frames, frames_tensor, track_object
from profiling.video.validation import object_bias_of, video_ready

__all__ = [
    "VIDEO_METRIC",
    "MEMORY_PREFIXES",
    "memory_path_layers",
    "run_video_profile",
    "merge_video_profile",
]

VIDEO_METRIC = "kl_video"
MEMORY_PREFIXES = ("memory_attention.", "memory_encoder.", "obj_ptr_proj", "obj_ptr_tpos_proj")
CODE_VERSION = "video-profile-1"
_WEIGHT_TYPES = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


class _ClipSet:
    """Cached frame features and float reference logits of every clip object."""

    def __init__(self, module: Any, clips: list[Clip], prompt: str) -> None:
        self.module, self.clips, self.prompt = module, clips, prompt
        self.feats: list[list[FrameFeatures]] = [
            encode_frames(module, frames_tensor(c.frames, module.image_size)) for c in clips
        ]
        self.ref = self.logits()

    def logits(self) -> list[torch.Tensor]:
        """Low-res logits of every object of every clip with the model as it is now."""
        return [
            track_object(self.module, f, obj, c.hw, self.prompt)
            for c, f in zip(self.clips, self.feats)
            for obj in c.objects
        ]

    @torch.no_grad()
    def kl_under(self, perturbation: AbstractContextManager) -> float:
        """Mean over objects of the KL over the frames after the first."""
        with perturbation:
            outs = self.logits()
        return sum(bernoulli_kl(r[1:], o[1:]) for r, o in zip(self.ref, outs)) / len(outs)


def memory_path_layers(module: nn.Module, clip_set: Any = None) -> list[str]:
    """Memory-path weight layers, in the order they first run on a clip (when one is given)."""
    names = [
        n
        for n, m in module.named_modules()
        if isinstance(m, _WEIGHT_TYPES) and n.startswith(MEMORY_PREFIXES)
    ]
    if clip_set is None:
        return names
    mods = dict(module.named_modules())
    order: list[str] = []

    def seen(name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            if name not in order:
                order.append(name)

        return hook

    hooks = [mods[n].register_forward_hook(seen(n)) for n in names]
    try:
        clip_set.logits()
    finally:
        for h in hooks:
            h.remove()
    return order


def _layer_losses(
    cs: _ClipSet, mod: Any, w_bits: list[int], a_bits: list[int], rng: tuple[float, float]
) -> dict[str, dict[str, float]]:
    weight = {str(b): cs.kl_under(weight_swapped(mod, quantized_weight(mod, b))) for b in w_bits}
    act = {str(b): cs.kl_under(input_quantized(mod, b, *rng)) for b in a_bits}
    return {"weight": weight, "act": act}


def _key(loaded: LoadedModel, clips: list[Clip], cands: list[str], prompt: str, bias: float) -> str:
    doc = {
        "model": loaded.spec.name,
        "image_size": loaded.spec.size,
        "weights": loaded.weights_hash,
        "clips": [c.sha256 for c in clips],
        "candidates": cands,
        "prompt": prompt,
        "object_bias": bias,
        "code": CODE_VERSION,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def run_video_profile(
    loaded: LoadedModel, clips: list[Clip], work_dir: str | Path,
    candidates: tuple[str, ...] | list[str] = DEFAULT_CANDIDATES, prompt: str = "box",
    progress: Callable[[float, str], None] | None = None, layers: list[str] | None = None,
) -> Profile:  # fmt: skip
    """A ``bitbudget.profile/v1`` document with ``metric: "kl_video"`` for the memory path."""
    if not clips:
        raise BadInput("video profiling needs at least one clip")
    started = time.perf_counter()
    specs = [parse_candidate(c) for c in candidates]
    w_bits = sorted({s.w_bits for s in specs if s.w_bits < 16})
    a_bits = sorted({s.a_bits for s in specs if s.a_bits < 16})
    ready = video_ready(loaded)
    module: Any = ready.module
    key = _key(loaded, clips, list(candidates), prompt, object_bias_of(module))
    root = Path(work_dir) / key
    cached = Profile.cached(root)
    if cached is not None:
        return cached
    store = UnitStore(root)
    all_layers = memory_path_layers(module)
    with InputRanges(module, all_layers) as ranges:
        cs = _ClipSet(module, clips, prompt)
    ran = memory_path_layers(module, cs)
    todo = [n for n in ran if layers is None or n in layers]
    mods = dict(module.named_modules())
    out: dict[str, Any] = {}
    for i, name in enumerate(todo):
        if progress is not None:
            progress(i / max(len(todo), 1), f"kl_video {name}")
        result = store.get(f"kl_video:{name}")
        if result is None:
            result = _layer_losses(cs, mods[name], w_bits, a_bits, ranges.ranges[name])
            store.put(f"kl_video:{name}", result)
        out[name] = result
    profile = Profile(
        key=key,
        request={"model": loaded.spec.to_dict(), "metric": VIDEO_METRIC, "prompt": prompt,
                 "candidates": list(candidates), "clips": len(clips)},
        metric=VIDEO_METRIC,
        candidates=list(candidates),
        random_weights=loaded.random_weights,
        weights_hash=loaded.weights_hash,
        calibration={"clips": [c.describe() for c in clips], "object_bias": object_bias_of(module)},
        layers=out,
        unmeasured=[n for n in all_layers if n not in ran],
        stats={"computed_units": store.computed, "resumed_units": store.resumed,
               "seconds": round(time.perf_counter() - started, 3), "cache_hit": False},
    )  # fmt: skip
    profile.save(root)
    return profile


def merge_video_profile(image: Profile, video: Profile) -> Profile:
    """The image profile with the memory-path losses added to ``layers`` and removed from
    ``unmeasured``, ready for ``problem_from_profile``; the two profiles must match."""
    if image.metric not in ("kl", "fisher_kl"):
        raise BadInput(
            f"cannot merge video losses into a {image.metric!r} profile; use kl or fisher_kl"
        )
    if video.metric != VIDEO_METRIC:
        raise BadInput(f"not a video profile: metric is {video.metric!r}, not {VIDEO_METRIC!r}")
    if image.weights_hash != video.weights_hash:
        raise BadInput("the image and video profiles were measured on different weights")
    missing = {
        c
        for c in image.candidates
        for e in video.layers.values()
        if (parse_candidate(c).w_bits < 16 and str(parse_candidate(c).w_bits) not in e["weight"])
        or (parse_candidate(c).a_bits < 16 and str(parse_candidate(c).a_bits) not in e["act"])
    }
    if missing:
        raise BadInput(f"the video profile does not measure candidates {sorted(missing)}")
    key = hashlib.sha256(f"{image.key}+{video.key}".encode()).hexdigest()[:20]
    doc = image.to_json() | {"format": PROFILE_FORMAT, "key": key}
    doc["layers"] = {**image.layers, **video.layers}
    doc["unmeasured"] = [n for n in image.unmeasured if n not in video.layers]
    doc["stats"] = {**image.stats, "video": {"profile": video.key, "metric": VIDEO_METRIC,
                                             "layers": sorted(video.layers)}}  # fmt: skip
    doc.pop("losses", None)
    return Profile.from_json(doc)

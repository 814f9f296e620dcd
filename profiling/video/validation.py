"""``video_validation``: J&F of a quantized plan (and a memory policy) against the float model.

The library entry point for ``bitbudget video``, ``bitbudget validate --video``, the API's
``"validate": {"video": true}`` and the dashboard: ``video_validation(loaded, plan, clips,
policy)`` returns a ``bitbudget.video_validation/v1`` document (see docs/video.md).

Random weights: SAM2's object-score head decides per frame whether the object is present and
replaces every mask logit by −1024 when it is not; with seeded random weights that head is a
coin flip around 0, so tracks are often empty on every frame (J&F trivially 100). For random
weights only, ``video_ready`` therefore raises the head's output bias by ``OBJECT_BIAS`` (the
object is always present); the float reference and the quantized copy share the shift, and the
document says so (``object_bias``). Checkpoint weights are never changed.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from profiling.calibration import CalibrationSet
from profiling.models import LoadedModel
from profiling.video.clips import Clip
from profiling.video.cost import FrameCost, MemoryMeter, summarize
from profiling.video.fidelity import BOUND_TH, jf_scores, jf_summary, mean_scores, video_masks
from profiling.video.memory import FifoPolicy, MemoryPolicy, make_policy
from profiling.video.track import FrameFeatures, encode_frames, frames_tensor, track_object

__all__ = [
    "VIDEO_VALIDATION_FORMAT",
    "OBJECT_BIAS",
    "ClipRun",
    "video_ready",
    "object_bias_of",
    "run_clip",
    "score_clip",
    "video_validation",
]

VIDEO_VALIDATION_FORMAT = "bitbudget.video_validation/v1"
OBJECT_BIAS = 10.0
_BIAS_ATTR = "bitbudget_object_bias"


def _score_head(module: Any) -> nn.Linear:
    head = module.sam_mask_decoder.pred_obj_score_head
    return head.layers[-1] if hasattr(head, "layers") else head


def video_ready(loaded: LoadedModel, object_bias: float | None = None) -> LoadedModel:
    """The model to track with: random weights get the object-score bias (a copy)."""
    bias = (OBJECT_BIAS if loaded.random_weights else 0.0) if object_bias is None else object_bias
    if not bias or not getattr(loaded.module, "pred_obj_scores", False):
        return loaded
    module = copy.deepcopy(loaded.module)
    with torch.no_grad():
        _score_head(module).bias.add_(bias)
    setattr(module, _BIAS_ATTR, float(bias))
    return replace(loaded, module=module)


def object_bias_of(module: Any) -> float:
    """The bias ``video_ready`` added (0 for an untouched model)."""
    return float(getattr(module, _BIAS_ATTR, 0.0))


@dataclass
class ClipRun:
    """Tracks of every object of one clip by one model and policy, with the memory costs."""

    logits: dict[int, torch.Tensor]
    costs: list[FrameCost] = field(default_factory=list)
    encode_ms: float = 0.0

    def masks(self, hw: tuple[int, int]) -> dict[int, np.ndarray]:
        return {oid: video_masks(lg, hw) for oid, lg in self.logits.items()}


def run_clip(
    module: Any, clip: Clip, policy: MemoryPolicy | None = None, prompt: str = "box",
    feats: list[FrameFeatures] | None = None,
) -> ClipRun:  # fmt: skip
    """Encode the frames (unless ``feats`` are given) and track every object."""
    start = time.perf_counter()
    if feats is None:
        feats = encode_frames(module, frames_tensor(clip.frames, module.image_size))
    encode_ms = (time.perf_counter() - start) * 1e3 / len(clip)
    run = ClipRun({}, encode_ms=encode_ms)
    with MemoryMeter(module) as meter:
        for obj in clip.objects:
            run.logits[obj.obj_id] = track_object(
                module, feats, obj, clip.hw, prompt, policy or FifoPolicy(), meter
            )
    run.costs = meter.frames
    return run


def score_clip(
    clip: Clip, run: ClipRun, ref: ClipRun | None, bound_th: float = BOUND_TH
) -> dict[str, Any]:
    """J&F of ``run`` against ``ref`` (frames after the first) and against ground truth."""
    masks = run.masks(clip.hw)
    out: dict[str, Any] = {"vs_float": None, "vs_gt": None}
    if ref is not None:
        ref_masks, later = ref.masks(clip.hw), range(1, len(clip))
        out["vs_float"] = jf_summary(
            [jf_scores(ref_masks[o], masks[o], later, bound_th) for o in masks]
        )
    per_obj = []
    for obj in clip.objects:
        frames = [t for t in sorted(obj.masks) if t > 0]
        per_obj.append(jf_scores(obj.masks, masks[obj.obj_id], frames, bound_th))
    out["vs_gt"] = jf_summary(per_obj)
    return out


def _quantized(
    loaded: LoadedModel, plan: Any, calib: CalibrationSet | None
) -> tuple[nn.Module, int]:
    from profiling.quant.apply import apply_plan, needs_calibration
    from profiling.quant.plan import as_plan

    if plan is None:
        return loaded.module, 0
    if isinstance(plan, nn.Module):
        return plan, -1
    qplan = as_plan(plan)
    if calib is None and needs_calibration(qplan) is not None:
        from profiling.calibration import load_source, make_sets

        calib, _ = make_sets(load_source("shipped"), n_calib=4, n_points=1, n_boxes=1)
    return apply_plan(loaded, qplan, calib), len(qplan.specs)


def video_validation(
    loaded: LoadedModel,
    plan: Any,
    clips: list[Clip],
    policy: str | Mapping[str, Any] | MemoryPolicy | None = None,
    *,
    calib: CalibrationSet | None = None,
    prompt: str = "box",
    bound_th: float = BOUND_TH,
    object_bias: float | None = None,
) -> dict[str, Any]:
    """Track ``clips`` with the float model (FIFO) and with ``plan`` under ``policy``.

    ``plan``: a ``QuantPlan``, plan JSON (its ``memory_policy`` is used when ``policy`` is None),
    an already quantized module from ``apply_plan(video_ready(loaded), ...)``, or None (float).
    """
    started = time.perf_counter()
    if policy is None and isinstance(plan, Mapping):
        policy = plan.get("memory_policy")
    pol = make_policy(policy)
    ready = video_ready(loaded, object_bias)
    qmodule, n_layers = _quantized(ready, plan, calib)
    qmodule.eval()
    rows, ref_costs, run_costs, enc_ms = [], [], [], []
    for clip in clips:
        ref = run_clip(ready.module, clip, FifoPolicy(), prompt)
        same = qmodule is ready.module and pol.stock
        run = ref if same else run_clip(qmodule, clip, pol, prompt)
        rows.append({**clip.describe(), **score_clip(clip, run, ref, bound_th)})
        rows[-1]["float_vs_gt"] = score_clip(clip, ref, None, bound_th)["vs_gt"]
        ref_costs += ref.costs
        run_costs += run.costs
        enc_ms.append(run.encode_ms)
    return {
        "format": VIDEO_VALIDATION_FORMAT,
        "model": loaded.spec.to_dict(),
        "random_weights": loaded.random_weights,
        "resized_from": loaded.resized_from,
        "object_bias": object_bias_of(ready.module),
        "policy": pol.describe(),
        "plan_layers": n_layers,
        "prompt": prompt,
        "bound_th": bound_th,
        "clips": rows,
        "summary": {
            "vs_float": mean_scores([r["vs_float"] for r in rows]),
            "vs_gt": mean_scores([r["vs_gt"] for r in rows]),
            "float_vs_gt": mean_scores([r["float_vs_gt"] for r in rows]),
        },
        "memory": {
            "policy": summarize(run_costs) | {"image_encoder_ms": round(float(np.mean(enc_ms)), 3)},
            "reference": summarize(ref_costs),
        },
        "seconds": round(time.perf_counter() - started, 3),
    }

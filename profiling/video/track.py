"""Track clip objects with SAM2's own ``track_step``, exactly as ``SAM2VideoPredictor`` does.

Per object (the predictor's single-object slices): frame 0 runs ``track_step`` with the prompt
and no memory encoder, then the memory encoder runs on its low-resolution mask upsampled to
the input size (the predictor's ``propagate_in_video_preflight``); frames 1 … T−1 run
``track_step`` with the memory encoder. Memory features are stored in bfloat16 as the predictor
stores them. Frames are resized and normalised exactly as sam2's JPEG loader does. A policy
that is not SAM2's own FIFO replaces the spatial part of the memory that SAM2 hands to
``memory_attention`` (a forward pre-hook) with the conditioning frame plus its selected slots;
the object-pointer tokens that follow are left as SAM2 built them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from profiling.errors import BadInput
from profiling.video.clips import ClipObject
from profiling.video.cost import FrameCost, MemoryMeter
from profiling.video.memory import FifoPolicy, MemoryPolicy, Slot

__all__ = [
    "PROMPTS",
    "FrameFeatures",
    "frames_tensor",
    "encode_frames",
    "prompt_inputs",
    "track_object",
]

PROMPTS = ("box", "point", "mask")
IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


@dataclass
class FrameFeatures:
    """What ``track_step`` needs from the image encoder for one frame."""

    feats: list[torch.Tensor]
    pos: list[torch.Tensor | None]  # only the last level is ever read; the others are dropped
    sizes: list[tuple[int, int]]


def frames_tensor(frames: np.ndarray, image_size: int) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, S, S), resized and normalised as sam2's JPEG loader does."""
    from PIL import Image

    out = torch.zeros(len(frames), 3, image_size, image_size, dtype=torch.float32)
    for i, frame in enumerate(frames):
        arr = np.array(Image.fromarray(frame).resize((image_size, image_size))) / 255.0
        out[i] = torch.from_numpy(arr).permute(2, 0, 1)
    out -= torch.tensor(IMG_MEAN, dtype=torch.float32)[:, None, None]
    out /= torch.tensor(IMG_STD, dtype=torch.float32)[:, None, None]
    return out


@torch.no_grad()
def encode_frames(model: Any, images: torch.Tensor) -> list[FrameFeatures]:
    """Run the image encoder on every frame (once per clip and model)."""
    device = model.device
    out = []
    for img in images:
        backbone_out = model.forward_image(img.to(device).float().unsqueeze(0))
        _, feats, pos, sizes = model._prepare_backbone_features(backbone_out)
        out.append(FrameFeatures(feats, [None] * (len(pos) - 1) + [pos[-1]], sizes))
    return out


def prompt_inputs(
    obj: ClipObject, kind: str, hw: tuple[int, int], image_size: int
) -> tuple[dict | None, torch.Tensor | None]:
    """(point_inputs, mask_inputs) for frame 0, as ``add_new_points_or_box`` / ``add_new_mask``."""
    if kind == "mask":
        if obj.first_mask is None:
            raise BadInput(f"object {obj.obj_id}: a mask prompt needs a frame-0 mask")
        m = torch.from_numpy(obj.first_mask.astype(bool))[None, None].float()
        if m.shape[-2:] != (image_size, image_size):
            size = (image_size, image_size)
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=True)
            m = (m >= 0.5).float()
        return None, m
    if kind == "point":
        points, labels = torch.tensor([[obj.point]]), torch.tensor([[1]], dtype=torch.int32)
    elif kind == "box":
        points, labels = torch.tensor(obj.box).reshape(1, 2, 2), torch.tensor([[2, 3]])
    else:
        raise BadInput(f"unknown prompt {kind!r}; known: {', '.join(PROMPTS)}")
    points = points.float() / torch.tensor([hw[1], hw[0]])
    points = points * image_size
    return {"point_coords": points, "point_labels": labels.int()}, None


def _compact(out: dict, mem: torch.Tensor, pos: list[torch.Tensor]) -> dict:
    return {
        "maskmem_features": mem.to(torch.bfloat16),
        "maskmem_pos_enc": pos,
        "pred_masks": out["pred_masks"],
        "obj_ptr": out["obj_ptr"],
        "object_score_logits": out["object_score_logits"],
    }


def spatial_memory(
    model: Any, cond: dict, chosen: list[tuple[int, Slot]], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditioning frames (t_pos 0) then the chosen slots, as SAM2 lays memory out."""
    items = [(0, o["maskmem_features"], o["maskmem_pos_enc"]) for o in cond.values()]
    items += [(t_pos, s.features, s.pos_enc) for t_pos, s in chosen]
    mem, pos = [], []
    for t_pos, feats, enc in items:
        mem.append(feats.to(device).flatten(2).permute(2, 0, 1))
        p = enc[-1].to(device).flatten(2).permute(2, 0, 1)
        pos.append(p + model.maskmem_tpos_enc[model.num_maskmem - t_pos - 1])
    return torch.cat(mem, dim=0), torch.cat(pos, dim=0)


@contextmanager
def _policy_hook(model: Any, policy: MemoryPolicy, od: dict, frame: list[int]) -> Iterator[None]:
    """Swap the spatial memory SAM2 built for the policy's (object pointers kept)."""

    def hook(mod: Any, args: tuple, kwargs: dict) -> tuple:
        memory, mpos = kwargs["memory"], kwargs["memory_pos"]
        n_ptr = int(kwargs.get("num_obj_ptr_tokens", 0))
        mem, pos = spatial_memory(
            model, od["cond_frame_outputs"], policy.select(frame[0]), memory.device
        )
        if n_ptr:
            mem = torch.cat([mem, memory[memory.shape[0] - n_ptr :]], dim=0)
            pos = torch.cat([pos, mpos[mpos.shape[0] - n_ptr :]], dim=0)
        return args, {**kwargs, "memory": mem, "memory_pos": pos}

    if policy.stock:
        yield
        return
    handle = model.memory_attention.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def _bank_cost(t: int, cond: dict, chosen: list[tuple[int, Slot]]) -> FrameCost:
    feats = [o["maskmem_features"] for o in cond.values()] + [s.features for _, s in chosen]
    return FrameCost(
        frame=t,
        memory_tokens=sum(f.shape[-1] * f.shape[-2] for f in feats),
        bank_bytes=sum(f.numel() * f.element_size() for f in feats),
        slots=len(chosen),
    )


def _step(model: Any, f: FrameFeatures, t: int, od: dict, n: int, **kw: Any) -> dict:
    return model.track_step(
        frame_idx=t, current_vision_feats=f.feats, current_vision_pos_embeds=f.pos,
        feat_sizes=f.sizes, output_dict=od, num_frames=n, track_in_reverse=False,
        prev_sam_mask_logits=None, **kw,
    )  # fmt: skip


@torch.no_grad()
def track_object(
    model: Any, feats: list[FrameFeatures], obj: ClipObject, hw: tuple[int, int],
    prompt: str = "box", policy: MemoryPolicy | None = None, meter: MemoryMeter | None = None,
) -> torch.Tensor:  # fmt: skip
    """Low-resolution mask logits (T, 1, S/4, S/4) of ``obj`` over the clip."""
    policy = policy or FifoPolicy()
    policy.reset(model.num_maskmem)
    size, n = model.image_size, len(feats)
    point_in, mask_in = prompt_inputs(obj, prompt, hw, size)
    device = model.device
    point_in = {k: v.to(device) for k, v in point_in.items()} if point_in else None
    od: dict[str, dict] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    out = _step(
        model, feats[0], 0, od, n, is_init_cond_frame=True, point_inputs=point_in,
        mask_inputs=None if mask_in is None else mask_in.to(device), run_mem_encoder=False,
    )  # fmt: skip
    high = F.interpolate(out["pred_masks"], size=(size, size), mode="bilinear", align_corners=False)
    mem, pos = model._encode_new_memory(
        current_vision_feats=feats[0].feats, feat_sizes=feats[0].sizes,
        pred_masks_high_res=high, object_score_logits=out["object_score_logits"],
        is_mask_from_pts=True,
    )  # fmt: skip
    od["cond_frame_outputs"][0] = _compact(out, mem, pos)
    logits, frame = [out["pred_masks"]], [0]
    with _policy_hook(model, policy, od, frame):
        for t in range(1, n):
            frame[0] = t
            cost = _bank_cost(t, od["cond_frame_outputs"], policy.select(t))
            if meter is not None:
                meter.frames.append(cost)
            start = time.perf_counter()
            out = _step(
                model, feats[t], t, od, n, is_init_cond_frame=False, point_inputs=None,
                mask_inputs=None, run_mem_encoder=True,
            )  # fmt: skip
            cost.frame_ms = (time.perf_counter() - start) * 1e3
            compact = _compact(out, out["maskmem_features"], out["maskmem_pos_enc"])
            od["non_cond_frame_outputs"][t] = compact
            policy.add(t, compact)
            logits.append(out["pred_masks"])
    return torch.cat(logits).float().cpu()

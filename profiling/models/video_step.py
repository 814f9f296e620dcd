"""Drive SAM2's own ``track_step`` over frames: the memory path (memory encoder, memory
attention, object pointers) only runs here, never on single images."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["track_frames"]


def track_frames(
    model: Any,
    pixels: torch.Tensor,
    coords: torch.Tensor,
    labels: torch.Tensor,
    n_frames: int = 2,
    before_last: Callable[[], None] | None = None,
    backbone_out: dict | None = None,
) -> list[dict]:
    """Track one object prompted on frame 0 over ``n_frames`` copies of ``pixels``;
    ``backbone_out``, ``model.forward_image(pixels)`` if the caller has it already."""
    if backbone_out is None:
        backbone_out = model.forward_image(pixels)
    _, feats, pos, sizes = model._prepare_backbone_features(backbone_out)
    output_dict: dict[str, dict] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    outs = []
    for idx in range(n_frames):
        if idx == n_frames - 1 and before_last is not None:
            before_last()
        first = idx == 0
        out = model.track_step(
            frame_idx=idx,
            is_init_cond_frame=first,
            current_vision_feats=feats,
            current_vision_pos_embeds=pos,
            feat_sizes=sizes,
            point_inputs={"point_coords": coords, "point_labels": labels} if first else None,
            mask_inputs=None,
            output_dict=output_dict,
            num_frames=n_frames,
            track_in_reverse=False,
            run_mem_encoder=True,
            prev_sam_mask_logits=None,
        )
        key = "cond_frame_outputs" if first else "non_cond_frame_outputs"
        output_dict[key][idx] = out
        outs.append(out)
    return outs

"""Fit a checkpoint saved at one image size to a model built at another.

Only the tensors whose shape follows from the image size are resized, each as the model's own
code resizes it: SAM (v1)'s absolute ``image_encoder.pos_embed`` (1, H, W, C) bicubically (the
interpolation segment-anything's fine-tuning forks and SAM2's Hiera use), and the relative
position tables ``rel_pos_h`` / ``rel_pos_w`` (2S-1, C) linearly, exactly as segment-anything's
``get_rel_pos`` does at run time. SAM2's Hiera needs nothing: its ``pos_embed`` has a fixed
size and is interpolated to the feature map on every forward (``Hiera._get_pos_embed``).
Every other tensor must fit as it is; ``load_into`` names those that do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["Resized", "fit_sizes"]


@dataclass
class Resized:
    """What ``fit_sizes`` interpolated: the size the checkpoint was saved at, and each tensor."""

    image_size: int | None = None  # the checkpoint's image size (from pos_embed), when known
    tensors: dict[str, list[list[int]]] = field(default_factory=dict)  # name -> [from, to]

    def to_json(self, image_size: int) -> dict[str, Any] | None:
        """``None`` when nothing was resized; else the note every output carries."""
        if not self.tensors:
            return None
        return {"image_size": self.image_size, "to_image_size": image_size,
                "tensors": self.tensors}  # fmt: skip


def _abs_pos(saved: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(1, H, W, C) -> (1, H', W', C), bicubic over the grid."""
    grid = saved.permute(0, 3, 1, 2).float()
    out = F.interpolate(grid, size=shape[1:3], mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).to(saved.dtype).contiguous()


def _rel_pos(saved: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(L, C) -> (L', C), linear along L (segment-anything's ``get_rel_pos``)."""
    line = saved.float().reshape(1, saved.shape[0], -1).permute(0, 2, 1)
    out = F.interpolate(line, size=shape[0], mode="linear")
    return out.reshape(-1, shape[0]).permute(1, 0).to(saved.dtype).contiguous()


def _rule(name: str, saved: torch.Tensor, shape: tuple[int, ...]) -> Any:
    """The resize for ``name`` when its shape differs only along the image-size axes."""
    if name == "image_encoder.pos_embed" and saved.ndim == len(shape) == 4:
        same = saved.shape[0] == shape[0] and saved.shape[3] == shape[3]
        return _abs_pos if same else None
    if name.endswith((".rel_pos_h", ".rel_pos_w")) and saved.ndim == len(shape) == 2:
        return _rel_pos if saved.shape[1] == shape[1] else None
    return None


def fit_sizes(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], image_size: int
) -> tuple[dict[str, torch.Tensor], Resized]:
    """``state`` with its position tensors resized to ``own``'s shapes; what changed."""
    out = dict(state)
    note = Resized()
    for name, target in own.items():
        saved = state.get(name)
        if saved is None or tuple(saved.shape) == tuple(target.shape):
            continue
        rule = _rule(name, saved, tuple(target.shape))
        if rule is None:
            continue
        out[name] = rule(saved, tuple(target.shape))
        note.tensors[name] = [list(saved.shape), list(target.shape)]
        if name == "image_encoder.pos_embed":
            note.image_size = round(image_size * saved.shape[1] / target.shape[1])
    return out, note

"""The task adapter: one interface that runs SAM2 or SAM on an image with point / box prompts.

``embed`` runs the image encoder once per image; ``decode`` runs the prompt encoder and the mask
decoder for a batch of prompts on those features. Both return plain tensors so that callers can
differentiate through them (the Fisher profiler does). Mask logits are the decoder's low-resolution
output (image_size / 4 on a side), the resolution every fidelity metric is computed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from profiling.errors import BadInput
from profiling.models import LoadedModel

__all__ = ["Prompts", "MaskOutput", "TaskAdapter"]

_MEAN = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
_STD = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)


@dataclass
class Prompts:
    """A batch of N prompts in original-image pixel coordinates (x, y)."""

    points: torch.Tensor | None = None  # (N, K, 2) float
    labels: torch.Tensor | None = None  # (N, K) int: 1 foreground, 0 background
    boxes: torch.Tensor | None = None  # (N, 4) float, x0 y0 x1 y1

    def __post_init__(self) -> None:
        if self.points is None and self.boxes is None:
            raise BadInput("a prompt needs points or a box")
        if self.points is not None:
            if self.labels is None or self.points.ndim != 3 or self.points.shape[-1] != 2:
                raise BadInput("points must be (N, K, 2) with labels (N, K)")
            if tuple(self.labels.shape) != tuple(self.points.shape[:2]):
                raise BadInput("labels must have shape (N, K) matching points")
        if self.boxes is not None and (self.boxes.ndim != 2 or self.boxes.shape[-1] != 4):
            raise BadInput("boxes must be (N, 4) as x0, y0, x1, y1")
        if (
            self.points is not None
            and self.boxes is not None
            and (self.points.shape[0] != self.boxes.shape[0])
        ):
            raise BadInput("points and boxes must describe the same number of prompts")

    def __len__(self) -> int:
        return int(self.points.shape[0] if self.points is not None else self.boxes.shape[0])  # type: ignore[union-attr]


@dataclass
class MaskOutput:
    """Mask logits (N, M, h, w) and IoU-head scores (N, M) for N prompts."""

    logits: torch.Tensor
    iou: torch.Tensor


class TaskAdapter:
    """Images + prompts -> mask logits for a model of either family."""

    def __init__(self, loaded: LoadedModel, multimask: bool = False) -> None:
        self.loaded = loaded
        self.model: Any = loaded.module
        self.family = loaded.family
        self.size = loaded.spec.size
        self.multimask = multimask

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """HxWx3 uint8 RGB -> (1, 3, S, S) normalised pixels."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise BadInput(f"expected an HxWx3 RGB image, got shape {tuple(image.shape)}")
        pixels = image if image.flags.writeable else image.copy()  # torch wants writable memory
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).float()
        h, w = image.shape[:2]
        if self.family == "sam2":
            size = (self.size, self.size)
        else:  # SAM: longest side to S, then pad bottom-right
            scale = self.size / max(h, w)
            size = (int(h * scale + 0.5), int(w * scale + 0.5))
        x = F.interpolate(x[None], size=size, mode="bilinear", align_corners=False, antialias=True)
        x = (x[0] - _MEAN) / _STD
        if self.family == "sam":
            x = F.pad(x, (0, self.size - size[1], 0, self.size - size[0]))
        return x[None].to(self.device)

    def transform_coords(self, xy: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        """Original-image pixels -> model input pixels."""
        h, w = hw
        xy = xy.float().clone()
        if self.family == "sam2":
            xy[..., 0] *= self.size / w
            xy[..., 1] *= self.size / h
        else:
            xy *= self.size / max(h, w)
        return xy.to(self.device)

    def embed(self, pixels: torch.Tensor) -> dict[str, torch.Tensor | list[torch.Tensor]]:
        """Run the image encoder: the features ``decode`` needs."""
        if self.family == "sam":
            return {"image_embed": self.model.image_encoder(pixels)}
        m = self.model
        backbone_out = m.forward_image(pixels)
        _, feats, _, sizes = m._prepare_backbone_features(backbone_out)
        if m.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + m.no_mem_embed
        maps = [f.permute(1, 2, 0).reshape(f.shape[1], -1, *s) for f, s in zip(feats, sizes)]
        return {"image_embed": maps[-1], "high_res_feats": maps[:-1]}

    def decode(self, feats: dict, prompts: Prompts, hw: tuple[int, int]) -> MaskOutput:
        """Prompt encoder + mask decoder for every prompt in ``prompts`` (one batch)."""
        coords, labels = self._prompt_points(prompts, hw)
        if self.family == "sam":
            return self._decode_sam(feats, prompts, hw, coords, labels)
        m = self.model
        sparse, dense = m.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        logits, iou, _, _ = m.sam_mask_decoder(
            image_embeddings=feats["image_embed"],
            image_pe=m.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=self.multimask,
            repeat_image=len(prompts) > 1,
            high_res_features=feats["high_res_feats"],
        )
        return MaskOutput(logits=logits, iou=iou)

    def _prompt_points(self, prompts: Prompts, hw: tuple[int, int]) -> tuple:
        parts_xy, parts_lab = [], []
        if prompts.boxes is not None and self.family == "sam2":
            box = self.transform_coords(prompts.boxes.reshape(-1, 2, 2), hw)
            parts_xy.append(box)
            parts_lab.append(torch.tensor([[2, 3]], device=box.device).repeat(box.shape[0], 1))
        if prompts.points is not None:
            parts_xy.append(self.transform_coords(prompts.points, hw))
            parts_lab.append(prompts.labels.to(self.device).int())  # type: ignore[union-attr]
        if not parts_xy:
            return None, None
        return torch.cat(parts_xy, 1), torch.cat(parts_lab, 1).int()

    def _decode_sam(
        self,
        feats: dict,
        prompts: Prompts,
        hw: tuple[int, int],
        coords: torch.Tensor | None,
        labels: torch.Tensor | None,
    ) -> MaskOutput:
        m = self.model
        boxes = None
        if prompts.boxes is not None:
            boxes = self.transform_coords(prompts.boxes.reshape(-1, 2, 2), hw).reshape(-1, 4)
        points = (coords, labels) if coords is not None else None
        sparse, dense = m.prompt_encoder(points=points, boxes=boxes, masks=None)
        logits, iou = m.mask_decoder(
            image_embeddings=feats["image_embed"],
            image_pe=m.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=self.multimask,
        )
        return MaskOutput(logits=logits, iou=iou)

    def __call__(self, image: np.ndarray, prompts: Prompts) -> MaskOutput:
        """Embed ``image`` and decode ``prompts`` on it."""
        feats = self.embed(self.preprocess(image))
        return self.decode(feats, prompts, image.shape[:2])

"""Fidelity of a quantized model against its float original, and against ground truth.

Pure metrics (``Tensor -> float``):

* ``mask_iou``: masks are ``logits > 0``; IoU per mask (over its h×w pixels), then the mean over
  every mask of the batch. Two empty masks agree perfectly: their IoU is defined as 1.
* ``logit_kl``: ``bernoulli_kl`` of the profiler (each pixel a Bernoulli(σ(logit)), mean over
  every pixel of every mask).
* ``iou_head_agreement``: mean |Δ| of the IoU-prediction head's scores, and — with several masks
  per prompt (multimask) — the fraction of prompts whose best-scored mask is the same.
* ``gt_ious``: low-resolution logits are first upsampled to the original image size
  (``upsample_logits``, SAM2: bilinear from the square input; SAM: bilinear to the padded input,
  crop the padding, bilinear to the image), then thresholded at 0 and compared with the
  ground-truth instance masks; the mean over instances is the mIoU.

``measure_fidelity`` runs both models on a set of samples and reduces all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from profiling.models.adapter import MaskOutput, TaskAdapter
from profiling.sensitivity.divergence import bernoulli_kl

__all__ = [
    "mask_ious",
    "mask_iou",
    "logit_kl",
    "iou_head_agreement",
    "select_best",
    "upsample_logits",
    "gt_ious",
    "Fidelity",
    "reference_outputs",
    "measure_fidelity",
]


def mask_ious(ref_logits: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` against ``ref_logits > 0`` per mask (..., h, w) -> (...)."""
    a, b = ref_logits > 0, logits > 0
    inter = (a & b).flatten(-2).sum(-1).double()
    union = (a | b).flatten(-2).sum(-1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def mask_iou(ref_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean per-mask IoU (two empty masks count as 1)."""
    return float(mask_ious(ref_logits, logits).mean())


def logit_kl(ref_logits: torch.Tensor, logits: torch.Tensor) -> float:
    """Mean per-pixel KL(Bernoulli(σ(ref)) ‖ Bernoulli(σ(logits)))."""
    return bernoulli_kl(ref_logits, logits)


def iou_head_agreement(ref_iou: torch.Tensor, iou: torch.Tensor) -> dict[str, float | None]:
    """``mae`` of the (N, M) IoU-head scores; ``argmax`` agreement when M > 1, else None."""
    mae = float((ref_iou.double() - iou.double()).abs().mean())
    if ref_iou.shape[-1] < 2:
        return {"mae": mae, "argmax": None}
    same = (ref_iou.argmax(-1) == iou.argmax(-1)).double().mean()
    return {"mae": mae, "argmax": float(same)}


def select_best(out: MaskOutput) -> torch.Tensor:
    """(N, M, h, w) logits -> (N, h, w): each prompt's mask with the highest IoU-head score."""
    idx = out.iou.argmax(-1)
    return out.logits[torch.arange(out.logits.shape[0]), idx]


def upsample_logits(
    logits: torch.Tensor, hw: tuple[int, int], image_size: int, family: str
) -> torch.Tensor:
    """Low-res logits (..., h, w) -> (..., H, W) at the original image size."""
    lead = logits.shape[:-2]
    x = logits.reshape(-1, 1, *logits.shape[-2:]).float()
    if family == "sam":  # the input was resized (longest side) and padded bottom-right
        scale = image_size / max(hw)
        valid = (int(hw[0] * scale + 0.5), int(hw[1] * scale + 0.5))
        x = F.interpolate(x, (image_size, image_size), mode="bilinear", align_corners=False)
        x = x[..., : valid[0], : valid[1]]
    x = F.interpolate(x, hw, mode="bilinear", align_corners=False)
    return x.reshape(*lead, *hw)


def gt_ious(logits: torch.Tensor, gt_masks: torch.Tensor) -> torch.Tensor:
    """Per-instance IoU of image-size ``logits > 0`` (N, H, W) against bool masks (N, H, W)."""
    gt = gt_masks.bool().to(logits.device)
    return mask_ious(torch.where(gt, 1.0, -1.0), logits)


@dataclass
class Fidelity:
    """Running sums of every metric over a set; ``to_dict`` gives the means."""

    ious: list[float] = field(default_factory=list)
    kl_sum: float = 0.0
    kl_pixels: int = 0
    head_abs: list[float] = field(default_factory=list)
    argmax: list[float] = field(default_factory=list)
    gt_float: list[float] = field(default_factory=list)
    gt_quant: list[float] = field(default_factory=list)
    images: int = 0

    def add(self, ref: MaskOutput, out: MaskOutput) -> None:
        """Fold in one prompt batch of both models."""
        self.ious += mask_ious(ref.logits, out.logits).flatten().tolist()
        self.kl_sum += logit_kl(ref.logits, out.logits) * ref.logits.numel()
        self.kl_pixels += ref.logits.numel()
        self.head_abs += (ref.iou.double() - out.iou.double()).abs().flatten().tolist()
        if ref.iou.shape[-1] > 1:
            self.argmax += (ref.iou.argmax(-1) == out.iou.argmax(-1)).double().tolist()

    def to_dict(self) -> dict[str, Any]:
        """Means over masks / pixels / prompts / instances (None where nothing was measured)."""

        def mean(xs: list[float]) -> float | None:
            return float(np.mean(xs)) if xs else None

        return {
            "iou": mean(self.ious),
            "iou_min": float(min(self.ious)) if self.ious else None,
            "kl": self.kl_sum / self.kl_pixels if self.kl_pixels else None,
            "iou_head_mae": mean(self.head_abs),
            "iou_head_argmax": mean(self.argmax),
            "gt_miou_float": mean(self.gt_float),
            "gt_miou_quant": mean(self.gt_quant),
            "images": self.images,
            "masks": len(self.ious),
            "gt_instances": len(self.gt_float),
        }


def _ground_truth(sample: Any, batch: Any, n: int) -> torch.Tensor | None:
    """The GT masks of a box batch built from the image's annotations (same order), or None."""
    rec = sample.image
    if not rec.masks or batch.boxes is None or batch.points is not None:
        return None
    expected = torch.tensor(rec.boxes[:n], dtype=batch.boxes.dtype)
    if expected.shape != batch.boxes.shape or not torch.allclose(batch.boxes, expected):
        return None
    return torch.from_numpy(np.stack(rec.masks[:n]))


def _add_gt(fid: Fidelity, ref: TaskAdapter, outs: tuple, gt: torch.Tensor, hw: tuple) -> None:
    for out, sink in zip(outs, (fid.gt_float, fid.gt_quant)):
        full = upsample_logits(select_best(out), hw, ref.size, ref.family)
        sink += gt_ious(full, gt).tolist()


@torch.inference_mode()
def reference_outputs(ref: TaskAdapter, samples: Sequence[Any]) -> list[list[MaskOutput]]:
    """The float model's outputs on every prompt batch (to reuse across many quantized runs)."""
    out = []
    for sample in samples:
        px = sample.image.pixels
        feats = ref.embed(ref.preprocess(px))
        out.append([ref.decode(feats, batch, px.shape[:2]) for batch in sample.prompts])
    return out


@torch.inference_mode()
def measure_fidelity(
    ref: TaskAdapter,
    quant: TaskAdapter,
    samples: Sequence[Any],
    reference: list[list[MaskOutput]] | None = None,
) -> Fidelity:
    """Run both adapters on every prompt batch of ``samples`` and accumulate the metrics."""
    refs = reference if reference is not None else reference_outputs(ref, samples)
    fid = Fidelity()
    for sample, ref_outs in zip(samples, refs, strict=True):
        px = sample.image.pixels
        hw = (int(px.shape[0]), int(px.shape[1]))
        feats_q = quant.embed(quant.preprocess(px))
        for batch, out_ref in zip(sample.prompts, ref_outs, strict=True):
            out_q = quant.decode(feats_q, batch, hw)
            fid.add(out_ref, out_q)
            gt = _ground_truth(sample, batch, len(batch))
            if gt is not None:
                _add_gt(fid, ref, (out_ref, out_q), gt, hw)
        fid.images += 1
    return fid

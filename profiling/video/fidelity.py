"""Video fidelity, DAVIS-style: region similarity J, boundary F-measure F, and J&F.

Pure functions on boolean masks of one frame (H, W):

* ``region_similarity`` (J): |A ∩ B| / |A ∪ B|; two empty masks agree perfectly (J = 1), as in
  the DAVIS evaluation code.
* ``boundary_f`` (F): boundary maps by ``seg2bmap`` (a pixel of the mask whose right, lower or
  lower-right neighbour differs), each dilated by a disk of radius
  ``ceil(bound_th · image diagonal)`` pixels (``bound_th`` ≥ 1 is a radius in pixels);
  precision = predicted boundary pixels within the tolerance of the reference boundary, recall
  the converse, F = 2PR / (P + R). Conventions (DAVIS): both boundaries empty -> F = 1; only one
  empty -> F = 0. ``BOUND_TH`` = 0.008 is DAVIS's ratio; AHCQ-SAM's SA-V evaluation uses 0.02.
* A clip's J (F) is the mean over its objects of the mean over the scored frames: every frame
  after the first against the float tracks; the annotated frames after the first against
  ground truth. Predicted logits are upsampled to the clip's resolution as the predictor does
  (bilinear) and thresholded at 0. Summaries report J, F and J&F = (J + F) / 2 in percent.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "BOUND_TH",
    "region_similarity",
    "seg2bmap",
    "boundary_f",
    "video_masks",
    "jf_scores",
    "jf_summary",
    "mean_scores",
]

BOUND_TH = 0.008


def _bool(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    arr = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return arr.astype(bool)


def region_similarity(ref: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor) -> float:
    """J: intersection over union (1 when both masks are empty)."""
    a, b = _bool(ref), _bool(pred)
    union = int(np.logical_or(a, b).sum())
    return 1.0 if union == 0 else int(np.logical_and(a, b).sum()) / union


def seg2bmap(mask: np.ndarray) -> np.ndarray:
    """DAVIS's boundary map of a binary mask at its own resolution."""
    seg = _bool(mask)
    e, s, se = np.zeros_like(seg), np.zeros_like(seg), np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def _dilate(bmap: np.ndarray, radius: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation
    from skimage.morphology import disk

    return binary_dilation(bmap, structure=disk(radius)) if radius > 0 else bmap


def boundary_f(
    ref: np.ndarray | torch.Tensor, pred: np.ndarray | torch.Tensor, bound_th: float = BOUND_TH
) -> float:
    """F: boundary F-measure with a tolerance of ``bound_th`` of the diagonal (DAVIS)."""
    gt_b, fg_b = seg2bmap(_bool(ref)), seg2bmap(_bool(pred))
    radius = int(bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*gt_b.shape)))
    n_gt, n_fg = int(gt_b.sum()), int(fg_b.sum())
    if n_gt == 0 and n_fg == 0:
        return 1.0
    if n_gt == 0 or n_fg == 0:
        return 0.0
    precision = int((fg_b & _dilate(gt_b, radius)).sum()) / n_fg
    recall = int((gt_b & _dilate(fg_b, radius)).sum()) / n_gt
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def video_masks(logits: torch.Tensor, hw: tuple[int, int]) -> np.ndarray:
    """Low-resolution logits (T, 1, h, w) -> boolean masks (T, H, W) at the clip's size."""
    up = F.interpolate(logits.float(), size=hw, mode="bilinear", align_corners=False)
    return (up[:, 0] > 0).cpu().numpy()


def jf_scores(
    ref: Mapping[int, np.ndarray] | np.ndarray, pred: Mapping[int, np.ndarray] | np.ndarray,
    frames: Iterable[int],
    bound_th: float = BOUND_TH,
) -> dict[str, float]:  # fmt: skip
    """Mean J and F (fractions) of ``pred`` against ``ref`` over ``frames``."""
    js, fs = [], []
    for t in frames:
        js.append(region_similarity(ref[t], pred[t]))
        fs.append(boundary_f(ref[t], pred[t], bound_th))
    if not js:
        return {"J": float("nan"), "F": float("nan"), "frames": 0}
    return {"J": float(np.mean(js)), "F": float(np.mean(fs)), "frames": len(js)}


def jf_summary(per_object: list[dict[str, float]]) -> dict[str, float] | None:
    """Objects' J and F averaged, in percent, with J&F; None when nothing was scored."""
    scored = [s for s in per_object if s.get("frames")]
    if not scored:
        return None
    j = 100 * float(np.mean([s["J"] for s in scored]))
    f = 100 * float(np.mean([s["F"] for s in scored]))
    return {"J": round(j, 3), "F": round(f, 3), "JF": round((j + f) / 2, 3)}


def mean_scores(summaries: list[dict[str, float] | None]) -> dict[str, float] | None:
    """Clip summaries (percent) averaged over the clips that have one."""
    have = [s for s in summaries if s is not None]
    if not have:
        return None
    return {k: round(float(np.mean([s[k] for s in have])), 3) for k in ("J", "F", "JF")}

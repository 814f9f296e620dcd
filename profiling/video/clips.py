"""Video clips: frames, the objects to track with their first-frame prompts, ground truth.

Synthetic clips are made from the shipped photographs by a smooth camera motion over the real
image (``pan``, ``zoom``, ``rotate`` or ``mixed``): frame t is the affine warp of a window of
the photograph (75 % of each side) whose centre, zoom and angle move linearly with t; every
parameter is drawn from a generator seeded by (seed, clip index), so the same call always gives
the same clips. The tracked object is a salient region of the photograph (a Felzenszwalb
segment, see ``salient_mask``); its ground truth on every frame is that region warped by the
same motion, and its prompt is taken from the frame-0 mask (see ``ClipObject.from_mask``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from profiling.calibration.images import ImageRecord, shipped_photos
from profiling.errors import BadInput

__all__ = [
    "MOTIONS",
    "Clip",
    "ClipObject",
    "Motion",
    "random_motion",
    "frame_transform",
    "salient_mask",
    "synthetic_clip",
    "synthetic_clips",
]

MOTIONS = ("pan", "zoom", "rotate", "mixed")
CROP = 0.75  # the camera window covers this fraction of each side of the photograph


@dataclass
class ClipObject:
    """One tracked object: its id, frame-0 prompts (original pixels) and ground-truth masks."""

    obj_id: int
    point: tuple[float, float]  # (x, y): the mask's most interior pixel on frame 0
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 of the frame-0 mask
    first_mask: np.ndarray | None = None  # bool HxW on frame 0
    masks: dict[int, np.ndarray] = field(default_factory=dict)  # frame -> bool HxW (GT)

    @classmethod
    def from_mask(cls, obj_id: int, mask: np.ndarray) -> ClipObject:
        """Prompts from a frame-0 mask: the argmax of its distance transform, and its box."""
        from scipy.ndimage import distance_transform_edt

        if not mask.any():
            raise BadInput(f"object {obj_id}: its frame-0 mask is empty")
        dist = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(np.argmax(dist)), mask.shape)
        ys, xs = np.nonzero(mask)
        box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
        return cls(obj_id, (float(x), float(y)), box, first_mask=mask.astype(bool))


@dataclass
class Clip:
    """A short video: T frames (T, H, W, 3) uint8 and the objects prompted on frame 0."""

    name: str
    frames: np.ndarray
    objects: list[ClipObject]
    source: str = "synthetic"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            raise BadInput(f"clip {self.name!r}: frames must be (T, H, W, 3) uint8")
        if not self.objects:
            raise BadInput(f"clip {self.name!r}: no object to track")

    def __len__(self) -> int:
        return int(self.frames.shape[0])

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])

    @property
    def has_ground_truth(self) -> bool:
        return any(len(o.masks) > 1 for o in self.objects)

    @property
    def sha256(self) -> str:
        """Content hash of the frames and the prompts."""
        h = hashlib.sha256(str(self.frames.shape).encode())
        h.update(np.ascontiguousarray(self.frames).tobytes())
        h.update(repr([(o.obj_id, o.point, o.box) for o in self.objects]).encode())
        return h.hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "frames": len(self),
            "hw": list(self.hw),
            "objects": [o.obj_id for o in self.objects],
            "ground_truth": self.has_ground_truth,
            "source": self.source,
            "sha256": self.sha256[:16],
            **self.meta,
        }


@dataclass(frozen=True)
class Motion:
    """Camera motion per frame: shift (source pixels), zoom factor and rotation (degrees)."""

    kind: str
    shift: tuple[float, float] = (0.0, 0.0)
    zoom: float = 1.0
    angle: float = 0.0
    zoom0: float = 1.0


def random_motion(rng: np.random.Generator, kind: str, hw: tuple[int, int], frames: int) -> Motion:
    """A smooth motion of ``kind`` that keeps the window inside the photograph."""
    if kind not in MOTIONS:
        raise BadInput(f"unknown motion {kind!r}; known: {', '.join(MOTIONS)}")
    h, w = hw
    steps = max(frames - 1, 1)
    pan = 0.10 if kind == "pan" else 0.05 if kind == "mixed" else 0.0
    sign = rng.choice([-1.0, 1.0], 2)
    shift = (float(sign[0] * rng.uniform(0.5, 1) * pan * w / steps), 0.0)
    shift = (shift[0], float(sign[1] * rng.uniform(0.3, 1) * pan * h / steps))
    zoom_total = rng.uniform(1.1, 1.25) if kind in ("zoom", "mixed") else 1.0
    zoom_in = bool(rng.integers(2))
    zoom = float(zoom_total ** ((1 if zoom_in else -1) / steps))
    turn = 8.0 if kind == "rotate" else 4.0 if kind == "mixed" else 0.0
    angle = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 1) * turn / steps)
    return Motion(kind, shift, zoom, angle, zoom0=1.0 if zoom_in else float(zoom_total))


def frame_transform(
    motion: Motion, t: int, src_hw: tuple[int, int], out_hw: tuple[int, int]
) -> np.ndarray:
    """3x3 matrix mapping output (x, y) of frame t to photograph (x, y)."""
    h, w = src_hw
    oh, ow = out_hw
    scale = motion.zoom0 * motion.zoom**t * (oh / (CROP * h))  # output pixels per source pixel
    theta = np.deg2rad(motion.angle * t)
    c, s = np.cos(theta), np.sin(theta)
    centre = np.array([(w - 1) / 2 + motion.shift[0] * t, (h - 1) / 2 + motion.shift[1] * t])
    to_origin = np.array([[1, 0, -(ow - 1) / 2], [0, 1, -(oh - 1) / 2], [0, 0, 1.0]])
    rot_scale = np.array([[c / scale, -s / scale, 0], [s / scale, c / scale, 0], [0, 0, 1.0]])
    back = np.array([[1, 0, centre[0]], [0, 1, centre[1]], [0, 0, 1.0]])
    return back @ rot_scale @ to_origin


def _warp(image: np.ndarray, matrix: np.ndarray, out_hw: tuple[int, int], order: int) -> np.ndarray:
    from skimage.transform import AffineTransform, warp

    out = warp(
        image, AffineTransform(matrix=matrix), output_shape=out_hw, order=order,
        mode="edge", preserve_range=True,
    )  # fmt: skip
    return out


def salient_mask(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A salient region: among Felzenszwalb segments covering 3-30 % of the image with their
    centroid in the central 60 %, the 3 of highest colour contrast; ``rng`` picks one.
    Falls back to a central ellipse when no segment qualifies."""
    from skimage.segmentation import felzenszwalb
    from skimage.transform import resize

    h, w = image.shape[:2]
    f = min(1.0, 192 / max(h, w))
    small = resize(image, (max(int(h * f), 8), max(int(w * f), 8)), anti_aliasing=True)
    labels = felzenszwalb(small, scale=300, sigma=0.8, min_size=max(small.size // 3 // 100, 8))
    labels = resize(labels, (h, w), order=0, preserve_range=True, anti_aliasing=False).astype(int)
    mean_all = image.reshape(-1, 3).mean(0)
    yy, xx = np.mgrid[0:h, 0:w]
    scored = []
    for lab in np.unique(labels):
        m = labels == lab
        frac = m.mean()
        cy, cx = yy[m].mean() / h, xx[m].mean() / w
        if 0.03 <= frac <= 0.30 and 0.2 <= cy <= 0.8 and 0.2 <= cx <= 0.8:
            scored.append((float(np.abs(image[m].mean(0) - mean_all).sum()), int(lab)))
    if not scored:
        return ((yy - h / 2) / (0.2 * h)) ** 2 + ((xx - w / 2) / (0.2 * w)) ** 2 <= 1
    top = sorted(scored, reverse=True)[:3]
    return labels == top[int(rng.integers(len(top)))][1]


def synthetic_clip(
    rec: ImageRecord, frames: int, seed: int, index: int = 0, motion: str | None = None,
    long_side: int | None = None,
) -> Clip:  # fmt: skip
    """One clip over photograph ``rec``; ``long_side`` sets the frame size (default: the window)."""
    if frames < 2:
        raise BadInput("a clip needs at least 2 frames")
    rng = np.random.default_rng([seed, index])
    kind = motion or str(rng.choice(MOTIONS))
    src_hw = rec.hw
    out_hw = (round(CROP * src_hw[0]), round(CROP * src_hw[1]))
    if long_side is not None:
        f = long_side / max(out_hw)
        out_hw = (max(round(out_hw[0] * f), 8), max(round(out_hw[1] * f), 8))
    mov = random_motion(rng, kind, src_hw, frames)
    region = salient_mask(rec.pixels, rng).astype(np.float64)
    video, masks = [], {}
    for t in range(frames):
        m = frame_transform(mov, t, src_hw, out_hw)
        video.append(np.clip(np.rint(_warp(rec.pixels, m, out_hw, 1)), 0, 255).astype(np.uint8))
        masks[t] = _warp(region, m, out_hw, 0) > 0.5
    obj = ClipObject.from_mask(1, masks[0])
    obj.masks = masks
    meta = {"photo": rec.name, "motion": vars(mov), "seed": seed}
    return Clip(f"{rec.name}-{kind}-{seed}", np.stack(video), [obj], "synthetic", meta)


def synthetic_clips(
    n: int, frames: int = 8, seed: int = 0, photos: list[str] | None = None,
    motion: str | None = None, long_side: int | None = None,
) -> list[Clip]:  # fmt: skip
    """``n`` clips, clip i over the i-th photograph (cycling), motion drawn from (seed, i)."""
    records = shipped_photos(photos or ["astronaut", "coffee", "chelsea", "motorcycle_left"])
    return [
        synthetic_clip(records[i % len(records)], frames, seed, i, motion, long_side)
        for i in range(n)
    ]

"""Calibration images: the photographs scikit-image ships, and user image folders."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from profiling.errors import BadInput

__all__ = [
    "ImageRecord",
    "SHIPPED_PHOTOS",
    "shipped_photos",
    "load_folder",
    "to_rgb",
    "content_hash",
]

# Real photographs in scikit-image's own data folder (no download needed).
SHIPPED_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "coffee",
    "chelsea",
    "motorcycle_left",
    "rocket",
    "retina",
    "coins",
    "camera",
    "motorcycle_right",
    "hubble_deep_field",
    "immunohistochemistry",
    "moon",
    "clock",
    "cell",
)
_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class ImageRecord:
    """One image: a name, HxWx3 uint8 pixels, its content hash, optional instance masks."""

    name: str
    pixels: np.ndarray
    sha256: str
    masks: list[np.ndarray] = field(default_factory=list)  # bool HxW per instance
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # xyxy

    @property
    def hw(self) -> tuple[int, int]:
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])


def to_rgb(arr: np.ndarray) -> np.ndarray:
    """Any grey / RGBA / float image -> HxWx3 uint8."""
    a = np.asarray(arr)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    elif a.dtype != np.uint8:
        a = np.clip(a * (255.0 if a.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise BadInput(f"not an image: array of shape {a.shape}")
    return np.ascontiguousarray(a[..., :3])


def content_hash(pixels: np.ndarray) -> str:
    """sha256 of the pixel bytes and shape."""
    h = hashlib.sha256(str(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def _shipped(name: str) -> np.ndarray:
    import skimage.data as data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        return left if name.endswith("left") else right
    return getattr(data, name)()


def shipped_photos(names: list[str] | None = None) -> list[ImageRecord]:
    """The scikit-image photographs (all of SHIPPED_PHOTOS by default)."""
    out = []
    for name in names or list(SHIPPED_PHOTOS):
        if name not in SHIPPED_PHOTOS:
            raise BadInput(f"unknown shipped photo {name!r}; known: {', '.join(SHIPPED_PHOTOS)}")
        px = to_rgb(_shipped(name))
        out.append(ImageRecord(name=name, pixels=px, sha256=content_hash(px)))
    return out


def load_folder(folder: str | Path) -> list[ImageRecord]:
    """Every image file in ``folder`` (sorted by name); unreadable files are an error."""
    from PIL import Image, UnidentifiedImageError

    root = Path(folder)
    if not root.is_dir():
        raise BadInput(f"image folder {str(root)!r} does not exist")
    files = sorted(p for p in root.iterdir() if p.suffix.lower() in _EXTENSIONS)
    if not files:
        raise BadInput(
            f"image folder {str(root)!r} holds no images ({', '.join(sorted(_EXTENSIONS))})"
        )
    out = []
    for path in files:
        try:
            with Image.open(path) as im:
                px = to_rgb(np.asarray(im.convert("RGB")))
        except (UnidentifiedImageError, OSError) as exc:
            raise BadInput(f"cannot read image {path.name!r}: {exc}") from None
        out.append(ImageRecord(name=path.name, pixels=px, sha256=content_hash(px)))
    return out

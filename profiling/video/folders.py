"""User clips from frame folders, in the DAVIS / SA-V layouts.

Accepted layouts (frames are ``.jpg`` / ``.jpeg``, sorted by the integer in their name):

* ``ROOT/JPEGImages[*]/[480p/]<video>/00000.jpg`` with optional
  ``ROOT/Annotations[*]/[480p/]<video>/00000.png``: palette PNGs (DAVIS), object ids = palette
  indices, 0 = background, 255 = void (ignored); or ``Annotations[*]/<video>/<obj_id>/00000.png``
  binary PNGs per object (SA-V). Annotations are matched to frames by file stem.
* ``ROOT/<video>/00000.jpg`` (several videos) or ``ROOT/00000.jpg`` (one video), no annotations.

The objects of a video are those present in its frame-0 annotation; each is prompted from its
frame-0 mask (``ClipObject.from_mask``). A video without a frame-0 annotation gets one object
prompted on a salient region of frame 0 (``clips.salient_mask``, seeded) and no ground truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from profiling.calibration.images import to_rgb
from profiling.errors import BadInput
from profiling.video.clips import Clip, ClipObject, salient_mask

__all__ = ["load_clips", "video_dirs", "read_annotations"]

_JPEG = {".jpg", ".jpeg"}
VOID = 255


def _frames_in(folder: Path) -> list[Path]:
    files = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in _JPEG]
    return sorted(files, key=lambda p: (int(p.stem) if p.stem.isdigit() else 0, p.name))


def _level(base: Path, prefer: str | None = None) -> Path:
    """Descend a resolution level (``480p``) when ``base``'s children hold no frames."""
    subs = sorted(p for p in base.iterdir() if p.is_dir())
    if any(_frames_in(s) for s in subs) or not subs:
        return base
    named = [s for s in subs if s.name == (prefer or "480p")]
    return _level((named or subs)[0], prefer)


def video_dirs(root: Path) -> tuple[list[Path], Path | None]:
    """The video frame folders under ``root`` and the annotation root (or None)."""
    if not root.is_dir():
        raise BadInput(f"clip folder {str(root)!r} does not exist")
    if _frames_in(root):
        return [root], None
    jpeg = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("JPEGImages"))
    base = _level(jpeg[0]) if jpeg else root
    videos = [p for p in sorted(base.iterdir()) if p.is_dir() and _frames_in(p)]
    if not videos:
        raise BadInput(f"clip folder {str(root)!r} holds no JPEG frame folders")
    ann = sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith("Annotations"))
    ann_base = None
    if jpeg and ann:
        rel = base.relative_to(jpeg[0])
        ann_base = ann[0] / rel if (ann[0] / rel).is_dir() else ann[0]
    return videos, ann_base


def _read_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("P", "L", "1", "I", "I;16"):
            return np.asarray(im).astype(np.int64)
        return np.asarray(im.convert("L")).astype(np.int64)


def read_annotations(folder: Path, stems: list[str]) -> dict[int, dict[int, np.ndarray]]:
    """object id -> {frame index -> bool mask}, from palette PNGs or per-object folders."""
    out: dict[int, dict[int, np.ndarray]] = {}
    index = {s: i for i, s in enumerate(stems)}
    objs = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.isdigit())
    if objs:  # SA-V: one folder of binary PNGs per object
        for d in objs:
            for png in d.glob("*.png"):
                if png.stem in index:
                    out.setdefault(int(d.name), {})[index[png.stem]] = _read_png(png) > 0
        return out
    for png in folder.glob("*.png"):
        if png.stem not in index:
            continue
        lab = _read_png(png)
        for oid in np.unique(lab):
            if oid not in (0, VOID):
                out.setdefault(int(oid), {})[index[png.stem]] = lab == oid
    for masks in out.values():  # an id absent from an annotated frame is empty there
        for png in folder.glob("*.png"):
            i = index.get(png.stem)
            if i is not None and i not in masks:
                masks[i] = np.zeros_like(next(iter(masks.values())))
    return out


def _load_frames(paths: list[Path]) -> np.ndarray:
    from PIL import Image

    frames = []
    for p in paths:
        with Image.open(p) as im:
            frames.append(to_rgb(np.asarray(im.convert("RGB"))))
    if len({f.shape for f in frames}) != 1:
        raise BadInput(f"frames of {str(paths[0].parent)!r} differ in size")
    return np.stack(frames)


def _objects(ann: dict[int, dict[int, np.ndarray]], frames: np.ndarray, seed: int) -> list:
    objs = []
    for oid in sorted(ann):
        first = ann[oid].get(0)
        if first is not None and first.any() and first.shape == frames.shape[1:3]:
            obj = ClipObject.from_mask(oid, first)
            obj.masks = dict(sorted(ann[oid].items()))
            objs.append(obj)
    if not objs:
        mask = salient_mask(frames[0], np.random.default_rng(seed))
        objs.append(ClipObject.from_mask(1, mask))
    return objs


def load_clips(
    root: str | Path, videos: int | None = None, max_frames: int | None = None,
    stride: int = 1, seed: int = 0,
) -> list[Clip]:  # fmt: skip
    """Clips from a frame folder (layouts above): the first ``videos`` videos by name, every
    ``stride``-th frame, at most ``max_frames`` frames each."""
    if stride < 1 or (max_frames is not None and max_frames < 2):
        raise BadInput("stride must be >= 1 and max_frames >= 2")
    dirs, ann_base = video_dirs(Path(root))
    clips = []
    for vdir in dirs[:videos]:
        paths = _frames_in(vdir)[::stride][:max_frames]
        if len(paths) < 2:
            raise BadInput(f"video {vdir.name!r} has fewer than 2 frames")
        frames = _load_frames(paths)
        ann_dir = ann_base / vdir.name if ann_base is not None else None
        ann = {}
        if ann_dir is not None and ann_dir.is_dir():
            ann = read_annotations(ann_dir, [p.stem for p in paths])
        meta = {"folder": str(vdir)}
        clips.append(Clip(vdir.name, frames, _objects(ann, frames, seed), "folder", meta))
    return clips

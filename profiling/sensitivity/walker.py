"""The walker: runs calibration images once, caches every encoder block's input, and re-runs
only what follows a perturbed layer. Processors do the maths; the walker does the looping."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from profiling.attention import SITE_SUFFIXES
from profiling.calibration import CalibrationSet
from profiling.models.adapter import TaskAdapter

__all__ = ["Walker", "CachedImage", "DECODE", "IMAGE", "NOT_ON_IMAGES"]

DECODE = "decode"  # prompt encoder / mask decoder: re-run decode on cached features
IMAGE = "image"  # the image-path tail (neck, high-res convs): re-run after the last block
NOT_ON_IMAGES = "video"  # memory path: never runs on single images


@dataclass
class CachedImage:
    """What later passes reuse for one image."""

    pixels: torch.Tensor
    hw: tuple[int, int]
    stem_out: torch.Tensor
    block_out: list[torch.Tensor]
    feats: dict[str, Any]
    fp_logits: list[torch.Tensor] = field(default_factory=list)


class Walker:
    """Float reference pass, caches, and partial re-runs for one model and calibration set."""

    def __init__(self, adapter: TaskAdapter, calib: CalibrationSet, use_cache: bool = True):
        self.adapter = adapter
        self.calib = calib
        self.use_cache = use_cache
        model: Any = adapter.model
        enc = model.image_encoder
        trunk = enc.trunk if adapter.family == "sam2" else enc
        self.stem: nn.Module = trunk.patch_embed
        self.blocks: list[nn.Module] = list(trunk.blocks)
        names = {id(m): n for n, m in model.named_modules()}
        self.block_names = [names[id(b)] for b in self.blocks]
        self.stem_name = names[id(self.stem)]
        self.images: list[CachedImage] = []
        self.image_path_layers: set[str] = set()
        self.decode_layers: set[str] = set()

    @torch.no_grad()
    def prepare(self) -> None:
        """The float pass: cache block outputs, features and reference logits per image."""
        names = {m: n for n, m in self.adapter.model.named_modules()}
        ran: set[str] = set()
        hooks = [
            m.register_forward_hook(lambda m, a, o: ran.add(names[m]))
            for m in names
            if len(list(m.children())) == 0
        ]
        try:
            for sample in self.calib.samples:
                self.images.append(self._cache_one(sample.image.pixels, sample.prompts, ran))
        finally:
            for h in hooks:
                h.remove()

    def _cache_one(self, image: Any, prompts: list, ran: set[str]) -> CachedImage:
        outs: list[torch.Tensor] = []
        hooks = [self.stem.register_forward_hook(lambda m, a, o: outs.append(o))]
        hooks += [b.register_forward_hook(lambda m, a, o: outs.append(o)) for b in self.blocks]
        pixels = self.adapter.preprocess(image)
        try:
            feats = self.adapter.embed(pixels)
        finally:
            for h in hooks:
                h.remove()
        self.image_path_layers |= ran
        ran.clear()
        hw = image.shape[:2]
        logits = [self.adapter.decode(feats, p, hw).logits for p in prompts]
        self.decode_layers |= ran - self.image_path_layers
        ran.clear()
        return CachedImage(pixels, hw, outs[0], outs[1:], feats, logits)

    def stage_of(self, layer: str) -> int | str:
        """Where a re-run for ``layer`` starts: a block index (-1 = the stem), IMAGE or DECODE."""
        for suffix in SITE_SUFFIXES:  # an attention site lives where its attention module does
            layer = layer.removesuffix("." + suffix)
        if layer.startswith(self.stem_name + "."):
            return -1
        for j, bname in enumerate(self.block_names):
            if layer.startswith(bname + "."):
                return j
        if any(n == layer or n.startswith(layer + ".") for n in self.image_path_layers):
            return IMAGE
        if any(n == layer or n.startswith(layer + ".") for n in self.decode_layers):
            return DECODE
        return NOT_ON_IMAGES

    @contextmanager
    def _skipping(self, img: CachedImage, stage: int | str) -> Iterator[None]:
        """Replace the stem and the blocks before ``stage`` by their cached outputs."""
        if not self.use_cache or stage in (DECODE, NOT_ON_IMAGES) or stage == -1:
            yield
            return
        upto = len(self.blocks) if stage == IMAGE else int(stage)
        if upto < 0:
            yield
            return
        mods = [(self.stem, img.stem_out)] + list(zip(self.blocks[:upto], img.block_out[:upto]))
        for mod, out in mods:
            mod.forward = (lambda o: lambda *a, **k: o)(out)  # type: ignore[method-assign]
        try:
            yield
        finally:
            for mod, _ in mods:
                del mod.forward

    def logits(self, index: int, stage: int | str) -> list[torch.Tensor]:
        """Mask logits of image ``index`` for every prompt batch, re-running from ``stage``."""
        img = self.images[index]
        prompts = self.calib.samples[index].prompts
        if stage == DECODE and self.use_cache:
            feats = img.feats
        else:
            with self._skipping(img, stage):
                feats = self.adapter.embed(img.pixels)
        return [self.adapter.decode(feats, p, img.hw).logits for p in prompts]

    def __len__(self) -> int:
        return len(self.images)

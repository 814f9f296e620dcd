"""Perturbations of one layer, each a context manager that restores the model on exit."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from profiling.quant.primitives import choose_qparams, fake_quantize, fake_quantize_weight
from profiling.quant.spec import PerTensor, QuantSpec

__all__ = [
    "channel_axis",
    "quantized_weight",
    "weight_swapped",
    "input_quantized",
    "output_zeroed",
    "InputRanges",
    "widen",
]


def channel_axis(module: nn.Module) -> int:
    """The output-channel axis of a layer's weight."""
    return 1 if isinstance(module, nn.ConvTranspose2d) else 0


def quantized_weight(module: Any, w_bits: int) -> torch.Tensor:
    """The layer's weight fake-quantized at ``w_bits`` (per-channel, asymmetric, min-max)."""
    return fake_quantize_weight(
        module.weight.detach(), QuantSpec(w_bits=w_bits), channel_axis(module)
    )


@contextmanager
def weight_swapped(module: Any, weight: torch.Tensor) -> Iterator[None]:
    """Run with ``weight`` in place of the layer's weight."""
    saved = module.weight.data
    module.weight.data = weight
    try:
        yield
    finally:
        module.weight.data = saved


@contextmanager
def input_quantized(module: nn.Module, a_bits: int, lo: float, hi: float) -> Iterator[None]:
    """Run with the layer's input fake-quantized per tensor over the calibrated [lo, hi]."""
    scale, zp = choose_qparams(torch.tensor([lo, hi]), a_bits, False, PerTensor())

    def hook(mod: nn.Module, args: tuple) -> tuple:
        x = args[0]
        return (fake_quantize(x, scale.to(x.device), zp.to(x.device), a_bits, False), *args[1:])

    handle = module.register_forward_pre_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextmanager
def output_zeroed(module: nn.Module) -> Iterator[None]:
    """Run with the layer's output replaced by zeros (Mix-QSAM's perturbation)."""
    handle = module.register_forward_hook(lambda m, a, o: torch.zeros_like(o))
    try:
        yield
    finally:
        handle.remove()


def widen(ranges: dict[str, tuple[float, float]], name: str, x: torch.Tensor) -> None:
    """Widen ``ranges[name]`` (min, max) to cover ``x``."""
    x_lo, x_hi = torch.aminmax(x)
    lo, hi = ranges.get(name, (float("inf"), float("-inf")))
    ranges[name] = (min(lo, float(x_lo)), max(hi, float(x_hi)))


class InputRanges:
    """Per-tensor min / max of each named layer's input, observed while the ``with`` runs."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        self.model, self.names = model, names
        self.ranges: dict[str, tuple[float, float]] = {}
        self._handles: list[Any] = []

    def __enter__(self) -> InputRanges:
        mods = dict(self.model.named_modules())
        for name in self.names:
            self._handles.append(mods[name].register_forward_pre_hook(self._hook(name)))
        return self

    def _hook(self, name: str) -> Any:
        def hook(mod: nn.Module, args: tuple) -> None:
            widen(self.ranges, name, args[0].detach())

        return hook

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

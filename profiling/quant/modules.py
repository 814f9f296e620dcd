"""Quantizer modules placed inside a model copy: activation quantizers and quantized weight layers.

Quantizers are modules so that calibration can observe them with ordinary hooks and so that
their qparams travel as buffers. A weight layer whose input is quantized keeps its name and
parameters; only its class is swapped for a subclass whose forward quantizes the input first.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from profiling.quant.logquant import log2_fake_quantize
from profiling.quant.primitives import fake_quantize

__all__ = [
    "ActQuantizer",
    "LogQuantizer",
    "PairQuantizer",
    "QuantLinear",
    "QuantConv2d",
    "QuantConvTranspose2d",
    "WEIGHT_TYPES",
    "channel_axis",
    "add_input_quantizer",
]


class ActQuantizer(nn.Module):
    """Per-tensor uniform fake-quantizer; passes through until calibrated (``enabled``)."""

    scale: Tensor
    zero_point: Tensor

    def __init__(self, bits: int, symmetric: bool = False) -> None:
        super().__init__()
        self.bits, self.symmetric, self.enabled = bits, symmetric, False
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("zero_point", torch.zeros(()))

    def set_qparams(self, scale: Tensor, zero_point: Tensor) -> None:
        """Install calibrated qparams and switch quantization on."""
        self.scale.copy_(scale.reshape(()))
        self.zero_point.copy_(zero_point.reshape(()))
        self.enabled = True

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled or self.bits >= 16:
            return x
        return fake_quantize(x, self.scale, self.zero_point, self.bits, self.symmetric)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, symmetric={self.symmetric}, enabled={self.enabled}"


class LogQuantizer(ActQuantizer):
    """PTQ4SAM AGQ quantizer for post-softmax values: log2 levels with base 2^(1/tau)."""

    def __init__(self, bits: int, symmetric: bool = False, tau: int = 1) -> None:
        super().__init__(bits, symmetric)
        self.tau = tau

    def set_log_qparams(self, scale: float, tau: int) -> None:
        """Install the searched scale and granularity; the zero-point stays 0."""
        self.tau = tau
        self.set_qparams(torch.tensor(scale), torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        if not self.enabled:
            return x
        return log2_fake_quantize(x, self.scale, self.tau, self.bits)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, tau={self.tau}, enabled={self.enabled}"


class PairQuantizer(nn.Module):
    """The two inputs of an attention matmul site (q and k, or softmax probs and v)."""

    def __init__(self, x: nn.Module, y: nn.Module) -> None:
        super().__init__()
        self.x, self.y = x, y

    def forward(self, a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
        return self.x(a), self.y(b)


class _InputQuantized:
    """Mixin: quantize the first input with ``self.input_quantizer`` before the layer runs."""

    input_quantizer: nn.Module

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        return super().forward(self.input_quantizer(x), *args, **kwargs)  # type: ignore[misc]


class QuantLinear(_InputQuantized, nn.Linear):  # type: ignore[misc]
    """``nn.Linear`` with a quantized input."""


class QuantConv2d(_InputQuantized, nn.Conv2d):  # type: ignore[misc]
    """``nn.Conv2d`` with a quantized input."""


class QuantConvTranspose2d(_InputQuantized, nn.ConvTranspose2d):  # type: ignore[misc]
    """``nn.ConvTranspose2d`` with a quantized input."""


WEIGHT_TYPES: dict[type, type] = {
    nn.Linear: QuantLinear,
    nn.Conv2d: QuantConv2d,
    nn.ConvTranspose2d: QuantConvTranspose2d,
}


def channel_axis(module: nn.Module) -> int:
    """Output-channel axis of a weight: 1 for ConvTranspose2d (in, out, kh, kw), else 0."""
    return 1 if isinstance(module, nn.ConvTranspose2d) else 0


def add_input_quantizer(module: nn.Module, bits: int, symmetric: bool) -> ActQuantizer:
    """Swap ``module``'s class for its input-quantized subclass and attach the quantizer."""
    base = next((b for b in WEIGHT_TYPES if type(module) is b), None)
    if base is None:
        raise TypeError(f"{type(module).__name__} is not a Linear / Conv2d / ConvTranspose2d")
    module.__class__ = WEIGHT_TYPES[base]
    quantizer = ActQuantizer(bits, symmetric)
    module.input_quantizer = quantizer
    return quantizer

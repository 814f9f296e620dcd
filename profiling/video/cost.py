"""What the memory path costs per frame: memory-attention MACs (counted with hooks), the bytes of
the spatial memory attended, and wall time.

MACs: every ``nn.Linear`` under ``memory_attention`` counts rows × in × out; every attention
module under it counts its two matmuls (q·kᵀ and softmax·v) from the q / k token counts
(``profiling.attention.attention_macs``). ``cross_macs`` is the part that grows with the
memory: the cross-attention k / v projections and both matmuls of the cross-attention.
Bank bytes: the spatial memory features one frame attends to (conditioning + selected slots),
at their stored dtype (bfloat16 in SAM2's video path); positional encodings are shared
constants and not counted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from profiling.attention import attention_macs, attention_modules

__all__ = ["FrameCost", "MemoryMeter", "summarize"]


@dataclass
class FrameCost:
    """One tracked frame (after the first)."""

    frame: int
    memory_tokens: int = 0
    bank_bytes: int = 0
    slots: int = 0
    macs: int = 0
    cross_macs: int = 0
    attention_ms: float = 0.0
    frame_ms: float = 0.0


@dataclass
class MemoryMeter:
    """Hooks on ``model.memory_attention`` that fill one ``FrameCost`` per frame."""

    model: Any
    frames: list[FrameCost] = field(default_factory=list)
    _handles: list[Any] = field(default_factory=list)
    _t0: float = 0.0

    def __enter__(self) -> MemoryMeter:
        ma: nn.Module = self.model.memory_attention
        for name, mod in ma.named_modules():
            if isinstance(mod, nn.Linear):
                cross = ".cross_attn" in f".{name}" and name.rsplit(".", 1)[-1] in (
                    "k_proj",
                    "v_proj",
                )
                self._handles.append(mod.register_forward_hook(self._linear(cross)))
        for name, mod in attention_modules(ma).items():
            hook = self._attention("cross_attn" in name)
            self._handles.append(mod.register_forward_hook(hook, with_kwargs=True))
        self._handles.append(ma.register_forward_pre_hook(self._start))
        self._handles.append(ma.register_forward_hook(self._stop))
        return self

    def __exit__(self, *exc: object) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    @property
    def current(self) -> FrameCost | None:
        return self.frames[-1] if self.frames else None

    def _linear(self, cross: bool) -> Any:
        def hook(mod: nn.Linear, args: tuple, out: torch.Tensor) -> None:
            if self.current is not None:
                macs = out.numel() // mod.out_features * mod.in_features * mod.out_features
                self.current.macs += macs
                self.current.cross_macs += macs if cross else 0

        return hook

    def _attention(self, cross: bool) -> Any:
        def hook(mod: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
            if self.current is not None:
                macs = 2 * attention_macs(mod, args, kwargs, out)
                self.current.macs += macs
                self.current.cross_macs += macs if cross else 0

        return hook

    def _start(self, mod: nn.Module, args: tuple) -> None:
        self._t0 = time.perf_counter()

    def _stop(self, mod: nn.Module, args: tuple, out: torch.Tensor) -> None:
        if self.current is not None:
            self.current.attention_ms += (time.perf_counter() - self._t0) * 1e3


def summarize(frames: list[FrameCost]) -> dict[str, Any]:
    """Means (and maxima) over frames of every per-frame cost."""
    if not frames:
        return {"frames": 0}
    n = len(frames)

    def mean(key: str) -> float:
        return sum(float(getattr(f, key)) for f in frames) / n

    return {
        "frames": n,
        "memory_tokens": mean("memory_tokens"),
        "slots": mean("slots"),
        "bank_bytes": mean("bank_bytes"),
        "bank_bytes_max": max(f.bank_bytes for f in frames),
        "memory_attention_macs": mean("macs"),
        "cross_attention_macs": mean("cross_macs"),
        "memory_attention_ms": round(mean("attention_ms"), 3),
        "ms_per_frame": round(mean("frame_ms"), 3),
    }

"""Observers: calibration statistics gathered through hooks that never outlive a ``with``.

``observing`` registers one hook per observed module on enter and removes every handle on exit,
exception or not. Observers follow an ``update(*tensors)`` protocol; what they keep is theirs:
a running range (``RangeObserver``), sampled (probs, v) pairs for AGQ (``PairSampler``), an input
Gram matrix for VRC (``GramObserver``), or output samples for BIG (``SampleObserver``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from profiling.quant.primitives import choose_qparams
from profiling.quant.spec import PerTensor

__all__ = [
    "Observer",
    "RangeObserver",
    "PairSampler",
    "GramObserver",
    "SampleObserver",
    "observing",
    "hook_count",
]


class Observer(Protocol):
    def update(self, *tensors: Tensor) -> None: ...


class RangeObserver:
    """PTQ4SAM's AvgMinMax: the mean over calibration batches of each batch's min and max."""

    def __init__(self) -> None:
        self.lo_sum, self.hi_sum, self.count = 0.0, 0.0, 0

    def update(self, *tensors: Tensor) -> None:
        x = tensors[0].detach()
        if x.numel() == 0:
            return
        self.lo_sum += float(x.min())
        self.hi_sum += float(x.max())
        self.count += 1

    def qparams(self, bits: int, symmetric: bool) -> tuple[Tensor, Tensor]:
        """Per-tensor scale and zero-point for the averaged range."""
        if not self.count:
            raise ValueError("RangeObserver saw no data")
        lo, hi = self.lo_sum / self.count, self.hi_sum / self.count
        return choose_qparams(torch.tensor([lo, hi]), bits, symmetric, PerTensor())


class PairSampler:
    """(probs, v) pairs of an sv site: at most ``rows`` query rows per call, up to ``budget``."""

    def __init__(self, rows: int = 32, budget: int = 65_536, seed: int = 0) -> None:
        self.rows, self.budget, self.kept = rows, budget, 0
        self.samples: list[tuple[Tensor, Tensor]] = []
        self.gen = torch.Generator().manual_seed(seed)

    def update(self, *tensors: Tensor) -> None:
        probs, v = tensors[0].detach(), tensors[1].detach()
        if self.kept >= self.budget:
            return
        n = probs.shape[-2]
        if n > self.rows:
            idx = torch.randperm(n, generator=self.gen)[: self.rows].to(probs.device)
            probs = probs.index_select(-2, idx)
        self.samples.append((probs.float().cpu(), v.float().cpu()))
        self.kept += probs.numel()


class GramObserver:
    """XᵀX (float64) of a layer's input rows, kept as two halves (alternate calls) for VRC's CV."""

    def __init__(self) -> None:
        self.halves: list[Tensor | None] = [None, None]
        self.rows, self.calls = 0, 0

    def update(self, *tensors: Tensor) -> None:
        x = tensors[0].detach().reshape(-1, tensors[0].shape[-1]).double()
        g, i = x.T @ x, self.calls % 2
        prev = self.halves[i]
        self.halves[i] = g if prev is None else prev + g
        self.rows, self.calls = self.rows + x.shape[0], self.calls + 1

    @property
    def gram(self) -> Tensor | None:
        """The whole XᵀX."""
        a, b = self.halves
        if a is None or b is None:
            return a
        return a + b


class SampleObserver:
    """Up to ``limit`` rows (last dim = channels) of a tensor, e.g. a key projection's output."""

    def __init__(self, limit: int = 65536) -> None:
        self.limit = limit
        self.rows: list[Tensor] = []
        self.kept = 0

    def update(self, *tensors: Tensor) -> None:
        if self.kept >= self.limit:
            return
        x = tensors[0].detach().reshape(-1, tensors[0].shape[-1])[: self.limit - self.kept]
        self.rows.append(x.float().cpu())
        self.kept += x.shape[0]

    def tensor(self) -> Tensor:
        return torch.cat(self.rows) if self.rows else torch.empty(0)


def _hook(observer: Observer, on_output: bool) -> Callable[..., None]:
    if on_output:

        def post(module: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            observer.update(*(out if isinstance(out, tuple) else (out,)))

        return post

    def pre(module: nn.Module, args: tuple[Any, ...]) -> None:
        observer.update(*args)

    return pre


@contextmanager
def observing(
    modules: Mapping[str, nn.Module],
    make: Callable[[str], Observer],
    on_output: bool = False,
) -> Iterator[dict[str, Observer]]:
    """Observe each module's inputs (or outputs) for the duration of the ``with``."""
    observers = {name: make(name) for name in modules}
    handles = []
    try:
        for name, mod in modules.items():
            hook = _hook(observers[name], on_output)
            reg = mod.register_forward_hook if on_output else mod.register_forward_pre_hook
            handles.append(reg(hook))
        yield observers
    finally:
        for handle in handles:
            handle.remove()


def hook_count(model: nn.Module) -> int:
    """Forward hooks and pre-hooks registered anywhere in ``model`` (0 after every ``with``)."""
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())

"""Everything a metric processor needs: the model, the walker, the layers and their ranges."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from profiling.inventory import Inventory
from profiling.sensitivity.store import UnitStore
from profiling.sensitivity.walker import NOT_ON_IMAGES, Walker

__all__ = ["Context", "Cancelled"]


class Cancelled(Exception):
    """The caller asked the run to stop; finished units are kept."""


@dataclass
class Context:
    """Shared state of one profiling run."""

    model: nn.Module
    inventory: Inventory
    walker: Walker
    store: UnitStore
    w_bits: list[int]
    a_bits: list[int]
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    progress: Callable[[float, str], None] | None = None
    should_stop: Callable[[], bool] | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)

    def modules(self) -> dict[str, nn.Module]:
        return dict(self.model.named_modules())

    def candidate_layers(self) -> list[str]:
        """Weight layers (those the ``layers`` option names, if given), in execution order."""
        only = self.options.get("layers")
        return [
            x.name
            for x in self.inventory.layers
            if x.weight_numel and (only is None or x.name in only)
        ]

    def weight_layers(self) -> list[str]:
        """Weight layers that run on images, in execution order (after the walker's float pass)."""
        return [n for n in self.candidate_layers() if self.walker.stage_of(n) != NOT_ON_IMAGES]

    def per_layer(self, metric: str, compute: Callable[[str], Any]) -> dict[str, Any]:
        """``compute(name)`` for every weight layer, one checkpointed unit ``metric:name`` each
        (a resumed run reads finished units back), with progress between units."""
        layers = self.weight_layers()
        out: dict[str, Any] = {}
        for i, name in enumerate(layers):
            self.tick(i, len(layers), f"{metric} {name}")
            value = self.store.get(f"{metric}:{name}")
            if value is None:
                value = compute(name)
                self.store.put(f"{metric}:{name}", value)
            out[name] = value
        self.tick(len(layers), len(layers), f"{metric} done")
        return out

    def tick(self, done: int, total: int, what: str) -> None:
        """Report progress and honour a stop request between units."""
        if self.should_stop is not None and self.should_stop():
            raise Cancelled(f"stopped after {done} of {total} units")
        if self.progress is not None:
            self.progress(done / max(total, 1), what)

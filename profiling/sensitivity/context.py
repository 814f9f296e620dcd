"""Everything a metric processor needs: the model, the walker, the layers and their ranges."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from profiling.inventory import Inventory
from profiling.sensitivity.store import Store
from profiling.sensitivity.units import PhaseRunner, Serial
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
    store: Store
    w_bits: list[int]
    a_bits: list[int]
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    progress: Callable[[float, str], None] | None = None
    should_stop: Callable[[], bool] | None = None
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    scratch: Path | None = None  # local files a metric keeps between phases (Fisher's rows)
    runner: PhaseRunner | None = None  # how a phase of units runs (None: serially, here)
    memo: dict[str, Any] = field(default_factory=dict)  # kept across a worker's replays
    counts: Counter[str] = field(default_factory=Counter)  # computed / resumed units
    counts_by_worker: Counter[str] = field(default_factory=Counter)
    weights_hash: str = ""
    calibration_key: str = ""

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

    def scratch_dir(self, name: str) -> Path:
        """A local folder for files kept between phases (created when missing)."""
        root = self.scratch if self.scratch is not None else self.store.root
        if root is None:
            raise ValueError("this run has no scratch folder (pass scratch= to the context)")
        path = root / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def units(
        self,
        ids: list[str],
        compute: Callable[[str], Any],
        label: str,
        share: tuple[float, float] = (0.0, 1.0),
    ) -> dict[str, Any]:
        """One phase: ``{unit: compute(unit)}`` for every id, each checkpointed and computed
        once, wherever the runner sends it; ``share`` is the phase's part of the progress."""
        return (self.runner or Serial()).phase(self, ids, compute, label, share)

    def per_layer(self, metric: str, compute: Callable[[str], Any]) -> dict[str, Any]:
        """``compute(name)`` for every weight layer, one unit ``metric:name`` each."""
        layers = self.weight_layers()
        ids = [f"{metric}:{name}" for name in layers]
        values = self.units(ids, lambda unit: compute(unit.partition(":")[2]), metric)
        return {name: values[unit] for name, unit in zip(layers, ids, strict=True)}

    def tick(self, done: int, total: int, what: str) -> None:
        """Report progress and honour a stop request between units."""
        self.tick_fraction(done / max(total, 1), what)

    def tick_fraction(self, fraction: float, what: str, check: bool = True) -> None:
        """Report progress (0..1) and (``check``) honour a stop request between units."""
        if check and self.should_stop is not None and self.should_stop():
            raise Cancelled(f"stopped at {fraction:.0%}")
        if self.progress is not None:
            self.progress(fraction, what)

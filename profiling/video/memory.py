"""Memory-bank policies: which spatial memories SAM2's memory attention reads on each frame.

SAM2 attends to the conditioning (prompted) frame plus a bank of non-conditioning memories
(``maskmem_features``, stored in bfloat16). A policy owns that bank: the tracker calls ``add``
after every tracked frame and ``select`` before the next one; ``select`` returns
``(t_pos, slot)`` pairs, and slot k steps back gets SAM2's temporal encoding
``maskmem_tpos_enc[num_maskmem - t_pos - 1]`` with ``t_pos = num_maskmem - k``, exactly what
SAM2 gives the frame k steps back. Object pointers are not part of the bank: SAM2 selects them
as usual. With N = num_maskmem (7) the bank holds at most N − 1 slots; the conditioning frame
is never in it, so it is always kept.

* ``fifo`` (SAM2): the frames t−1 … t−(N−1). The tracker leaves SAM2's own selection untouched.
* ``sis`` (Mix-QSAM2): every frame is added; when the bank holds more than ``capacity`` − 1
  slots, the newest slot is the reference, the k (3) slots most cosine-similar to it (flattened
  features, float32) are merged into one, F = Σ wᵢ·Fᵢ with w = softmax(similarities), stored
  under the largest merged frame index (the others leave the bank); if still over capacity the
  oldest slot goes. Slots are ordered by index and k-th newest gets the encoding of k steps back.
* ``mutual_kv`` (Q-MiniSAM2): FIFO's window, but a new frame whose features have cosine
  similarity > ``threshold`` with a slot in the bank is not added: that slot's keys and values
  stand in for it (the slot moves to the new frame's index, keeping its features). A slot
  leaves when the newest frame it stands for leaves the window. ``threshold`` ≥ 1 disables
  reuse, which is FIFO exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from profiling.errors import BadInput

__all__ = [
    "Slot",
    "MemoryPolicy",
    "FifoPolicy",
    "SisPolicy",
    "MutualKVPolicy",
    "POLICIES",
    "make_policy",
    "policy_from_plan",
    "with_policy",
]


@dataclass
class Slot:
    """One bank entry: memory features (1, C, h, w), their positional encoding, and the frames
    it stands for (``index`` = the newest)."""

    features: torch.Tensor
    pos_enc: list[torch.Tensor]
    index: int
    frames: list[int] = field(default_factory=list)


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two feature maps, flattened, in float32."""
    return float(F.cosine_similarity(a.float().flatten(), b.float().flatten(), dim=0))


class MemoryPolicy:
    """Base: a bank of slots, FIFO windowing by slot index."""

    name = "base"
    stock = False  # True: SAM2's own selection is used unchanged

    def __init__(self) -> None:
        self.num_maskmem = 7
        self.slots: list[Slot] = []
        self.events: dict[str, int] = {}

    def reset(self, num_maskmem: int) -> None:
        """Empty the bank before tracking an object with a model of ``num_maskmem``."""
        self.num_maskmem = num_maskmem
        self.slots = []
        self.events = {}

    def _count(self, event: str) -> None:
        self.events[event] = self.events.get(event, 0) + 1

    def _new_slot(self, frame_idx: int, out: Mapping[str, Any]) -> Slot:
        return Slot(out["maskmem_features"], out["maskmem_pos_enc"], frame_idx, [frame_idx])

    def _prune_window(self, frame_idx: int) -> None:
        """Drop slots that frame ``frame_idx`` + 1 can no longer see."""
        oldest = frame_idx + 2 - self.num_maskmem
        self.slots = [s for s in self.slots if s.index >= oldest]

    def add(self, frame_idx: int, out: Mapping[str, Any]) -> None:
        """Take frame ``frame_idx``'s compact output (its memory) into the bank."""
        self.slots.append(self._new_slot(frame_idx, out))
        self._prune_window(frame_idx)

    def select(self, frame_idx: int) -> list[tuple[int, Slot]]:
        """(t_pos, slot) of the slots frame ``frame_idx`` attends to, oldest first."""
        n = self.num_maskmem
        chosen = [(n - (frame_idx - s.index), s) for s in self.slots]
        return sorted((p, s) for p, s in chosen if 1 <= p <= n - 1) if chosen else []

    def describe(self) -> dict[str, Any]:
        """What goes into a plan's ``memory_policy``."""
        return {"name": self.name}


class FifoPolicy(MemoryPolicy):
    """SAM2's own bank: conditioning frame + the N − 1 most recent frames."""

    name = "fifo"
    stock = True


class MutualKVPolicy(MemoryPolicy):
    """Q-MiniSAM2 Adaptive Mutual-KV: similar frames share one slot's keys and values."""

    name = "mutual_kv"

    def __init__(self, threshold: float = 0.95) -> None:
        super().__init__()
        if not threshold >= -1.0:
            raise BadInput("mutual_kv: threshold must be >= -1 (1 disables reuse)")
        self.threshold = float(threshold)

    def add(self, frame_idx: int, out: Mapping[str, Any]) -> None:
        self._prune_window(frame_idx)
        if self.threshold < 1.0 and self.slots:
            feats = out["maskmem_features"]
            sims = [cosine(feats, s.features) for s in self.slots]
            best = max(range(len(sims)), key=lambda i: (sims[i], self.slots[i].index))
            if sims[best] > self.threshold:
                slot = self.slots[best]
                slot.index = frame_idx
                slot.frames.append(frame_idx)
                self._count("reused")
                return
        self.slots.append(self._new_slot(frame_idx, out))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "threshold": self.threshold}


class SisPolicy(MemoryPolicy):
    """Mix-QSAM2 Selective Importance-driven Synthesis: merge redundant frames when full."""

    name = "sis"

    def __init__(self, k: int = 3, capacity: int | None = None) -> None:
        super().__init__()
        if k < 2:
            raise BadInput("sis: k must be at least 2 (k frames merge into one)")
        if capacity is not None and capacity < 2:
            raise BadInput("sis: capacity must be at least 2 (conditioning frame + 1)")
        self.k = k
        self.capacity = capacity

    def reset(self, num_maskmem: int) -> None:
        cap = self.capacity or num_maskmem
        if cap > num_maskmem:
            raise BadInput(f"sis: capacity {cap} exceeds the model's num_maskmem {num_maskmem}")
        super().reset(num_maskmem)

    @property
    def max_slots(self) -> int:
        return (self.capacity or self.num_maskmem) - 1

    def add(self, frame_idx: int, out: Mapping[str, Any]) -> None:
        self.slots.append(self._new_slot(frame_idx, out))
        if len(self.slots) > self.max_slots:
            self._merge()
        while len(self.slots) > self.max_slots:
            self.slots.pop(0)
            self._count("evicted")

    def _merge(self) -> None:
        ref, older = self.slots[-1], self.slots[:-1]
        sims = torch.tensor([cosine(s.features, ref.features) for s in older])
        top = torch.topk(sims, min(self.k, len(older))).indices.tolist()
        weights = torch.softmax(sims[top], dim=0)
        picked = [older[i] for i in top]
        merged = sum(w * s.features.float() for w, s in zip(weights.tolist(), picked))
        assert isinstance(merged, torch.Tensor)
        slot = Slot(
            merged.to(picked[0].features.dtype),
            picked[0].pos_enc,
            max(s.index for s in picked),
            sorted(f for s in picked for f in s.frames),
        )
        keep = [s for i, s in enumerate(older) if i not in top]
        self.slots = sorted(keep + [slot, ref], key=lambda s: s.index)
        self._count("merged")

    def select(self, frame_idx: int) -> list[tuple[int, Slot]]:
        n, ordered = self.num_maskmem, sorted(self.slots, key=lambda s: s.index)
        return [(n - (len(ordered) - i), s) for i, s in enumerate(ordered)]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "capacity": self.capacity or self.num_maskmem}


POLICIES: dict[str, type[MemoryPolicy]] = {
    "fifo": FifoPolicy,
    "sis": SisPolicy,
    "mutual_kv": MutualKVPolicy,
}


def make_policy(spec: str | Mapping[str, Any] | MemoryPolicy | None = None) -> MemoryPolicy:
    """A policy from a name, a ``{"name": ..., params}`` object (as in a plan) or a policy."""
    if isinstance(spec, MemoryPolicy):
        return spec
    doc = {"name": spec or "fifo"} if spec is None or isinstance(spec, str) else dict(spec)
    name = doc.pop("name", None)
    if name not in POLICIES:
        raise BadInput(f"unknown memory policy {name!r}; known: {', '.join(POLICIES)}")
    try:
        return POLICIES[name](**doc)
    except TypeError as exc:
        raise BadInput(f"memory policy {name!r}: {exc}") from None


def policy_from_plan(plan: Mapping[str, Any] | None) -> MemoryPolicy:
    """The plan's ``memory_policy`` (FIFO when it has none)."""
    return make_policy((plan or {}).get("memory_policy"))


def with_policy(plan: Mapping[str, Any], policy: str | Mapping[str, Any] | MemoryPolicy) -> dict:
    """A copy of plan JSON with ``memory_policy`` recorded."""
    return {**plan, "memory_policy": make_policy(policy).describe()}

"""Memory-bank policies on hand-made memories: FIFO window, SIS capacity and merge rule,
Mutual-KV reuse (threshold 1 is FIFO), the registry and the plan record."""

from __future__ import annotations

import pytest
import torch

from profiling.errors import BadInput
from profiling.video.memory import (
    FifoPolicy,
    MutualKVPolicy,
    SisPolicy,
    make_policy,
    policy_from_plan,
    with_policy,
)


def mem(seed: int, base: torch.Tensor | None = None, noise: float = 1.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, 2, 2, generator=g)
    feats = x if base is None else base + noise * x
    return {"maskmem_features": feats.to(torch.bfloat16), "maskmem_pos_enc": [torch.zeros(1)]}


def run(policy, frames: list[dict], n: int = 7) -> list[list[tuple[int, list[int]]]]:
    """What each frame 1..len(frames) attends to: (t_pos, frames of the slot)."""
    policy.reset(n)
    seen = [[(p, s.frames) for p, s in policy.select(1)]]
    for t, out in enumerate(frames, start=1):
        policy.add(t, out)
        seen.append([(p, list(s.frames)) for p, s in policy.select(t + 1)])
    return seen


def test_fifo_is_sam2s_window() -> None:
    seen = run(FifoPolicy(), [mem(i) for i in range(10)])
    assert seen[0] == []
    assert seen[1] == [(6, [1])]  # frame 2 sees frame 1 one step back
    assert seen[10] == [(p, [p + 4]) for p in range(1, 7)]  # frame 11 sees 5..10


def test_sis_stays_within_capacity_and_merges_the_most_similar() -> None:
    base = torch.randn(1, 4, 2, 2)
    frames = [mem(i, base, 0.1) for i in range(12)]
    sis = SisPolicy(k=3)
    for seen in run(sis, frames):
        assert len(seen) <= 6
        assert [p for p, _ in seen] == list(range(7 - len(seen), 7))  # newest gets t_pos 6
    assert sis.events["merged"] >= 3
    covered = sorted(f for s in sis.slots for f in s.frames)
    assert covered == sorted(set(covered))  # a frame lives in at most one slot


def test_sis_merge_is_softmax_weighted() -> None:
    sis = SisPolicy(k=3, capacity=4)  # at most 3 slots: the 4th frame triggers a merge
    sis.reset(7)
    outs = [mem(i) for i in range(4)]
    for t, out in enumerate(outs, start=1):
        sis.add(t, out)
    ref = outs[3]["maskmem_features"].float().flatten()
    feats = [o["maskmem_features"].float() for o in outs[:3]]
    sims = torch.tensor([torch.cosine_similarity(f.flatten(), ref, dim=0) for f in feats])
    w = torch.softmax(sims, 0)
    expected = sum(wi * f for wi, f in zip(w, feats))
    assert [s.frames for s in sis.slots] == [[1, 2, 3], [4]]
    assert sis.slots[0].index == 3
    torch.testing.assert_close(sis.slots[0].features.float(), expected.to(torch.bfloat16).float())


def test_sis_capacity_checks() -> None:
    with pytest.raises(BadInput, match="exceeds"):
        SisPolicy(capacity=9).reset(7)
    with pytest.raises(BadInput):
        SisPolicy(k=1)


def test_mutual_kv_threshold_one_is_fifo_and_lower_reuses() -> None:
    base = torch.randn(1, 4, 2, 2)
    frames = [mem(i, base, 0.01) for i in range(10)]  # near-identical memories
    assert run(MutualKVPolicy(threshold=1.0), frames) == run(FifoPolicy(), frames)
    mkv = MutualKVPolicy(threshold=0.9)
    seen = run(mkv, frames)
    assert mkv.events["reused"] == 9 and all(len(s) <= 1 for s in seen)
    assert seen[-1] == [(6, list(range(1, 11)))]  # one slot stands for every frame
    dissimilar = [mem(i) for i in range(10)]
    assert run(MutualKVPolicy(threshold=0.99), dissimilar) == run(FifoPolicy(), dissimilar)


def test_registry_and_plan_record() -> None:
    assert isinstance(make_policy(None), FifoPolicy)
    assert make_policy({"name": "sis", "k": 2}).describe() == {"name": "sis", "k": 2, "capacity": 7}
    with pytest.raises(BadInput, match="known: fifo, sis, mutual_kv"):
        make_policy("lru")
    with pytest.raises(BadInput, match="mutual_kv"):
        make_policy({"name": "mutual_kv", "k": 3})
    plan = with_policy({"choices": {"a": "w8a8"}}, {"name": "mutual_kv", "threshold": 0.9})
    assert plan["memory_policy"] == {"name": "mutual_kv", "threshold": 0.9}
    assert policy_from_plan(plan).describe() == plan["memory_policy"]
    assert isinstance(policy_from_plan({"choices": {}}), FifoPolicy)

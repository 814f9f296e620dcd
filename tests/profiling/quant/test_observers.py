"""Observers: hooks live only inside the ``with``; statistics on hand-made inputs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from profiling.quant.observers import (
    GramObserver,
    PairSampler,
    RangeObserver,
    SampleObserver,
    hook_count,
    observing,
)


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_hooks_removed_on_exit() -> None:
    model = _mlp()
    layers = {"0": model[0], "2": model[2]}
    with observing(layers, lambda _: RangeObserver()) as obs:
        assert hook_count(model) == 2
        model(torch.randn(3, 4))
    assert hook_count(model) == 0
    assert all(isinstance(o, RangeObserver) and o.count == 1 for o in obs.values())


def test_hooks_removed_on_exception() -> None:
    model = _mlp()
    with (
        pytest.raises(RuntimeError, match="boom"),
        observing({"0": model[0]}, lambda _: RangeObserver()),
        observing({"2": model[2]}, lambda _: SampleObserver(), on_output=True),
    ):
        assert hook_count(model) == 2
        raise RuntimeError("boom")
    assert hook_count(model) == 0


def test_range_observer_averages_batch_extremes() -> None:
    obs = RangeObserver()
    obs.update(torch.tensor([-1.0, 2.0]))
    obs.update(torch.tensor([-3.0, 4.0]))
    scale, zp = obs.qparams(8, False)
    assert scale.item() == pytest.approx(5.0 / 255)  # range [-2, 3]
    assert zp.item() == round(2.0 / (5.0 / 255))


def test_range_observer_without_data() -> None:
    with pytest.raises(ValueError, match="no data"):
        RangeObserver().qparams(8, False)


def test_gram_observer_halves_sum_to_xtx() -> None:
    obs = GramObserver()
    xs = [torch.randn(5, 3), torch.randn(7, 3), torch.randn(2, 3)]
    for x in xs:
        obs.update(x)
    full = torch.cat(xs).double()
    assert obs.gram is not None and torch.allclose(obs.gram, full.T @ full)
    assert obs.rows == 14 and obs.halves[1] is not None


def test_pair_sampler_keeps_rows_and_budget() -> None:
    sampler = PairSampler(rows=4, budget=90)
    probs, v = torch.rand(2, 10, 6), torch.randn(2, 6, 3)
    sampler.update(probs, v)
    sampler.update(probs, v)
    assert len(sampler.samples) == 2 and sampler.samples[0][0].shape == (2, 4, 6)
    sampler.update(probs, v)  # over budget: ignored
    assert len(sampler.samples) == 2


def test_sample_observer_on_outputs() -> None:
    model = _mlp()
    with observing({"0": model[0]}, lambda _: SampleObserver(limit=5), on_output=True) as obs:
        model(torch.randn(3, 4))
        model(torch.randn(3, 4))
    got = obs["0"]
    assert isinstance(got, SampleObserver) and got.tensor().shape == (5, 8)

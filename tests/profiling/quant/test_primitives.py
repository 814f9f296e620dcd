"""Uniform quantization numerics on hand-made tensors."""

from __future__ import annotations

import pytest
import torch

from profiling.quant.primitives import (
    choose_qparams,
    compact_qparams,
    dequantize,
    fake_quantize,
    fake_quantize_activation,
    fake_quantize_weight,
    qrange,
    quantize,
)
from profiling.quant.spec import Granularity, PerChannel, PerGroup, PerTensor, QuantSpec


def test_known_qparams_for_a_hand_tensor() -> None:
    x = torch.tensor([-1.0, 0.0, 2.0])
    scale, zp = choose_qparams(x, 8, False, PerTensor())
    assert scale.item() == pytest.approx(3.0 / 255)
    assert zp.item() == 85.0  # round(1 / (3/255)) = 85
    q = quantize(x, scale, zp, 8, False)
    assert q.tolist() == [0.0, 85.0, 255.0]
    y = torch.tensor([-1.0, 0.0, 3.5])
    s_sym, z_sym = choose_qparams(y, 4, True, PerTensor())
    assert s_sym.item() == 0.5 and z_sym.item() == 0.0
    assert quantize(y, s_sym, z_sym, 4, True).tolist() == [-2.0, 0.0, 7.0]


def test_qrange() -> None:
    assert qrange(4, False) == (0, 15)
    assert qrange(4, True) == (-8, 7)


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("symmetric", [False, True])
def test_error_at_most_half_a_step_inside_range(bits: int, symmetric: bool) -> None:
    x = torch.randn(64, 33, generator=torch.Generator().manual_seed(bits))
    scale, zp = choose_qparams(x, bits, symmetric, PerChannel(0))
    assert scale.shape == (64, 1)
    err = (fake_quantize(x, scale, zp, bits, symmetric) - x).abs()
    assert bool((err <= scale / 2 + 1e-6).all())


def test_dequantize_inverts_quantize_on_grid() -> None:
    scale, zp = torch.tensor(0.5), torch.tensor(3.0)
    q = torch.arange(16.0)
    assert torch.equal(quantize(dequantize(q, scale, zp), scale, zp, 4, False), q)


def test_per_channel_beats_per_tensor_with_channel_outliers() -> None:
    g = torch.Generator().manual_seed(0)
    w = torch.randn(16, 64, generator=g) * 0.1
    w[3] *= 100.0
    errs = {}
    grans: dict[str, Granularity] = {"tensor": PerTensor(), "channel": PerChannel(0)}
    for name, gran in grans.items():
        s, z = choose_qparams(w, 4, False, gran)
        err = (fake_quantize(w, s, z, 4, False) - w).pow(2)
        errs[name] = err[torch.arange(16) != 3].mean().item()  # the ordinary channels
    assert errs["channel"] < 0.01 * errs["tensor"]


def test_per_group_scales_and_compact_form() -> None:
    w = torch.arange(2 * 10, dtype=torch.float32).reshape(2, 10)
    s, z = choose_qparams(w, 4, False, PerGroup(4, 0))
    assert s.shape == w.shape
    compact = compact_qparams(s, w.shape, PerGroup(4, 0))
    assert compact.shape == (2, 3)  # ceil(10 / 4) groups per channel
    assert torch.equal(s[:, 4:8], compact[:, 1:2].expand(2, 4))
    err = (fake_quantize(w, s, z, 4, False) - w).abs()
    assert bool((err <= s / 2 + 1e-5).all())


def test_compact_per_channel_axis_1() -> None:
    w = torch.randn(3, 5, 2, 2)
    s, _ = choose_qparams(w, 4, False, PerChannel(1))
    assert s.shape == (1, 5, 1, 1)
    assert compact_qparams(s, w.shape, PerChannel(1)).shape == (5,)


@pytest.mark.parametrize("method", ["percentile", "mse"])
def test_clipping_methods_beat_minmax_with_an_outlier(method: str) -> None:
    x = torch.randn(1, 4096, generator=torch.Generator().manual_seed(1))
    x[0, 0] = 40.0
    errs = {}
    for m in ("minmax", method):
        s, z = choose_qparams(x, 4, False, PerTensor(), m)
        errs[m] = (fake_quantize(x, s, z, 4, False) - x).pow(2).mean().item()
    assert errs[method] < errs["minmax"]


def test_unknown_method() -> None:
    with pytest.raises(ValueError, match="minmax"):
        choose_qparams(torch.ones(3), 4, False, PerTensor(), "l1")


def test_straight_through_gradient() -> None:
    x = torch.linspace(-1, 1, 11, requires_grad=True)
    s, z = choose_qparams(x, 2, False, PerTensor())
    fake_quantize(x, s, z, 2, False).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, torch.ones(11))


def test_weight_and_activation_helpers() -> None:
    w = torch.randn(4, 6, 3, 3)
    assert fake_quantize_weight(w, QuantSpec()) is w
    fq = fake_quantize_weight(w, QuantSpec(w_bits=8), channel_axis=1)
    assert fq.shape == w.shape and not torch.equal(fq, w)
    assert (fq - w).abs().max() < 0.05
    x = torch.randn(10)
    s, z = choose_qparams(x, 8, False, PerTensor())
    assert fake_quantize_activation(x, QuantSpec(), s, z) is x
    assert torch.allclose(fake_quantize_activation(x, QuantSpec(a_bits=8), s, z), x, atol=0.02)


def test_constant_and_zero_tensors_do_not_divide_by_zero() -> None:
    for x in (torch.zeros(5), torch.full((5,), 3.0)):
        s, z = choose_qparams(x, 4, False, PerTensor())
        assert torch.isfinite(fake_quantize(x, s, z, 4, False)).all()

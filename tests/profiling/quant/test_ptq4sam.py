"""PTQ4SAM: BIG keeps outputs and unifies a bimodal key; AGQ beats uniform softmax quantization."""

from __future__ import annotations

import pytest
import torch
from sam2.modeling.sam.transformer import Attention

from profiling.quant.apply import apply_plan, report_of
from profiling.quant.logquant import agq_search, log2_fake_quantize, log2_quantize
from profiling.quant.plan import PlanOptions, QuantPlan, uniform_plan
from profiling.quant.primitives import choose_qparams, fake_quantize
from profiling.quant.ptq4sam import bimodal_integration, count_peaks, sign_vector
from profiling.quant.spec import PerTensor, QuantSpec


def _bimodal_attention() -> tuple[Attention, torch.Tensor, torch.Tensor]:
    """A sam2 Attention whose key channels sit at +3 or -3: k is bimodal."""
    g = torch.Generator().manual_seed(0)
    attn = Attention(embedding_dim=32, num_heads=2).eval()
    with torch.no_grad():
        attn.k_proj.weight.normal_(0, 0.05, generator=g)
        signs = torch.where(torch.arange(32) % 3 == 0, 1.0, -1.0)
        attn.k_proj.bias.copy_(3.0 * signs)
    q_in, k_in = torch.randn(1, 5, 32, generator=g), torch.randn(1, 40, 32, generator=g)
    return attn, q_in, k_in


@torch.no_grad()
def test_big_flips_a_bimodal_key_and_keeps_the_output() -> None:
    attn, q_in, k_in = _bimodal_attention()
    before = attn(q_in, k_in, k_in)
    k = attn.k_proj(k_in)
    assert count_peaks(k) == 2
    result = bimodal_integration({"a": attn}, {"a": k})["a"]
    assert result.bimodal and result.flipped_channels == 21  # channels with a -3 mean
    after_k = attn.k_proj(k_in)
    assert count_peaks(after_k) == 1
    assert bool((sign_vector(after_k) > 0).all())
    assert torch.allclose(attn(q_in, k_in, k_in), before, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_big_leaves_unimodal_keys_alone() -> None:
    attn, _, k_in = _bimodal_attention()
    attn.k_proj.bias.zero_()
    w = attn.q_proj.weight.clone()
    result = bimodal_integration({"a": attn}, {"a": attn.k_proj(k_in)})["a"]
    assert not result.bimodal and torch.equal(attn.q_proj.weight, w)


def test_big_on_sam2_micro_keeps_outputs(sam2_micro, quant_sets, logits) -> None:
    calib, held = quant_sets
    q = apply_plan(
        sam2_micro, uniform_plan(sam2_micro.module, "w16a16", PlanOptions(big=True)), calib
    )
    assert report_of(q).big  # the decoder's token-to-image cross attentions were examined
    for a, b in zip(logits(sam2_micro, sam2_micro.module, held), logits(sam2_micro, q, held)):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_log2_quantizer_hand_values() -> None:
    s, tau, bits = 0.5, 2, 3
    x = torch.tensor([0.5, 0.5 * 2 ** (-1 / 2), 0.5 * 2 ** (-7 / 2), 0.5 * 2 ** (-9 / 2), 0.0, 0.9])
    q = log2_quantize(x, s, tau, bits)
    assert q.tolist() == [0.0, 1.0, 7.0, 8.0, 8.0, 0.0]  # 8 = off the grid -> 0
    x_hat = log2_fake_quantize(x, s, tau, bits)
    assert torch.allclose(x_hat[:3], x[:3])
    assert x_hat[3:5].tolist() == [0.0, 0.0] and x_hat[5].item() == pytest.approx(0.5)


def test_agq_beats_uniform_at_4_bits() -> None:
    g = torch.Generator().manual_seed(0)
    probs = (torch.randn(4, 64, 128, generator=g) * 2.5).softmax(dim=-1)
    v = torch.randn(4, 128, 16, generator=g)
    result = agq_search([(probs, v)], bits=4)
    assert result.tau in (1, 2, 4) and set(result.errors) == {1, 2, 4}
    scale, zp = choose_qparams(probs, 4, False, PerTensor())
    uniform = fake_quantize(probs, scale, zp, 4, False)
    agq = log2_fake_quantize(probs, result.scale, result.tau, 4)
    ref = probs @ v
    err_uniform = (uniform @ v - ref).abs().pow(2.4).sum()
    err_agq = (agq @ v - ref).abs().pow(2.4).sum()
    assert err_agq < 0.5 * err_uniform


def test_agq_installed_per_site(sam2_micro, quant_sets) -> None:
    sites = [
        "image_encoder.trunk.blocks.0.attn.sv_matmul",
        "memory_attention.layers.0.cross_attn_image.sv_matmul",
    ]
    plan = QuantPlan({s: QuantSpec(16, 4) for s in sites}, PlanOptions(agq=True))
    q = apply_plan(sam2_micro, plan, quant_sets[0])
    chosen = report_of(q).agq
    assert set(chosen) == set(sites)  # the memory path is calibrated through track_step
    assert all(r.tau in (1, 2, 4) and r.scale > 0 for r in chosen.values())
    assert not report_of(q).uncalibrated

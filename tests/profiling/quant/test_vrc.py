"""Q-SAM2 VRC: the ridge re-fit lowers the quantized reconstruction error."""

from __future__ import annotations

import torch

from profiling.quant.apply import apply_plan, report_of
from profiling.quant.observers import GramObserver
from profiling.quant.plan import PlanOptions, QuantPlan, uniform_plan
from profiling.quant.spec import QuantSpec
from profiling.quant.vrc import recon_error, ridge_refit, vrc_layer


def _case() -> tuple[torch.Tensor, GramObserver]:
    """Inputs that barely use 8 of 32 dims, weights with outliers exactly there."""
    g = torch.Generator().manual_seed(0)
    scales = torch.ones(32)
    scales[24:] = 1e-3
    obs = GramObserver()
    for _ in range(4):
        obs.update(torch.randn(256, 32, generator=g) * scales)
    w = torch.randn(16, 32, generator=g) * 0.1
    w[:, 24:] += torch.randn(16, 8, generator=g) * 2.0
    return w, obs


def test_recon_error_hand_case() -> None:
    gram = torch.eye(2, dtype=torch.float64) * 4  # X = 2 I
    w = torch.tensor([[1.0, 0.0]])
    assert recon_error(w, w, gram) == 0.0
    assert recon_error(torch.tensor([[0.0, 0.0]]), w, gram) == 1.0
    assert torch.equal(ridge_refit(w, gram, 0.0), w)


def test_vrc_lowers_error_and_variance() -> None:
    w, obs = _case()
    a, b = obs.halves
    assert a is not None
    new_w, res = vrc_layer(w, (a, b), obs.rows, QuantSpec(3, 16))
    assert res.alpha > 0 and res.lam > 0
    assert res.error_after < 0.5 * res.error_before
    assert res.var_after < res.var_before
    assert new_w.shape == w.shape


def test_vrc_skips_underdetermined_layers() -> None:
    w, obs = _case()
    a, b = obs.halves
    assert a is not None
    _, res = vrc_layer(w, (a, b), rows=10, spec=QuantSpec(3, 16))
    assert res.alpha == 0.0 and res.error_after == res.error_before


def test_vrc_on_sam2_micro_reports_every_encoder_linear(sam2_micro, quant_sets) -> None:
    full = uniform_plan(sam2_micro.module, "w3a16").specs
    keep = ("image_encoder.trunk.blocks.0.", "image_encoder.trunk.blocks.1.", "sam_mask_decoder.")
    specs = {n: s for n, s in full.items() if n.startswith(keep)}
    plan = QuantPlan(specs, PlanOptions(vrc=True))
    rep = report_of(apply_plan(sam2_micro, plan, quant_sets[0])).vrc
    assert len(rep) == sum(1 for n in specs if n.startswith(keep[:2]))  # the encoder's Linears
    assert all(name.startswith("image_encoder.") for name in rep)
    assert all(r.error_after <= r.error_before for r in rep.values())
    total_before = sum(r.error_before for r in rep.values())
    assert sum(r.error_after for r in rep.values()) < total_before

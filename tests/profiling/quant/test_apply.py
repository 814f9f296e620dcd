"""apply_plan on the micro models: copies, explicit attention, fidelity ordering, bad plans."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from profiling.attention import attention_modules
from profiling.errors import BadInput
from profiling.models.video_step import track_frames
from profiling.quant.apply import apply_plan, report_of
from profiling.quant.attn import install_explicit_forward
from profiling.quant.modules import ActQuantizer, PairQuantizer, QuantLinear
from profiling.quant.observers import hook_count
from profiling.quant.plan import QuantPlan, plan_from_json, uniform_plan
from profiling.quant.spec import PerChannel, QuantSpec


def _explicit(model: nn.Module) -> nn.Module:
    out = copy.deepcopy(model)
    for name, mod in attention_modules(out).items():
        pair = PairQuantizer(nn.Identity(), nn.Identity())
        install_explicit_forward(name, mod, pair, copy.deepcopy(pair))
    return out


@pytest.mark.parametrize("fixture", ["sam2_micro", "sam_micro"])
def test_explicit_attention_matches_original(fixture: str, request, quant_sets, logits) -> None:
    loaded = request.getfixturevalue(fixture)
    ref = logits(loaded, loaded.module, quant_sets[1])
    got = logits(loaded, _explicit(loaded.module), quant_sets[1])
    for a, b in zip(ref, got):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


@torch.no_grad()
def test_explicit_rope_memory_attention_matches(sam2_micro) -> None:
    pixels = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    coords, labels = torch.tensor([[[100.0, 120.0]]]), torch.ones(1, 1, dtype=torch.int32)
    ref = track_frames(sam2_micro.module, pixels, coords, labels, n_frames=2)
    got = track_frames(_explicit(sam2_micro.module), pixels, coords, labels, n_frames=2)
    assert torch.allclose(ref[-1]["pred_masks"], got[-1]["pred_masks"], atol=1e-4, rtol=1e-4)


def test_copy_leaves_original_untouched(sam2_micro, quant_sets) -> None:
    before = {k: v.clone() for k, v in sam2_micro.module.state_dict().items()}
    plan = uniform_plan(sam2_micro.module, "w4a8")
    q = apply_plan(sam2_micro, plan, quant_sets[0])
    assert q is not sam2_micro.module and hook_count(q) == 0
    assert hook_count(sam2_micro.module) == 0
    after = sam2_micro.module.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not any(isinstance(m, ActQuantizer) for m in sam2_micro.module.modules())
    layer = "image_encoder.trunk.blocks.0.attn.qkv"
    assert isinstance(dict(q.named_modules())[layer], QuantLinear)
    assert report_of(q).calib_images == 2


def test_empty_plan_is_identity(sam_micro, quant_sets, logits) -> None:
    q = apply_plan(sam_micro, QuantPlan())
    for a, b in zip(
        logits(sam_micro, sam_micro.module, quant_sets[1]), logits(sam_micro, q, quant_sets[1])
    ):
        assert torch.equal(a, b)


def test_uniform_plan_keeps_ptq4sam_float_layers(sam2_micro) -> None:
    plan = uniform_plan(sam2_micro.module, "w4a8")
    names = set(plan.specs)
    assert "image_encoder.trunk.blocks.0.attn.qkv" in names
    assert "image_encoder.trunk.blocks.0.attn.qk_matmul" in names
    assert any(n.startswith("memory_attention.") for n in names)
    assert any(n.startswith("memory_encoder.") for n in names)
    for kept in (
        "patch_embed",
        "prompt_encoder",
        "output_upscaling",
        "iou_prediction_head",
        "output_hypernetworks_mlps",
        "pred_obj_score_head",
        "obj_ptr_proj",
    ):
        assert not any(kept in n for n in names), kept
    assert plan.specs["image_encoder.trunk.blocks.0.attn.qk_matmul"] == QuantSpec(16, 8)
    assert not any(n.endswith("_matmul") for n in uniform_plan(sam2_micro.module, "w4a16").specs)


def test_conv_transpose_is_per_output_channel(sam2_micro) -> None:
    name = "sam_mask_decoder.output_upscaling.0"
    q = apply_plan(sam2_micro, {name: "w4a16"})
    mod = dict(q.named_modules())[name]
    assert isinstance(mod, nn.ConvTranspose2d)
    assert mod.weight_scale.shape == (mod.weight.shape[1],)


def test_iou_falls_as_bits_fall(sam2_micro, quant_sets, logits, mask_iou) -> None:
    held = quant_sets[1]  # weight-only plans: no calibration pass needed
    ref = logits(sam2_micro, sam2_micro.module, held)
    ious = {}
    for w in (8, 4, 2):
        q = apply_plan(sam2_micro, uniform_plan(sam2_micro.module, f"w{w}a16"))
        ious[w] = mask_iou(ref, logits(sam2_micro, q, held))
    assert ious[8] >= 0.95
    assert ious[8] >= ious[4] >= ious[2], ious
    assert ious[2] < 0.95


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        ({"no.such.layer": "w4a8"}, "name"),
        ({"image_encoder.trunk.blocks.0.attn.qk_matmul": "w4a8"}, "w_bits"),
        (
            {"image_encoder.trunk.blocks.0.attn.qkv": QuantSpec(4, 8, a_granularity=PerChannel())},
            "a_granularity",
        ),
        ({"image_encoder.trunk.blocks.0.attn.qkv": "w7a8"}, "w_bits"),
        ({"image_encoder.trunk.blocks.0.attn.qkv": "w4a8"}, "a_bits"),  # no calibration data
    ],
)
def test_bad_plans_name_layer_and_field(sam2_micro, plan: dict, field: str) -> None:
    with pytest.raises(BadInput) as err:
        apply_plan(sam2_micro, plan)
    msg = str(err.value)
    assert field in msg and ("layer" in msg)


def test_plan_json_round_trip_and_errors() -> None:
    plan = plan_from_json({"choices": {"a.b": "w4a8"}, "options": {"agq": True}})
    assert plan.specs["a.b"] == QuantSpec(4, 8) and plan.options.agq
    again = plan_from_json(plan.to_dict())
    assert again == plan
    with pytest.raises(BadInput, match="'a.b'.*w_bits"):
        plan_from_json({"choices": {"a.b": "w9a8"}})
    with pytest.raises(BadInput, match="choices"):
        plan_from_json({"layers": {}})
    with pytest.raises(BadInput, match="options"):
        plan_from_json({"choices": {}, "options": {"gptq": True}})

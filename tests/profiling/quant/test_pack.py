"""Packed artifact: predicted bytes == measured bytes, and the loader reproduces apply_plan."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from profiling.errors import BadInput
from profiling.models import ModelSpec
from profiling.quant.apply import apply_plan
from profiling.quant.load import load_artifact, read_metadata
from profiling.quant.pack import measured_bytes, predict_bytes, save_artifact, size_breakdown
from profiling.quant.plan import PlanOptions, QuantPlan, uniform_plan
from profiling.quant.spec import PerGroup, PerTensor, QuantSpec
from solvers import sizes

INFO = {"name": "sam2-micro", "image_size": 256}


def _mixed(model: torch.nn.Module) -> QuantPlan:
    base = uniform_plan(model, "w4a16").specs
    specs = dict(base)
    names = sorted(base)
    specs[names[0]] = QuantSpec(2, 16, w_granularity=PerGroup(32))
    specs[names[1]] = QuantSpec(3, 16, w_symmetric=True)
    specs[names[2]] = QuantSpec(8, 16, w_granularity=PerTensor(), w_method="mse")
    specs[names[3]] = QuantSpec(5, 16, w_method="percentile")
    specs[names[4]] = QuantSpec(6, 16)
    for name in names[5::7]:
        specs.pop(name)  # some layers stay in float
    return QuantPlan(specs)


@pytest.mark.parametrize("candidate", ["w8a16", "w4a16", "w2a16", "mixed"])
def test_predicted_equals_measured(sam2_micro, tmp_path: Path, candidate: str) -> None:
    model = sam2_micro.module
    plan = _mixed(model) if candidate == "mixed" else uniform_plan(model, candidate)
    path = tmp_path / "a.safetensors"
    measured = save_artifact(apply_plan(sam2_micro, plan), plan, path, INFO)
    predicted = predict_bytes(model, plan)
    assert abs(measured - predicted) <= 0.005 * predicted
    assert measured == measured_bytes(path) == predicted  # exact, in fact
    floats = sum(t.numel() for t in model.state_dict().values())
    assert predicted < sizes.float_bytes(floats, "bfloat16")


def test_size_breakdown_counts_activation_params(sam2_micro) -> None:
    plan = uniform_plan(sam2_micro.module, "w8a8")
    parts = size_breakdown(sam2_micro.module, plan)
    weight_layers = sum(1 for n in plan.specs if not n.endswith("_matmul"))
    sites = len(plan.specs) - weight_layers
    assert parts["activation_params"] == 5 * (weight_layers + 2 * sites)
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")


def test_loader_reproduces_apply_plan(sam2_micro, quant_sets, tmp_path: Path, logits) -> None:
    calib, held = quant_sets
    plan = _mixed(sam2_micro.module)
    specs = dict(plan.specs)
    specs["image_encoder.trunk.blocks.0.attn.qkv"] = QuantSpec(4, 8)
    specs["image_encoder.trunk.blocks.0.attn.sv_matmul"] = QuantSpec(16, 6)
    specs["sam_mask_decoder.transformer.layers.0.self_attn.qk_matmul"] = QuantSpec(
        16, 8, a_symmetric=True
    )
    plan = QuantPlan(specs, PlanOptions(agq=True))
    qmodel = apply_plan(sam2_micro, plan, calib)
    ref = logits(sam2_micro, qmodel, held)
    exact = tmp_path / "f32.safetensors"
    save_artifact(qmodel, plan, exact, INFO, float_dtype="float32")
    loaded = load_artifact(exact, ModelSpec("sam2-micro"))
    for a, b in zip(ref, logits(sam2_micro, loaded, held)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    small = tmp_path / "bf16.safetensors"
    save_artifact(qmodel, plan, small, INFO)
    again = load_artifact(small)  # architecture from the metadata
    for a, b in zip(ref, logits(sam2_micro, again, held)):
        assert (a - b).abs().max() < 0.05 * a.abs().max()
    meta = read_metadata(small)
    assert meta["float_dtype"] == "bfloat16" and meta["plan"]["options"]["agq"]
    assert meta["activations"]["image_encoder.trunk.blocks.0.attn.sv_matmul.x"]["kind"] == "log2"


def test_loader_rejects_foreign_files(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "x.safetensors"
    save_file({"a": torch.zeros(2)}, str(path), metadata={"format": "other"})
    with pytest.raises(BadInput, match="format"):
        load_artifact(path)

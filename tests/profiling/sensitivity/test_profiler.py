"""The profiler: exact KL by hand, caching and resume, synergy, WAIS, Mix-QSAM, problems."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from profiling.calibration import load_source, make_sets
from profiling.models import ModelSpec, build_model
from profiling.models.adapter import TaskAdapter
from profiling.quant.primitives import fake_quantize_weight
from profiling.quant.spec import QuantSpec
from profiling.sensitivity import Cancelled, ProfileRequest, problem_from_profile, run_profile
from profiling.sensitivity.divergence import bernoulli_kl, pixel_distribution_kl
from profiling.sensitivity.mixqsam import importance_and_synergy
from profiling.sensitivity.store import UnitStore

LAYERS = [
    "image_encoder.trunk.blocks.1.mlp.layers.0",
    "image_encoder.trunk.blocks.3.attn.qkv",
    "image_encoder.neck.convs.1.conv",
    "sam_mask_decoder.transformer.layers.0.mlp.layers.0",
    "sam_mask_decoder.output_upscaling.0",
]


def _req(metric: str, **kw) -> ProfileRequest:
    kw.setdefault("candidates", ("w8a8", "w4a8", "w2a16"))
    kw.setdefault("images", 1)
    kw.setdefault("options", {"layers": LAYERS})
    return ProfileRequest(ModelSpec("sam2-micro"), metric=metric, **kw)


def test_divergences_by_hand() -> None:
    ref = torch.tensor([[0.0, 2.0]])
    out = torch.tensor([[1.0, 2.0]])
    p, q = 0.5, torch.sigmoid(torch.tensor(1.0)).item()
    import math

    kl0 = p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))
    assert bernoulli_kl(ref, out) == pytest.approx(kl0 / 2, rel=1e-5)
    assert bernoulli_kl(ref, ref) == pytest.approx(0.0, abs=1e-9)
    a, b = torch.tensor([[[0.0, 0.0]]]), torch.tensor([[[0.0, 100.0]]])
    # distributions [0.5, 0.5] vs [1/3, 2/3] (sigmoid(100) ≈ 1)
    expect = 0.5 * math.log(0.5 / (1 / 3)) + 0.5 * math.log(0.5 / (2 / 3))
    assert pixel_distribution_kl(a, b) == pytest.approx(expect, rel=1e-4)


def test_kl_for_one_layer_equals_direct_computation(tmp_path) -> None:
    layer = "image_encoder.trunk.blocks.1.mlp.layers.0"
    prof = run_profile(_req("kl", options={"layers": [layer]}), tmp_path)
    got = prof.layers[layer]["weight"]["4"]
    # written out: quantize that layer alone in a copy, run every prompt batch, mean KL
    loaded = build_model(ModelSpec("sam2-micro"))
    pert = copy.deepcopy(loaded)
    mod = dict(pert.module.named_modules())[layer]
    mod.weight.data = fake_quantize_weight(mod.weight.data, QuantSpec(w_bits=4))
    calib, _ = make_sets(load_source(), holdout=4, n_calib=1)
    kls = []
    with torch.no_grad():
        for s in calib.samples:
            for p in s.prompts:
                ref = TaskAdapter(loaded)(s.image.pixels, p).logits
                out = TaskAdapter(pert)(s.image.pixels, p).logits
                pr, qr = torch.sigmoid(ref.double()), torch.sigmoid(out.double())
                kl = pr * (pr / qr).log() + (1 - pr) * ((1 - pr) / (1 - qr)).log()
                kls.append(kl.mean().item())
    assert got == pytest.approx(sum(kls) / len(kls), rel=1e-3, abs=1e-10)
    assert prof.layers[layer]["weight"]["2"] > got > prof.layers[layer]["weight"]["8"]


def test_cache_and_uncached_rerun_agree(tmp_path) -> None:
    a = run_profile(_req("kl"), tmp_path / "a")
    b = run_profile(_req("kl", options={"layers": LAYERS, "cache": False}), tmp_path / "b")
    for name in LAYERS:
        for bits in ("8", "4", "2"):
            assert a.layers[name]["weight"][bits] == pytest.approx(
                b.layers[name]["weight"][bits], rel=1e-4, abs=1e-12
            )


def test_repeated_request_hits_the_cache(tmp_path) -> None:
    first = run_profile(_req("wais"), tmp_path)
    again = run_profile(_req("wais"), tmp_path)
    assert first.stats["cache_hit"] is False and again.stats["cache_hit"] is True
    assert first.key == again.key and first.scores == again.scores
    other = run_profile(_req("wais", seed=1), tmp_path)
    assert other.key != first.key


def test_killed_run_resumes_without_recomputing(tmp_path) -> None:
    calls = {"n": 0}

    def stop_after_two() -> bool:
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled):
        run_profile(_req("kl"), tmp_path, should_stop=stop_after_two)
    key = _req("kl").key(build_model(ModelSpec("sam2-micro")).weights_hash)
    store = UnitStore(tmp_path / key)
    assert len(store.computed_units()) == 2
    resumed = run_profile(_req("kl"), tmp_path)
    assert resumed.stats["resumed_units"] == 2 and resumed.stats["computed_units"] == 3
    units = store.computed_units()
    assert len(units) == len(set(units)) == len(LAYERS)
    fresh = run_profile(_req("kl"), tmp_path / "fresh")
    assert json.dumps(fresh.layers, sort_keys=True) == json.dumps(resumed.layers, sort_keys=True)


def test_synergy_consecutive_vs_unrelated(tmp_path) -> None:
    pairs_layers = [
        "image_encoder.trunk.blocks.1.mlp.layers.0",
        "image_encoder.trunk.blocks.1.mlp.layers.1",
        "sam_mask_decoder.iou_prediction_head.layers.0",
    ]
    prof = run_profile(
        _req("synergy", candidates=("w2a16",), options={"layers": pairs_layers}), tmp_path
    )
    inter = {(p["a"], p["b"]): abs(p["interaction"]["2,2"]) for p in prof.pairs}
    consecutive = inter[(pairs_layers[0], pairs_layers[1])]
    unrelated = inter[(pairs_layers[1], pairs_layers[2])]  # IoU head never feeds the masks
    assert consecutive > 1e-9
    assert unrelated < 1e-3 * consecutive


def test_mixqsam_normalisation_by_hand() -> None:
    raw = {"a": [1.0, 2.0], "b": [3.0, 2.0]}
    omega, syn = importance_and_synergy(raw, ["a", "b"])
    assert omega == pytest.approx({"a": (0.25 + 0.5) / 2, "b": (0.75 + 0.5) / 2})
    import math

    expect = math.log1p((1 / (0.5 + 1e-6) + 1 / (0.0 + 1e-6)) / 2)
    assert syn[0]["value"] == pytest.approx(expect)


def test_problem_from_profile_pins_unmeasured_layers(tmp_path) -> None:
    from profiling.inventory import build_inventory
    from solvers import solve

    prof = run_profile(_req("wais", options={}), tmp_path)
    inv = build_inventory(build_model(ModelSpec("sam2-micro"))).to_json()
    prob = problem_from_profile(prof, inv, {"avg_bits": 5})
    names = {x.name for x in prob.layers}
    assert "memory_attention.layers.0.self_attn.q_proj" in names  # pinned, not measured
    assert prob.extra["meta"]["pinned"]["memory_attention.layers.0.self_attn.q_proj"] == "w8a8"
    plan = solve(prob, "cpsat")
    assert plan.status in ("optimal", "feasible")


def test_mixqsam_target_budgets_count_pinned_layers_at_their_pin(tmp_path) -> None:
    """Mix-QSAM's own budgets (P·b bits, Σ MACs·b² BOPs) are about the measured layers: the
    pinned ones are added at their pinned cost, so uniform b-bit stays feasible."""
    from profiling.inventory import build_inventory
    from solvers import solve

    prof = run_profile(_req("mixqsam", options={}, images=1), tmp_path)
    inv = build_inventory(build_model(ModelSpec("sam2-micro"))).to_json()
    opts = {"bits": (2, 4, 8), "target_bits": 4}
    prob = problem_from_profile(prof, inv, {}, options=opts)
    pinned = set(prob.extra["meta"]["pinned"])
    assert pinned and prob.budget["bops"] is not None
    uniform = {x.name: ("w8a8" if x.name in pinned else "w4a4") for x in prob.layers}
    totals = {"bops": 0.0, "weight_bits": 0.0}
    for layer in prob.layers:
        opt = layer.options[layer.option_ids().index(uniform[layer.name])]
        for key in totals:
            totals[key] += opt.costs[key]
    assert totals["bops"] == pytest.approx(prob.budget["bops"], rel=1e-9)
    assert totals["weight_bits"] == pytest.approx(prob.budget["weight_bits"], rel=1e-9)
    plan = solve(prob, "cpsat")
    assert plan.status == "optimal"
    assert plan.totals["bops"] <= prob.budget["bops"] * (1 + 1e-9)

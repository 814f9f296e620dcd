"""Attention matmul sites as plan layers: options, profiling (kl, fisher_kl), costs, a solver
plan on sam2-micro applied with exactly its sites quantized, BIG and AGQ on those sites."""

from __future__ import annotations

import copy

import pytest
import torch

from profiling.attention import check_site_option, site_options
from profiling.calibration import CalibrationSet, load_source, make_sets
from profiling.errors import BadInput
from profiling.inventory import build_inventory
from profiling.models import ModelSpec
from profiling.quant.apply import apply_plan, report_of
from profiling.quant.modules import ActQuantizer, LogQuantizer, PairQuantizer
from profiling.quant.plan import PlanOptions, QuantPlan, plan_from_json
from profiling.quant.ptq4sam import big_supported, big_targets, flip_query_key
from profiling.quant.spec import QuantSpec, parse_option
from profiling.sensitivity import ProfileRequest, problem_from_profile, run_profile
from solvers import solve

ATTNS = [
    "image_encoder.trunk.blocks.0.attn",  # Hiera, fused qkv, no q-pooling
    "sam_mask_decoder.transformer.layers.0.self_attn",  # split projections
    "sam_mask_decoder.transformer.layers.0.cross_attn_image_to_token",
]
SITES = [f"{a}.{s}" for a in ATTNS for s in ("qk_matmul", "sv_matmul")]
WEIGHT = "image_encoder.trunk.blocks.0.mlp.layers.0"


@pytest.fixture(scope="module")
def quant_sets() -> tuple[CalibrationSet, CalibrationSet]:
    """Two calibration photos, one point prompt each (and one held out)."""
    return make_sets(load_source("shipped"), holdout=1, n_calib=2, n_points=1, n_boxes=0)


def _req(metric: str, **options) -> ProfileRequest:
    opts = {"layers": [WEIGHT, *SITES], "attention": True} | options
    return ProfileRequest(ModelSpec("sam2-micro"), metric, ("w8a8", "w4a8"), images=1, options=opts)


def test_site_option_ids() -> None:
    assert site_options("matmul_qk") == ["a8", "a6", "a4"]
    assert site_options("matmul_sv") == ["a8", "a6", "a4", "a8log", "a6log", "a4log"]
    assert site_options("matmul_qk", ["a16", "a4", "a4log"]) == ["a16", "a4"]
    assert check_site_option("matmul_sv", "a4log") == (4, True)
    for kind, bad in [("matmul_qk", "a4log"), ("matmul_sv", "a5"), ("matmul_sv", "w4a8")]:
        with pytest.raises(ValueError, match=f"option '{bad}' does not exist for a {kind}"):
            check_site_option(kind, bad)
    assert parse_option("a8") == QuantSpec(16, 8)
    assert parse_option("a4log") == QuantSpec(16, 4, a_log=True)
    assert parse_option("a4log").id == "w16a4log" and parse_option("w16a4log").a_log
    assert "a_log" not in QuantSpec(4, 8).to_dict()  # older specs read the same
    assert QuantSpec.from_dict(QuantSpec(16, 4, a_log=True).to_dict()).a_log


def test_bad_site_options_name_the_layer(sam2_micro) -> None:
    qk = "image_encoder.trunk.blocks.0.attn.qk_matmul"
    cases = [({qk: "a4log"}, "a_log"), ({qk: "w4a8"}, "w_bits"), ({qk: "a5"}, "a_bits")]
    for choices, field in cases:
        with pytest.raises(BadInput) as err:
            apply_plan(sam2_micro, plan_from_json({"choices": choices}))
        assert qk in str(err.value) and field in str(err.value)
    with pytest.raises(BadInput, match="attention_options: option 'a3' does not exist"):
        _req("kl", attention_options=["a8", "a3"])
    with pytest.raises(BadInput, match="attention_options: needs attention"):
        _req("kl", attention=False, attention_options=["a8"])


def test_big_flip_of_fused_qkv_keeps_the_output(sam2_micro) -> None:
    attn = copy.deepcopy(dict(sam2_micro.module.named_modules())[ATTNS[0]])
    x = torch.randn(1, 8, 8, attn.qkv.in_features)
    with torch.no_grad():
        before = attn(x)
        c = attn.qkv.out_features // 3
        flip_query_key(attn, torch.where(torch.rand(c) < 0.5, -1.0, 1.0))
        after = attn(x)
    torch.testing.assert_close(after, before, rtol=1e-4, atol=1e-5)
    mods = dict(sam2_micro.module.named_modules())
    assert not big_supported(mods["image_encoder.trunk.blocks.1.attn"])  # q-pooling
    assert not big_supported(mods["memory_attention.layers.0.self_attn"])  # RoPE
    got = big_targets(sam2_micro.module, sites=[f"{a}.qk_matmul" for a in ATTNS])
    assert set(ATTNS) <= set(got)  # plus PTQ4SAM's cross_attn_token_to_image ones
    assert all(n in ATTNS or n.endswith("cross_attn_token_to_image") for n in got)


@pytest.fixture(scope="module")
def profiles(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("attn-profiles")
    opts = {"attention_options": ["a16", "a8", "a4", "a4log"]}
    return {m: run_profile(_req(m, **opts), root) for m in ("kl", "fisher_kl")}


@pytest.mark.parametrize("metric", ["kl", "fisher_kl"])
def test_profiles_give_every_site_its_options(profiles, metric: str) -> None:
    prof = profiles[metric]
    assert set(prof.layers) == {WEIGHT, *SITES}
    for site in SITES:
        entry = prof.layers[site]
        want = ["a16", "a8", "a4"] + (["a4log"] if site.endswith("sv_matmul") else [])
        assert entry["kind"] == ("matmul_sv" if "sv_" in site else "matmul_qk")
        assert list(entry["options"]) == want
        assert entry["options"]["a16"] == 0.0 and all(v >= 0 for v in entry["options"].values())
    total = {o: sum(prof.layers[s]["options"][o] for s in SITES) for o in ("a8", "a4")}
    assert 0 < total["a8"] < total["a4"]
    without = ProfileRequest(ModelSpec("sam2-micro"), metric, ("w8a8", "w4a8"), images=1)
    assert _req(metric).key("h") != without.key("h")  # attention profiles are keyed apart


def test_site_costs_in_the_problem(sam2_micro, profiles) -> None:
    inv = build_inventory(sam2_micro).to_json()
    macs = {x["name"]: x["macs"] for x in inv["layers"]}
    problem = problem_from_profile(profiles["kl"], inv, {"memory_bytes": 1e9})
    layers = {x.name: x for x in problem.layers}
    for site in SITES:
        opts = {o.id: o.costs for o in layers[site].options}
        assert opts["a4"]["bops"] == macs[site] * 16 and opts["a16"]["bops"] == macs[site] * 256
        assert opts["a16"]["memory_bytes"] == 0 and opts["a8"]["memory_bytes"] > 0
        assert opts["a4"]["weight_bits"] == 0
    hw = problem_from_profile(profiles["kl"], inv, {"memory_bytes": 1e9}, "apple_a17_pro")
    sv = next(x for x in hw.layers if x.name == SITES[1])
    assert sv.option_ids() == ["a16", "a8"]  # the A17 runs only int8 and fp16
    assert all(o.costs["latency_ms"] > 0 for o in sv.options)


def test_solver_plan_quantizes_exactly_its_sites(sam2_micro, profiles, quant_sets) -> None:
    inv = build_inventory(sam2_micro).to_json()
    loose = problem_from_profile(profiles["fisher_kl"], inv, {"memory_bytes": 1e9})
    top = solve(loose, "cpsat").totals["bops"]
    site_bops = sum(o.costs["bops"] for x in loose.layers if x.name in SITES for o in x.options[:1])
    budget = {"bops": top - 0.3 * site_bops}  # some sites must leave float, not all need to
    plan = solve(problem_from_profile(profiles["fisher_kl"], inv, budget), "cpsat")
    assert plan.status in ("optimal", "feasible")
    chosen = {n: c for n, c in plan.choices.items() if n in SITES and c != "a16"}
    assert chosen, plan.choices
    qplan = plan_from_json({"choices": plan.choices}, PlanOptions(big=True))
    qmodel = apply_plan(sam2_micro, qplan, quant_sets[0])
    named = dict(qmodel.named_modules())
    quantized = {
        f"{a}.{s}"
        for a in named
        for s in ("qk_matmul", "sv_matmul")
        if isinstance(named.get(f"{a}.{s}"), PairQuantizer)
        and isinstance(named[f"{a}.{s}"].x, ActQuantizer)
        and named[f"{a}.{s}"].x.enabled
    }
    assert quantized == set(chosen)
    logs = {n.removesuffix(".x") for n, m in named.items() if isinstance(m, LogQuantizer)}
    assert logs == {n for n, c in chosen.items() if c.endswith("log")}
    rep = report_of(qmodel)
    wanted = {n.rsplit(".", 1)[0] for n in chosen if n.endswith("qk_matmul")}
    assert wanted <= set(rep.big)  # BIG examined every attention whose keys the plan quantizes
    assert set(rep.agq) == {n for n, c in chosen.items() if c.endswith("log")}


def test_agq_flag_turns_every_quantized_sv_site_log2(sam2_micro, quant_sets) -> None:
    specs = {s: QuantSpec(16, 8) for s in SITES}
    qmodel = apply_plan(sam2_micro, QuantPlan(specs, PlanOptions(agq=True)), quant_sets[0])
    assert set(report_of(qmodel).agq) == {s for s in SITES if s.endswith("sv_matmul")}


def test_fisher_on_sites_alone(tmp_path) -> None:
    """``layers`` naming only sites: no weight-layer passes, every named site measured."""
    prof = run_profile(_req("fisher_kl", layers=SITES[:2]), tmp_path)
    assert set(prof.layers) == set(SITES[:2]) and prof.unmeasured == []
    assert all(v > 0 for v in prof.layers[SITES[1]]["options"].values())

"""Fisher-KL: the per-layer sum by hand, token sampling, and rank agreement with exact KL."""

from __future__ import annotations

import json

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from profiling.errors import BadInput
from profiling.models import ModelSpec, build_model
from profiling.quant.primitives import choose_qparams, fake_quantize
from profiling.quant.spec import PerTensor
from profiling.sensitivity import Cancelled, ProfileRequest, run_profile
from profiling.sensitivity.fisher import delta_output, layer_terms
from profiling.sensitivity.perturb import quantized_weight
from profiling.sensitivity.request import sample_fraction
from profiling.sensitivity.store import UnitStore

W_BITS, A_BITS, RANGE = [8, 4, 2, 16], [8, 4, 16], (-3.0, 3.0)


def _by_hand(mod: nn.Module, calls: list) -> dict[str, dict[str, float]]:
    """½ Σ over every output element of g²·Δh², Δh from a full re-run of the layer."""
    out: dict[str, dict[str, float]] = {"weight": {}, "act": {}}
    with torch.no_grad():
        for b in (8, 4, 2):
            dw = quantized_weight(mod, b) - mod.weight
            out["weight"][str(b)] = (
                sum(float((g.pow(2) * delta_output(mod, x, dw=dw).pow(2)).sum()) for x, g in calls)
                / 2
            )
        for b in (8, 4):
            s, z = choose_qparams(torch.tensor(RANGE), b, False, PerTensor())
            out["act"][str(b)] = (
                sum(
                    float(
                        (g.pow(2) * (mod(fake_quantize(x, s, z, b, False)) - mod(x)).pow(2)).sum()
                    )
                    for x, g in calls
                )
                / 2
            )
    return out


def _calls(mod: nn.Module, shapes: list[tuple[int, ...]], seed: int = 0) -> list:
    gen = torch.Generator().manual_seed(seed)
    calls = []
    for shape in shapes:
        x = torch.randn(shape, generator=gen)
        with torch.no_grad():
            out = mod(x)
        calls.append((x, torch.randn(out.shape, generator=gen)))
    return calls


@pytest.mark.parametrize(
    "mod, shapes",
    [
        (nn.Linear(24, 40), [(2, 30, 24), (50, 24)]),
        (nn.Conv2d(6, 10, 3, stride=2, padding=1), [(2, 6, 12, 14)]),
        (nn.Conv2d(6, 10, 1), [(1, 6, 9, 9)]),
        (nn.ConvTranspose2d(8, 4, 2, stride=2), [(1, 8, 5, 6)]),
        (nn.Conv2d(8, 8, 3, padding=1, groups=4), [(1, 8, 7, 7)]),
    ],
    ids=["linear", "conv3x3s2", "conv1x1", "convT", "grouped"],
)
def test_every_token_equals_the_sum_by_hand(mod: nn.Module, shapes: list) -> None:
    torch.manual_seed(1)
    calls = _calls(mod, shapes)
    got = layer_terms(mod, calls, W_BITS, A_BITS, RANGE, fraction=1.0)
    want = _by_hand(mod, calls)
    assert set(got["weight"]) == {"8", "4", "2"} and set(got["act"]) == {"8", "4"}
    for kind in ("weight", "act"):
        for b, v in want[kind].items():
            assert got[kind][b] == pytest.approx(v, rel=1e-4), (kind, b)
    assert got["weight"]["2"] > got["weight"]["4"] > got["weight"]["8"] > 0


def test_sampled_tokens_estimate_the_full_sum() -> None:
    torch.manual_seed(2)
    mod = nn.Linear(48, 64)
    calls = _calls(mod, [(1, 64, 64, 48)])  # 4,096 tokens
    calibrated = (-6.0, 6.0)  # covers the inputs, as a range calibrated on them does
    full = layer_terms(mod, calls, W_BITS, A_BITS, calibrated, fraction=1.0)
    gen = torch.Generator().manual_seed(0)
    part = layer_terms(mod, calls, W_BITS, A_BITS, calibrated, fraction=0.125, gen=gen)
    for kind in ("weight", "act"):
        for b, v in full[kind].items():
            assert part[kind][b] == pytest.approx(v, rel=0.1), (kind, b)
            assert part[kind][b] != v  # really sampled
    # seeded: the same generator seed gives the same estimate
    again = layer_terms(
        mod, calls, W_BITS, A_BITS, calibrated, 1, 0.125, torch.Generator().manual_seed(0)
    )
    assert again == part
    # few tokens: every token is used whatever the fraction
    small = _calls(mod, [(100, 48)])
    assert layer_terms(mod, small, W_BITS, A_BITS, RANGE, fraction=0.01) == layer_terms(
        mod, small, W_BITS, A_BITS, RANGE, fraction=1.0
    )


@pytest.mark.parametrize("bad", [0, -0.5, 1.5, "half", True])
def test_bad_sample_fraction_is_refused(bad: object) -> None:
    with pytest.raises(BadInput, match="fisher_sample"):
        sample_fraction({"fisher_sample": bad})
    with pytest.raises(BadInput, match="fisher_sample"):
        ProfileRequest(ModelSpec("sam2-micro"), "fisher_kl", options={"fisher_sample": bad})


@pytest.mark.slow
def test_fisher_agrees_with_exact_kl_in_rank_on_sam2_micro(tmp_path) -> None:
    """Issue 4: Spearman ≥ 0.8 at w4 over every measured layer of sam2-micro."""
    spec = ModelSpec("sam2-micro")
    fisher = run_profile(ProfileRequest(spec, "fisher_kl", ("w4a16",), images=2), tmp_path)
    exact = run_profile(ProfileRequest(spec, "kl", ("w4a16",), images=2), tmp_path)
    names = sorted(exact.layers)
    assert names == sorted(fisher.layers) and len(names) > 20
    rho = spearmanr(
        [exact.layers[n]["weight"]["4"] for n in names],
        [fisher.layers[n]["weight"]["4"] for n in names],
    ).correlation
    print(f"sam2-micro fisher_kl vs kl at w4: Spearman {rho:.3f} over {len(names)} layers")
    assert rho >= 0.8


def test_kept_weight_changes_give_the_same_terms() -> None:
    from profiling.sensitivity.fisher import WeightChanges

    torch.manual_seed(3)
    lin, conv = nn.Linear(16, 8), nn.Conv2d(4, 6, 3, padding=1, groups=2)
    keep, none = WeightChanges(), WeightChanges(0)
    for name, mod, shapes in (("lin", lin, [(40, 16)]), ("conv", conv, [(1, 4, 6, 6)])):
        calls = _calls(mod, shapes)
        first = layer_terms(
            mod, calls, W_BITS, A_BITS, RANGE, changes=keep.get(name, mod, [8, 4, 2])
        )
        assert name in keep.kept and not none.kept
        again = layer_terms(
            mod, calls, W_BITS, A_BITS, RANGE, changes=keep.get(name, mod, [8, 4, 2])
        )
        assert first == again == layer_terms(mod, calls, W_BITS, A_BITS, RANGE)
        none.get(name, mod, [8, 4, 2])
        assert not none.kept and none.used == 0


@pytest.mark.parametrize("stop_after", [2, 4])  # inside stage 1 (images) / stage 2 (activations)
def test_fisher_killed_run_resumes_without_recomputing(tmp_path, stop_after: int) -> None:
    """Both stages checkpoint per image: a stopped run resumes to the identical profile, no unit
    is computed twice, and the kept activation rows are deleted once used."""
    req = ProfileRequest(ModelSpec("sam2-micro"), "fisher_kl", ("w8a8", "w4a16"), images=3)
    calls = {"n": 0}

    def stop() -> bool:
        calls["n"] += 1
        return calls["n"] > stop_after

    with pytest.raises(Cancelled):
        run_profile(req, tmp_path, should_stop=stop)
    store = UnitStore(tmp_path / req.key(build_model(req.model).weights_hash))
    assert len(store.computed_units()) == stop_after
    assert len(list((store.root / "fisher-rows").glob("*.pt"))) == min(stop_after, 3) - max(
        stop_after - 3, 0
    )
    if stop_after == 4:  # a rows file lost or damaged: its seeded rows are made again
        (store.root / "fisher-rows" / "1.pt").write_bytes(b"not a tensor file")
    resumed = run_profile(req, tmp_path)
    assert resumed.stats["resumed_units"] == stop_after
    assert resumed.stats["computed_units"] == 6 - stop_after
    units = store.computed_units()
    assert len(units) == len(set(units)) == 6
    assert not (store.root / "fisher-rows").exists()
    fresh = run_profile(req, tmp_path / "fresh")
    assert json.dumps(fresh.layers, sort_keys=True) == json.dumps(resumed.layers, sort_keys=True)
    assert fresh.unmeasured == resumed.unmeasured and len(fresh.unmeasured) > 0


def test_fisher_ranges_equal_the_float_pass(tmp_path) -> None:
    """fisher_kl records activation ranges in its own forward; they are the float pass's."""
    from profiling.sensitivity.fisher import _Capture, _image_grads
    from profiling.sensitivity.runner import _context

    req = ProfileRequest(ModelSpec("sam2-micro"), "kl", ("w8a8",), images=2)
    ctx, _ = _context(req, UnitStore(tmp_path), "cpu", None, None)
    mods = {n: ctx.modules()[n] for n in ctx.candidate_layers()}
    caps: list[_Capture] = [_image_grads(ctx, i, mods) for i in range(2)]
    merged: dict[str, tuple[float, float]] = {}
    for cap in caps:
        for n, (lo, hi) in cap.ranges.items():
            a, b = merged.get(n, (lo, hi))
            merged[n] = (min(a, lo), max(b, hi))
    assert set(merged) == set(ctx.weight_layers())
    for n in merged:
        assert merged[n] == pytest.approx(ctx.ranges[n], rel=1e-5, abs=1e-6)

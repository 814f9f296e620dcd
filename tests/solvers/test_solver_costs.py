"""Costs: candidate ids, bytes from the one size function, BOPs, latency tables and rooflines."""

from __future__ import annotations

import json
from importlib import resources

import pytest

from solvers import sizes
from solvers.costs import (
    HardwareProfile,
    LayerDesc,
    average_bits,
    candidates_for,
    cost_table,
    hardware_profiles,
    latency_from_table,
    load_hardware,
    memory_bytes,
    option_costs,
    parse_candidate,
)

QKV = LayerDesc(
    "blocks.0.attn.qkv",
    "linear",
    numel=96 * 288,
    channels=288,
    bias_numel=288,
    macs=96 * 288 * 4096,
    act_numel=4096 * (96 + 288),
)
SOFTMAX = LayerDesc("blocks.0.attn.softmax", "softmax", numel=0, macs=0, act_numel=4096 * 64)


@pytest.mark.parametrize(
    "cid, bits", [("w4a8", (4, 8)), ("w16a16", (16, 16)), ("w2a4", (2, 4)), ("w8a16", (8, 16))]
)
def test_parse_candidate(cid: str, bits: tuple[int, int]) -> None:
    assert parse_candidate(cid) == bits


@pytest.mark.parametrize(
    "bad, message",
    [
        ("x4a8", "expected 'w<bits>a<bits>'"),
        ("w4", "expected"),
        ("W4A8", "expected"),
        ("w9a8", "weight bits must be 1..8 or 16, got 9"),
        ("w4a32", "activation bits must be 1..8 or 16, got 32"),
        ("w0a8", "weight bits"),
    ],
)
def test_parse_candidate_errors(bad: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_candidate(bad)


def test_memory_bytes_is_the_size_function_plus_bias_and_qparams() -> None:
    expected = (96 * 288 * 4 + 7) // 8 + 288 * (4 + 1) + 288 * 2 + 5
    assert memory_bytes(QKV, 4, 8) == expected
    assert (
        memory_bytes(QKV, 4, 8)
        == sizes.weight_bytes(QKV.numel, 288, 4) + sizes.float_bytes(288) + 5
    )
    assert memory_bytes(QKV, 16, 16) == (96 * 288 + 288) * 2
    assert memory_bytes(SOFTMAX, 16, 8) == 5 and memory_bytes(SOFTMAX, 16, 16) == 0


def test_option_costs_and_average_bits() -> None:
    costs = option_costs(QKV, "w4a8")
    assert costs["bops"] == QKV.macs * 32
    assert costs["weight_bits"] == QKV.numel * 4
    assert "latency_ms" not in costs
    other = LayerDesc("proj", "linear", numel=3 * QKV.numel, channels=96)
    assert (
        average_bits(
            [QKV, other, SOFTMAX], {QKV.name: "w8a8", "proj": "w4a8", SOFTMAX.name: "w16a8"}
        )
        == 5.0
    )


def test_latency_table_lookups_name_what_is_missing() -> None:
    table = {"blocks.0.attn.qkv": {"w8a8": 0.31, "w4a8": 0.22}}
    assert latency_from_table(table, "blocks.0.attn.qkv", "w4a8") == 0.22
    with pytest.raises(ValueError, match="no entry for layer 'proj'"):
        latency_from_table(table, "proj", "w4a8")
    with pytest.raises(ValueError, match="has no option 'w2a8'; has w8a8, w4a8"):
        latency_from_table(table, "blocks.0.attn.qkv", "w2a8")
    assert option_costs(QKV, "w8a8", latency_table=table)["latency_ms"] == 0.31


def test_shipped_profiles_load_and_cite_their_sources() -> None:
    names = hardware_profiles()
    assert {"nvidia_t4", "nvidia_a100_40gb", "jetson_orin_nano_8gb", "apple_a17_pro"} <= set(names)
    for name in names:
        profile = load_hardware(name)
        assert profile.bandwidth_gbps > 0 and all(v > 0 for v in profile.peak_tops.values())
        raw = json.loads((resources.files("solvers") / "hardware" / f"{name}.json").read_text())
        for entry in [*raw["peak_tops"].values(), raw["memory_bandwidth_gbps"]]:
            assert entry["source"].split(":")[0] in {
                "datasheet",
                "derived from datasheet",
                "vendor press release",
                "estimate",
            }
    with pytest.raises(ValueError, match="unknown hardware profile 'tpu'; known: apple_a17_pro"):
        load_hardware("tpu")


def test_roofline_latency_is_max_of_compute_and_memory_time() -> None:
    t4 = load_hardware("nvidia_t4")
    compute = 2 * QKV.macs / (130e12)
    moved = memory_bytes(QKV, 8, 8) + QKV.act_numel
    assert t4.latency_ms(QKV, 8, 8) == pytest.approx(1e3 * max(compute, moved / 320e9))
    big = LayerDesc("mlp", "linear", numel=768 * 3072, channels=3072, macs=768 * 3072 * 65536)
    assert t4.latency_ms(big, 4, 4) == pytest.approx(
        1e3 * 2 * big.macs / 260e12
    )  # compute bound, int4


def test_hardware_filters_candidates_per_layer_kind() -> None:
    t4, orin, a17 = (
        load_hardware(n) for n in ("nvidia_t4", "jetson_orin_nano_8gb", "apple_a17_pro")
    )
    conv = LayerDesc("neck.0", "conv", numel=96 * 256, channels=256, macs=10)
    wanted = ["w4a4", "w4a8", "w5a16", "w6a6", "w16a16"]
    assert candidates_for(QKV, wanted, t4) == wanted
    assert candidates_for(conv, wanted, t4) == ["w4a8", "w5a16", "w6a6", "w16a16"]  # no int4 convs
    assert candidates_for(QKV, wanted, orin) == ["w4a8", "w5a16", "w16a16"]
    assert candidates_for(QKV, wanted, a17) == ["w16a16"]  # no 5-bit palettes, no w4a8 path
    with pytest.raises(ValueError, match="w4a4 is not supported for conv layer 'neck.0'"):
        t4.latency_ms(conv, 4, 4)
    table = cost_table([QKV, conv], wanted, hardware=t4)
    assert list(table["neck.0"]) == ["w4a8", "w5a16", "w6a6", "w16a16"]


def test_profile_with_an_unknown_compute_type_is_refused() -> None:
    raw = {
        "format": "bitbudget.hardware/v1",
        "name": "x",
        "title": "x",
        "peak_tops": {"int8": {"value": 1}},
        "memory_bandwidth_gbps": {"value": 1},
        "supported": [{"w": [4], "a": [4], "compute": "int4"}],
    }
    with pytest.raises(ValueError, match="unknown compute type 'int4'"):
        HardwareProfile.from_dict(raw)


def test_layer_desc_checks_its_shape() -> None:
    with pytest.raises(ValueError, match="does not split into 7 channels"):
        LayerDesc("x", "linear", numel=10, channels=7)
    with pytest.raises(ValueError, match="macs must be >= 0"):
        LayerDesc("x", "linear", numel=10, channels=10, macs=-1)

"""``export_plan`` on sam2-micro: valid graphs, real integer weights, ORT equal to fake-quant."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from profiling.export.manifest import INT_TYPES
from profiling.export.ort_model import OrtModel, time_exported_encoder
from profiling.models.adapter import TaskAdapter
from profiling.quant.primitives import qrange


def _graphs(folder: Path) -> dict[str, onnx.ModelProto]:
    return {g: onnx.load(str(folder / f"{g}.onnx")) for g in ("image_encoder", "mask_decoder")}


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> float:
    inter = ((a > 0) & (b > 0)).sum().item()
    union = ((a > 0) | (b > 0)).sum().item()
    return 1.0 if union == 0 else inter / union


def _outputs(adapter: Any, samples: Any) -> list[torch.Tensor]:
    outs = []
    with torch.no_grad():
        for s in samples:
            feats = adapter.embed(adapter.preprocess(s.image.pixels))
            for p in s.prompts:
                outs.append(adapter.decode(feats, p, s.image.pixels.shape[:2]).logits)
    return outs


@pytest.mark.parametrize("name", ["w8a8", "w4a16", "mixed"])
def test_graphs_check_hold_plan_width_integers_and_run(
    exports: dict, name: str, calib_sets: Any
) -> None:
    folder, manifest, plan = exports[name]
    assert sorted(p.name for p in folder.iterdir()) == [
        "image_encoder.onnx",
        "manifest.json",
        "mask_decoder.onnx",
    ]
    assert json.loads((folder / "manifest.json").read_text()) == manifest
    assert manifest["onnxruntime_session_config"] == {
        "session.qdq_matmulnbits_accuracy_level": "1"
    }
    graphs = _graphs(folder)
    for m in graphs.values():
        onnx.checker.check_model(m, full_check=True)
    inits = {i.name: (g, i) for g, m in graphs.items() for i in m.graph.initializer}
    written = 0
    for layer, entry in manifest["layers"].items():
        w = entry["weight"]
        if w is None or w["graph"] is None:
            continue
        lo, hi = qrange(w["bits"], w["symmetric"])
        for init_name in w["initializers"]:
            g, init = inits[init_name]
            assert g == w["graph"] and init.data_type in INT_TYPES, layer
            values = numpy_helper.to_array(init).astype(np.int64) + w.get("offset", 0)
            assert lo <= values.min() and values.max() <= hi, layer
            written += 1
    in_graphs = [
        n for n in plan["choices"] if not n.startswith(("memory_", "mask_downsample", "obj_ptr"))
    ]
    assert written >= sum(1 for n in in_graphs if not n.endswith("_matmul"))
    sizes = manifest["sizes"]
    assert sizes["files_bytes"] == sum(f["bytes"] for f in manifest["files"].values())
    assert 0 < sizes["integer_initializer_bytes"] < sizes["files_bytes"]
    model = OrtModel(folder)
    (out,) = [model(s.image.pixels, s.prompts[0]) for s in calib_sets[1].samples[:1]]
    assert out.logits.shape[-2:] == (64, 64) and torch.isfinite(out.logits).all()


def test_mixed_plan_containers_follow_the_plan_width(exports: dict) -> None:
    _, manifest, plan = exports["mixed"]
    # asymmetric weights: unsigned 2- and 4-bit containers (MatMulNBits' form); 6- and 8-bit
    # ones stored signed, shifted by 2**(bits-1), the form of onnxruntime's fast int8 GEMMs
    expect = {2: "UINT2", 3: "UINT4", 4: "UINT4", 6: "INT8", 8: "INT8"}
    seen = set()
    for entry in manifest["layers"].values():
        w = entry["weight"]
        if w is not None and w["graph"] is not None:
            assert w["container"] == expect[w["bits"]]
            assert w.get("offset", 0) == (2 ** (w["bits"] - 1) if w["bits"] >= 6 else 0)
            assert ("note" in w) == (w["bits"] in (3, 6, 8))
            seen.add(w["bits"])
    assert seen == {2, 3, 4, 6, 8}
    assert manifest["opset"] == 25  # INT2 DequantizeLinear
    act = manifest["layers"]["image_encoder.trunk.blocks.0.attn.qk_matmul"]["activation"]
    assert all(q is not None for q in act["quantizers"].values())


def test_float_plan_matches_pytorch_within_1e_4(
    exports: dict, sam2_micro: Any, calib_sets: Any
) -> None:
    folder, manifest, _ = exports["w16a16"]
    assert manifest["sizes"]["integer_initializer_bytes"] == 0
    samples = calib_sets[1].samples[:2]
    got = _outputs(OrtModel(folder), samples)
    want = _outputs(TaskAdapter(sam2_micro), samples)
    assert max((a - b).abs().max().item() for a, b in zip(got, want)) <= 1e-4


def _fake_quant_adapter(sam2_micro: Any, plan: dict, calib: Any) -> TaskAdapter:
    from profiling.quant.apply import apply_plan

    return TaskAdapter(dataclasses.replace(sam2_micro, module=apply_plan(sam2_micro, plan, calib)))


@pytest.mark.parametrize(("name", "floor"), [("w8a8", 0.98), ("w4a16", 0.98), ("mixed", 0.0)])
def test_ort_agrees_with_fake_quant(
    exports: dict, sam2_micro: Any, calib_sets: Any, name: str, floor: float
) -> None:
    folder, _, plan = exports[name]
    samples = calib_sets[1].samples
    got = _outputs(OrtModel(folder), samples)
    want = _outputs(_fake_quant_adapter(sam2_micro, plan, calib_sets[0]), samples)
    iou = float(np.mean([mask_iou(a, b) for a, b in zip(got, want)]))
    print(f"mask IoU(ORT, fake-quant) {name}: {iou:.4f} over {len(got)} prompts")
    assert iou >= floor


def test_encoder_timing_reports_the_contract_fields(exports: dict) -> None:
    folder, _, _ = exports["w8a8"]
    t = time_exported_encoder(folder, threads=1, warmup=1, repeats=3)
    assert set(t) == {
        "median_ms",
        "p10_ms",
        "p90_ms",
        "repeats",
        "threads",
        "runtime",
        "runtime_version",
    }
    assert 0 < t["p10_ms"] <= t["median_ms"] <= t["p90_ms"] and t["repeats"] == 3


def test_sam_v1_export_points_and_boxes(sam_micro: Any, calib_sets: Any, tmp_path: Path) -> None:
    from profiling.export.bundle import export_plan
    from profiling.quant.plan import uniform_plan

    samples = calib_sets[1].samples[:1]  # one point batch and one box batch
    export_plan({"choices": {}}, model="sam-micro", out_dir=tmp_path / "f")
    got = _outputs(OrtModel(tmp_path / "f"), samples)
    want = _outputs(TaskAdapter(sam_micro), samples)
    assert max((a - b).abs().max().item() for a, b in zip(got, want)) <= 1e-4
    plan = uniform_plan(sam_micro.module, "w8a8").to_dict()
    export_plan(plan, model="sam-micro", out_dir=tmp_path / "q", calibration=calib_sets[0])
    got = _outputs(OrtModel(tmp_path / "q"), samples)
    want = _outputs(_fake_quant_adapter(sam_micro, plan, calib_sets[0]), samples)
    assert np.mean([mask_iou(a, b) for a, b in zip(got, want)]) >= 0.98

"""Exports of sam2-micro shared by the export tests (each export traces and calibrates once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

MIXED_CYCLE = ["w8a8", "w6a16", "w4a8", "w3a16", "w2a16", "w8a16", "w4a16"]


@pytest.fixture(scope="session")
def calib_sets() -> Any:
    from profiling.calibration import load_source, make_sets

    return make_sets(load_source("shipped"), n_calib=2, n_points=1, n_boxes=1)


def mixed_choices(module: Any) -> dict[str, str]:
    """A solver-style plan cycling w8/w6/w4/w3/w2 with a8/a16 over the weight layers, plus
    8-bit attention matmul sites in the image encoder."""
    from profiling.quant.plan import _kept_float, quantizable_layers

    choices: dict[str, str] = {}
    weight_layers = [
        n
        for n, k in quantizable_layers(module).items()
        if not k.startswith("matmul") and not _kept_float(n)
    ]
    for i, name in enumerate(weight_layers):
        choices[name] = MIXED_CYCLE[i % len(MIXED_CYCLE)]
    choices["image_encoder.trunk.blocks.0.attn.qk_matmul"] = "w16a8"
    choices["image_encoder.trunk.blocks.0.attn.sv_matmul"] = "w16a8"
    return choices


@pytest.fixture(scope="session")
def exports(sam2_micro: Any, calib_sets: Any, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """name -> (folder, manifest, plan) for the float, w8a8, w4a16 and mixed plans."""
    from profiling.export.bundle import export_plan
    from profiling.quant.plan import uniform_plan

    plans = {u: uniform_plan(sam2_micro.module, u).to_dict() for u in ("w16a16", "w8a8", "w4a16")}
    plans["mixed"] = {
        "format": "bitbudget.plan/v1",
        "status": "optimal",
        "choices": mixed_choices(sam2_micro.module),
    }
    out: dict[str, tuple[Path, dict, dict]] = {}
    for name, plan in plans.items():
        folder = tmp_path_factory.mktemp("exports") / name
        manifest = export_plan(plan, model="sam2-micro", out_dir=folder, calibration=calib_sets[0])
        out[name] = (folder, manifest, plan)
    return out

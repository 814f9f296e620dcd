"""Q-SAM2 LSC refinement on sam2-micro: it beats post-training clipping on held-out images, the
momentum update jitters less than plain gradient descent, a stopped run resumes exactly, and the
packed artifact of a refined model reproduces it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from profiling.calibration import CalibrationSet, load_source, make_sets
from profiling.errors import BadInput
from profiling.models import ModelSpec
from profiling.quant.apply import FLOAT_WEIGHTS_ATTR, apply_plan
from profiling.quant.load import load_artifact, read_metadata
from profiling.quant.lsc import (
    LscConfig,
    Stopped,
    fluctuation,
    load_clipping,
    refine,
    save_clipping,
)
from profiling.quant.pack import predict_bytes, save_artifact
from profiling.quant.plan import uniform_plan
from profiling.quant.primitives import fake_quantize, fake_quantize_range, range_qparams

STEPS = 10
LR = 0.02
INFO = {"name": "sam2-micro", "image_size": 256}


@pytest.fixture(scope="module")
def lsc_sets():
    """Three calibration photos; four held-out ones with four point prompts each (16 masks)."""
    return make_sets(load_source("shipped"), holdout=4, n_calib=3, n_points=4, n_boxes=0)


@pytest.fixture(scope="module")
def w3_plan(sam2_micro):
    return uniform_plan(sam2_micro.module, "w3a8")


@pytest.fixture(scope="module")
def refined(sam2_micro, w3_plan, lsc_sets):
    calib, held = lsc_sets
    cfg = LscConfig(steps=STEPS, lr=LR, update="momentum")
    return refine(sam2_micro, w3_plan, calib, held, cfg, record=True)


def test_fake_quantize_range_matches_primitives_and_has_range_gradients() -> None:
    x = torch.randn(4, 33) * 3
    lo = torch.tensor(-2.0, requires_grad=True)
    hi = torch.tensor(1.5, requires_grad=True)
    for symmetric in (False, True):
        s, z = range_qparams(lo.detach(), hi.detach(), 3, symmetric)
        ref = fake_quantize(x, s, z, 3, symmetric)
        out = fake_quantize_range(x, lo, hi, 3, symmetric)
        assert torch.equal(out.detach(), ref)
    fake_quantize_range(x, lo, hi, 3, False).pow(2).sum().backward()
    assert lo.grad is not None and hi.grad is not None
    assert float(lo.grad) != 0.0 and float(hi.grad) != 0.0


def test_refinement_beats_post_training_clipping(refined) -> None:
    before, after = refined.doc["before"], refined.doc["after"]
    assert before["masks"] == after["masks"] == 16
    margin = after["iou"] - before["iou"]
    print(
        f"held-out IoU vs float: PTQ {before['iou']:.4f} -> LSC {after['iou']:.4f} (+{margin:.4f})"
    )
    assert margin >= 0.015, (before["iou"], after["iou"])
    assert refined.doc["steps"] == STEPS and len(refined.doc["loss"]["history"]) == STEPS
    factors = refined.doc["factors"]
    assert factors["weight"]["factors"] > 0 and factors["activation"]["factors"] > 0


def test_momentum_fluctuates_less_than_plain_gd(sam2_micro, w3_plan, lsc_sets, refined) -> None:
    calib, _ = lsc_sets
    gd = refine(sam2_micro, w3_plan, calib, None, LscConfig(STEPS, LR, update="gd"), record=True)
    mom, plain = fluctuation(refined.trajectory), fluctuation(gd.trajectory)
    print(f"fluctuation momentum {mom} vs gd {plain}")
    assert mom["wasted"] < 0.8 * plain["wasted"]
    assert mom["step_std"] < plain["step_std"]
    assert mom["reversals"] < plain["reversals"]


def test_resume_after_stop_equals_uninterrupted(sam2_micro, lsc_sets, tmp_path) -> None:
    calib, _ = lsc_sets
    calib = CalibrationSet(calib.samples[:2], calib.scheme)
    w3_plan = uniform_plan(sam2_micro.module, "w3a16")  # no activation calibration: quick PTQ
    cfg = LscConfig(steps=5, lr=LR)
    whole = refine(sam2_micro, w3_plan, calib, None, cfg)
    with pytest.raises(Stopped):
        refine(sam2_micro, w3_plan, calib, None, cfg, work_dir=tmp_path, stop_after=2)
    with pytest.raises(Stopped):  # a second interruption, via should_stop
        refine(sam2_micro, w3_plan, calib, None, cfg, work_dir=tmp_path, should_stop=lambda: True)
    resumed = refine(sam2_micro, w3_plan, calib, None, cfg, work_dir=tmp_path)
    assert resumed.doc["resumed_from_step"] == 3
    assert resumed.doc["loss"]["history"] == whole.doc["loss"]["history"]
    assert whole.clipping.ranges.keys() == resumed.clipping.ranges.keys()
    for name, (lo, hi) in whole.clipping.ranges.items():
        assert torch.equal(lo, resumed.clipping.ranges[name][0]), name
        assert torch.equal(hi, resumed.clipping.ranges[name][1]), name


def test_packed_artifact_reproduces_refined_model(
    sam2_micro, w3_plan, lsc_sets, refined, tmp_path: Path, logits
) -> None:
    calib, held = lsc_sets
    path = tmp_path / "refined.safetensors"
    measured = save_artifact(
        refined.model, w3_plan, path, INFO, float_dtype="float32", refinement=refined.doc
    )
    assert measured == predict_bytes(sam2_micro.module, w3_plan, "float32")
    assert read_metadata(path)["refinement"]["steps"] == STEPS
    ref = logits(sam2_micro, refined.model, held)
    loaded = load_artifact(path, ModelSpec("sam2-micro"))
    for a, b in zip(ref, logits(sam2_micro, loaded, held)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    # the sidecar rebuilds the same model through apply_plan(clipping=...)
    side = tmp_path / "clip.safetensors"
    save_clipping(refined.clipping, side)
    again = apply_plan(sam2_micro, w3_plan, calib, clipping=side)
    for a, b in zip(ref, logits(sam2_micro, again, held)):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-5)
    assert load_clipping(side).meta["steps"] == STEPS


def test_bad_inputs(sam2_micro, w3_plan, lsc_sets, tmp_path: Path) -> None:
    calib, _ = lsc_sets
    with pytest.raises(BadInput, match="steps"):
        LscConfig(steps=-1)
    with pytest.raises(BadInput, match="update"):
        LscConfig(update="adam")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(BadInput):
        load_clipping(bad)
    float_plan = uniform_plan(sam2_micro.module, "w16a16")
    with pytest.raises(BadInput, match="nothing to refine"):
        refine(sam2_micro, float_plan, calib, None, LscConfig(steps=1))
    qmodel = apply_plan(sam2_micro, uniform_plan(sam2_micro.module, "w3a16"), keep_float=True)
    assert set(getattr(qmodel, FLOAT_WEIGHTS_ATTR)) <= set(w3_plan.specs)

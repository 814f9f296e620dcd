"""Plan validation on sam2-micro: a mixed plan whose predicted size comes from the solvers' cost
table packs within 0.5 % of it; budgets and mismatched predictions are flagged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from profiling.errors import BadInput
from profiling.validate import DataSpec, check_plan_doc, priced_plan, size_checks, validate_plan

CANDIDATES = ("w8a8", "w6a8", "w4a8", "w2a16")


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """Two busy cores: one intra-op thread avoids oversubscription."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def mixed_plan(loaded: Any) -> dict[str, Any]:
    """Every weight layer cycles through CANDIDATES; totals priced by ``solvers.costs``."""
    from profiling.inventory import build_inventory

    inv = build_inventory(loaded).to_json()
    names = [x["name"] for x in inv["layers"] if x.get("weight_numel")]
    choices = {name: CANDIDATES[i % len(CANDIDATES)] for i, name in enumerate(names)}
    return priced_plan(inv, choices) | {"status": "optimal", "objective": 0.0421}


@pytest.fixture(scope="module")
def validated(sam2_micro: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    plan = mixed_plan(sam2_micro)
    calib, held = DataSpec(images=2, holdout=2, n_points=2, n_boxes=1).sets()
    path = tmp_path_factory.mktemp("validate") / "plan.safetensors"
    budget = 0.9 * plan["totals"]["memory_bytes"]  # deliberately too small
    doc = validate_plan(sam2_micro, plan, calib, held, path, budget_bytes=budget)
    return doc, path


def test_mixed_plan_packs_within_half_a_percent(validated: tuple[dict, Path]) -> None:
    from profiling.quant.pack import measured_bytes

    doc, path = validated
    size = doc["size"]
    assert size["predicted_from"] == "plan"
    assert size["relative_error"] <= 0.005
    assert size["measured_bytes"] == measured_bytes(path)
    assert size["file_bytes"] == path.stat().st_size > size["measured_bytes"]  # + header
    assert abs(size["measured_bytes"] - size["packer_predicted_bytes"]) == 0


def test_document_fields(validated: tuple[dict, Path]) -> None:
    doc, _ = validated
    assert doc["format"] == "bitbudget.validation/v1" and doc["random_weights"] is True
    assert doc["plan"]["predicted_loss"] == 0.0421 and doc["plan"]["layers"] > 50
    metrics = doc["metrics"]
    assert 0.0 <= metrics["iou"] <= 1.0 and metrics["kl"] > 0 and metrics["masks"] == 6
    assert set(doc["data"]["heldout"]).isdisjoint(doc["data"]["calibration"])


def test_plan_over_its_budget_is_flagged(validated: tuple[dict, Path]) -> None:
    doc, _ = validated
    assert doc["passed"] is False
    assert len(doc["reasons"]) == 1 and "over the budget" in doc["reasons"][0]


def test_size_checks_by_hand() -> None:
    size, reasons = size_checks(1000, 1004.0, None)
    assert reasons == [] and size["relative_error"] == pytest.approx(4 / 1004)
    _, reasons = size_checks(1000, 1006.0, 2000.0)
    assert len(reasons) == 1 and "0.596 % away" in reasons[0]
    _, reasons = size_checks(1000, 1000.0, 999.0)
    assert reasons == ["artifact holds 1000 B, over the budget of 999 B"]


@pytest.mark.parametrize(
    ("plan", "needle"),
    [
        ([], "expected a bitbudget.plan/v1 object"),
        ({"choices": "w4a8"}, "expected a bitbudget.plan/v1 object"),
        ({"status": "infeasible", "choices": {}}, "no plan to validate"),
        ({"choices": {}, "totals": [1]}, "totals"),
    ],
)
def test_malformed_plans_are_refused(plan: Any, needle: str) -> None:
    with pytest.raises(BadInput, match=needle):
        check_plan_doc(plan)


def test_unknown_layer_is_refused(sam2_micro: Any, tmp_path: Path) -> None:
    plan = {"status": "optimal", "choices": {"no.such.layer": "w4a8"}}
    calib, held = DataSpec(images=1, holdout=1).sets()
    with pytest.raises(BadInput, match="no.such.layer"):
        validate_plan(sam2_micro, plan, calib, held, tmp_path / "x.safetensors")
    assert not (tmp_path / "x.safetensors").exists()


def test_a_refined_plan_is_validated_with_its_learned_clipping(
    sam2_micro: Any, tmp_path: Path
) -> None:
    """With an LSC sidecar the refined model is measured and packed, and ``refinement`` holds
    the held-out fidelity before (post-training clipping) and after (learned clipping)."""
    from profiling.quant.load import load_artifact
    from profiling.quant.lsc import LscConfig, refine, save_clipping
    from profiling.quant.pack import save_artifact

    plan = mixed_plan(sam2_micro)
    calib, held = DataSpec(images=2, holdout=2, n_points=2, n_boxes=1).sets()
    refined = refine(sam2_micro, plan, calib, held, LscConfig(steps=2))
    sidecar = tmp_path / "clipping.safetensors"
    save_clipping(refined.clipping, sidecar)
    artifact = tmp_path / "refined.safetensors"
    doc = validate_plan(sam2_micro, plan, calib, held, artifact, clipping=sidecar)
    ref = doc["refinement"]
    assert ref["method"] == "lsc" and ref["clipping"] == sidecar.name
    assert ref["before"]["iou"] == pytest.approx(refined.doc["before"]["iou"], abs=1e-6)
    assert ref["after"]["iou"] == pytest.approx(refined.doc["after"]["iou"], abs=1e-6)
    assert doc["metrics"] == ref["after"] and ref["before"] != ref["after"]
    direct = tmp_path / "direct.safetensors"  # the refined model packed by hand
    save_artifact(refined.model, plan, direct)
    got = load_artifact(artifact, sam2_micro).state_dict()
    want = load_artifact(direct, sam2_micro).state_dict()
    assert got.keys() == want.keys()
    assert all(torch.equal(got[k], want[k]) for k in got)

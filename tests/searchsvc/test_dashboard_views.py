"""What the dashboard computes: heatmap groups (image-encoder stages), uniform baselines, and the
generic rendering of optional validation sections (video J&F, refinement before/after)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from searchsvc.app import create_app
from searchsvc.dashboard import views
from searchsvc.db.session import session_scope
from searchsvc.db.tables import PlanRow, ValidationRow
from searchsvc.settings import Settings
from solvers.problem import Problem

TOKEN = "bb_views_" + "z" * 40


def _layer(name: str, comp: str, out: list[int] | None = None) -> dict[str, Any]:
    return {"name": name, "component": comp, "kind": "linear", "params": 10, "out_shape": out}


def test_hiera_blocks_group_into_stages_by_width() -> None:
    trunk = "image_encoder.trunk"
    layers = [_layer(f"{trunk}.patch_embed.proj", "image_encoder")]
    for i, dim in enumerate([24, 48, 48, 96, 96, 96, 192]):
        layers += [
            _layer(f"{trunk}.blocks.{i}.attn.qkv", "image_encoder", [1, 8, 8, 3 * dim]),
            _layer(f"{trunk}.blocks.{i}.mlp.layers.1", "image_encoder", [1, 8, 8, dim]),
        ]
    layers += [
        _layer("image_encoder.neck.convs.0.conv", "image_encoder"),
        _layer("sam_mask_decoder.transformer.layers.0.mlp.lin1", "mask_decoder"),
        _layer("memory_attention.layers.0.self_attn.q_proj", "memory_attention"),
    ]
    groups = views.layer_groups({"layers": layers})
    titles = sorted(set(groups.values()))
    assert [t for _, t in titles] == [
        "image encoder · stem",
        "image encoder · stage 1 (blocks 0, width 24)",
        "image encoder · stage 2 (blocks 1–2, width 48)",
        "image encoder · stage 3 (blocks 3–5, width 96)",
        "image encoder · stage 4 (blocks 6, width 192)",
        "image encoder · neck",
        "mask decoder",
        "memory attention",
    ]
    assert groups[f"{trunk}.blocks.4.attn.qkv"][1].startswith("image encoder · stage 3")


def test_sam_vit_blocks_are_one_stage() -> None:
    layers = [
        _layer(f"image_encoder.blocks.{i}.mlp.lin2", "image_encoder", [1, 64, 64, 768])
        for i in range(12)
    ]
    titles = set(t for _, t in views.layer_groups({"layers": layers}).values())
    assert titles == {"image encoder · stage 1 (blocks 0–11, width 768)"}


def test_uniform_baselines_sum_the_options_and_skip_missing_candidates() -> None:
    problem = Problem.from_dict(
        {
            "format": "bitbudget.problem/v1",
            "layers": [
                {
                    "name": "a",
                    "options": [
                        {"id": "w8a8", "loss": 0.1, "memory_bytes": 100},
                        {"id": "w4a8", "loss": 0.5, "memory_bytes": 50},
                    ],
                },
                {"name": "b", "options": [{"id": "w8a8", "loss": 0.0, "memory_bytes": 7}]},
                {
                    "name": "c",
                    "options": [
                        {"id": "w8a8", "loss": 0.2, "memory_bytes": 200},
                        {"id": "w2a8", "loss": 0.9, "memory_bytes": 50},
                    ],
                },
            ],
            "fixed": {"memory_bytes": 1000},
            "budget": {"memory_bytes": None},
        }
    )
    got = {b["id"]: b for b in views.baselines(problem, "memory_bytes")}
    assert set(got) == {"w8a8"}  # w4a8 / w2a8: some layer with a choice lacks them
    assert got["w8a8"]["total"] == 1000 + 100 + 7 + 200
    assert got["w8a8"]["objective"] == pytest.approx(0.3)


@pytest.mark.parametrize("key", ["jf", "j_and_f", "J&F", "JandF"])
def test_jf_is_found_under_its_usual_names(key: str) -> None:
    assert views.jf_of({"video": {"davis": {key: 0.71, "frames": 8}}}) == 0.71
    assert views.jf_of({"validation": {"video": {key: 0.5}}}) == 0.5
    assert views.jf_of({"validation": {"metrics": {"iou": 0.9}}}) is None


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    settings = Settings(data_dir=tmp_path, api_tokens=[TOKEN])
    with TestClient(create_app(settings)) as client:
        yield client, settings


def test_plan_page_shows_video_and_refinement_when_present(
    web: tuple[TestClient, Settings],
) -> None:
    client, settings = web
    auth = {"Authorization": f"Bearer {TOKEN}"}
    model = client.post("/v1/models", json={"name": "sam2-micro"}, headers=auth).json()
    doc = {
        "format": "bitbudget.validation/v1",
        "plan": {"status": "optimal", "predicted_loss": 0.01},
        "metrics": {"iou": 0.93, "kl": 0.002},
        "size": {"measured_bytes": 1000, "predicted_bytes": 1000.0, "relative_error": 0.0},
        "video": {"jf": 0.8123, "j": 0.8, "f": 0.8246, "frames": 6},
        "refinement": {"method": "lsc", "before": {"iou": 0.9}, "after": {"iou": 0.95}},
        "passed": True,
        "reasons": [],
    }
    with session_scope(settings.database) as session:
        plan = PlanRow(
            model_id=model["id"],
            request_key="x",
            method="fisher_kl",
            solver="cpsat",
            budget={"memory_mb": 2},
            status="optimal",
            objective=0.01,
            totals={"memory_bytes": 1000},
            doc={"format": "bitbudget.plan/v1", "status": "optimal", "choices": {}},
            validation_status="passed",
        )
        session.add(plan)
        session.flush()
        session.add(ValidationRow(plan_id=plan.id, status="passed", metrics=doc))
        plan_id = plan.id
    page = client.get(f"/dashboard/plans/{plan_id}")
    assert page.status_code == 200, page.text
    text = page.text
    assert "video J&amp;F</th><td>0.8123" in text  # beside the image IoU
    assert text.index("image mask IoU") < text.index("video J&amp;F")
    assert 'id="refinement"' in text and "<td>iou</td><td>0.9</td><td>0.95</td>" in text
    assert 'id="job-progress"' not in text  # no job, no progress panel

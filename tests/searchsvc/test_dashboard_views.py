"""What the dashboard computes: heatmap groups (image-encoder stages), uniform baselines, and the
video J&F wherever a validation records it."""

from __future__ import annotations

from typing import Any

import pytest

from searchsvc.dashboard import views
from solvers.problem import Problem


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


def test_jf_is_read_where_the_video_validation_puts_it() -> None:
    summary = {"vs_float": {"J": 80.0, "F": 82.0, "JF": 81.0}, "vs_gt": {"JF": 60.0}}
    doc = {"video": {"summary": summary, "policy": {"name": "fifo"}}}
    assert views.jf_of({"validation": doc}) == 81.0
    fidelity = {"video": {"jf_vs_float": {"JF": 79.5}, "jf_vs_gt": {"JF": 60.0}}}
    assert views.jf_of({"fidelity": fidelity, "validation": doc}) == 79.5


@pytest.mark.parametrize("key", ["jf", "j_and_f", "J&F", "JandF"])
def test_jf_is_found_under_its_usual_names(key: str) -> None:
    assert views.jf_of({"video": {"davis": {key: 0.71, "frames": 8}}}) == 0.71
    assert views.jf_of({"validation": {"video": {key: 0.5}}}) == 0.5
    assert views.jf_of({"validation": {"metrics": {"iou": 0.9}}}) is None


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (1499810.0, "1,499,810"),  # bytes stored as a float print like the measured int beside
        (1499938, "1,499,938"),
        (4.344e-07, "4.344e-07"),
        (0.9581, "0.9581"),
        (None, "—"),
    ],
)
def test_numbers_for_people(value: Any, shown: str) -> None:
    from searchsvc.dashboard.templating import _num

    assert _num(value) == shown

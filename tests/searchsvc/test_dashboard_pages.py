"""Dashboard pages in-process on a real app and database (one sam2-micro registration per module):
with many plans, list pages are paginated and never read a plan's per-layer document
(``plans.doc``) — only the plan page does, for that one plan; optional validation sections
(video J&F, refinement before/after) are rendered when present."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from searchsvc.app import create_app
from searchsvc.db.session import get_engine, session_scope
from searchsvc.db.tables import ArtifactRow, PlanRow, ValidationRow
from searchsvc.settings import Settings

TOKEN = "bb_scale_" + "y" * 40
PLANS = 1200


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("dashboard"), api_tokens=[TOKEN])
    with TestClient(create_app(settings)) as c:
        yield c, settings


@pytest.fixture(scope="module")
def model(client: tuple[TestClient, Settings]) -> dict[str, Any]:
    web, _ = client
    auth = {"Authorization": f"Bearer {TOKEN}"}
    r = web.post("/v1/models", json={"name": "sam2-micro"}, headers=auth)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


class Statements:
    """Every SQL statement the app runs on the test's database (both engines)."""

    def __init__(self, url: str) -> None:
        self.seen: list[str] = []
        self.engines = [get_engine(url, True), get_engine(url, False)]
        for engine in self.engines:
            event.listen(engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.seen.append(statement)

    def close(self) -> None:
        for engine in self.engines:
            event.remove(engine, "before_cursor_execute", self._record)


def _reads_plan_docs(statements: list[str]) -> list[str]:
    return [s for s in statements if re.search(r"\bplans\.doc\b", s)]


def test_pages_stay_small_with_many_plans(
    client: tuple[TestClient, Settings], model: dict[str, Any]
) -> None:
    web, settings = client
    before = web.get("/v1/plans", params={"model_id": model["id"], "limit": 1}).json()["total"]
    names = [x["name"] for x in _inventory(settings, model["id"])]
    choices = {n: ("w4a8" if i % 3 else "w8a8") for i, n in enumerate(names)}
    with session_scope(settings.database) as session:
        session.add_all(
            PlanRow(
                model_id=model["id"],
                request_key=f"k{i}",
                method="fisher_kl",
                solver="cpsat",
                budget={"memory_mb": 1.0 + i / PLANS},
                status="optimal",
                objective=1.0 / (i + 1),
                totals={"memory_bytes": 1_000_000 + 400 * i, "bops": 1e9},
                doc={"format": "bitbudget.plan/v1", "status": "optimal", "choices": choices},
            )
            for i in range(PLANS)
        )
    sql = Statements(settings.database)
    try:
        started = time.perf_counter()
        models = web.get("/dashboard")
        first = web.get(f"/dashboard/models/{model['id']}")
        pages = -(-(before + PLANS) // 20)
        last = web.get(f"/dashboard/models/{model['id']}", params={"page": pages})
        jobs = web.get("/dashboard/jobs")
        elapsed = time.perf_counter() - started
        assert _reads_plan_docs(sql.seen) == []
        for r in (models, first, last, jobs):
            assert r.status_code == 200, r.text
        assert elapsed < 10, f"four list pages took {elapsed:.1f} s"
        total = before + PLANS
        assert f"page 1 of {-(-total // 20)} ({total} in all)" in first.text
        assert len(re.findall(r'href="[^"]*/dashboard/plans/\d+">#', first.text)) == 20
        ids = [int(i) for i in re.findall(r'/dashboard/plans/(\d+)">#', first.text)]
        newest = max(ids)
        assert ids == list(range(newest, newest - 20, -1))  # the newest 20, newest first
        oldest = [int(i) for i in re.findall(r'/dashboard/plans/(\d+)">#', last.text)]
        assert oldest and len(oldest) == total - 20 * (pages - 1)
        assert max(oldest) < min(ids)
        best = re.findall(r"/dashboard/plans/(\d+)\" title", models.text)
        assert 1 <= len(best) <= 3  # the best plans of the model, out of its newest 500
        assert web.get(f"/dashboard/models/{model['id']}", params={"page": 999}).status_code == 404

        sql.seen.clear()
        one = web.get(f"/dashboard/plans/{newest}")
        assert one.status_code == 200
        assert one.text.count('"choice": ') == len(choices)  # the heatmap's data, one per layer
        assert len(_reads_plan_docs(sql.seen)) == 1  # that plan only
    finally:
        sql.close()


def _inventory(settings: Settings, model_id: int) -> list[dict[str, Any]]:
    from searchsvc.catalog import repository

    with session_scope(settings.database, write=False) as session:
        row = repository.get_with_inventory(session, model_id)
        assert row is not None
        return [x for x in row.inventory["layers"] if x.get("weight_numel")]


def _solved_plan(session: Any, model_id: int, key: str, validation_status: str) -> PlanRow:
    """A solved plan row with no layers (the optional sections are what is under test)."""
    plan = PlanRow(
        model_id=model_id,
        request_key=key,
        method="fisher_kl",
        solver="cpsat",
        budget={"memory_mb": 2},
        status="optimal",
        objective=0.01,
        totals={"memory_bytes": 1000},
        doc={"format": "bitbudget.plan/v1", "status": "optimal", "choices": {}},
        validation_status=validation_status,
    )
    session.add(plan)
    session.flush()
    return plan


def test_plan_page_shows_video_and_refinement_when_present(
    client: tuple[TestClient, Settings], model: dict[str, Any]
) -> None:
    web, settings = client
    doc = {
        "format": "bitbudget.validation/v1",
        "plan": {"status": "optimal", "predicted_loss": 0.01},
        "metrics": {"iou": 0.93, "kl": 0.002},
        "size": {"measured_bytes": 1000, "predicted_bytes": 1000.0, "relative_error": 0.0},
        "video": {  # the shape of profiling.video.video_validation (docs/video.md)
            "format": "bitbudget.video_validation/v1",
            "policy": {"name": "sis"},
            "clips": [{"name": "clip0"}, {"name": "clip1"}],
            "summary": {
                "vs_float": {"J": 80.0, "F": 82.46, "JF": 81.23},
                "vs_gt": {"J": 70.0, "F": 71.0, "JF": 70.5},
                "float_vs_gt": None,
            },
        },
        "refinement": {"method": "lsc", "before": {"iou": 0.9}, "after": {"iou": 0.95}},
        "passed": True,
        "reasons": [],
    }
    with session_scope(settings.database) as session:
        plan = _solved_plan(session, model["id"], "x", "passed")
        session.add(ValidationRow(plan_id=plan.id, status="passed", metrics=doc))
        plan_id = plan.id
    page = web.get(f"/dashboard/plans/{plan_id}")
    assert page.status_code == 200, page.text
    text = page.text
    assert "video J&amp;F vs float (%)</th><td>81.23" in text  # beside the image IoU
    assert text.index("image mask IoU") < text.index("video J&amp;F")
    assert 'id="refinement"' in text and "<td>iou</td><td>0.9</td><td>0.95</td>" in text
    assert text.index("</title>") < text.index('id="refinement"')  # in the page, not its title
    assert 'id="job-progress"' not in text  # no job, no progress panel


def test_plan_page_shows_a_stored_lsc_refinement(
    client: tuple[TestClient, Settings], model: dict[str, Any]
) -> None:
    """The refine job's record (an ``artifacts`` row of kind ``refinement``) is shown."""
    web, settings = client
    with session_scope(settings.database) as session:
        plan = _solved_plan(session, model["id"], "refined", "not_requested")
        report = {"before": {"iou": 0.8125}, "after": {"iou": 0.875}, "seconds_per_step": 0.4}
        doc = {"status": "done", "steps": 10, "report": report}
        session.add(
            ArtifactRow(
                kind="refinement", key="lsc-x", plan_id=plan.id, model_id=model["id"], doc=doc
            )
        )
        plan_id = plan.id
    text = web.get(f"/dashboard/plans/{plan_id}").text
    assert text.index("</title>") < text.index('id="refinement"')
    assert "<td>iou</td><td>0.8125</td><td>0.875</td>" in text


def test_video_plans_are_asked_for_and_shown(
    client: tuple[TestClient, Settings], model: dict[str, Any]
) -> None:
    """The budget form of a SAM2 model offers the hierarchical (video) profile; a plan solved on
    one says so on its page, a plan solved on images alone does not."""
    web, settings = client
    form = web.get(f"/dashboard/models/{model['id']}").text
    assert '<input name="video_profile" type="checkbox"' in form
    assert "body.video = true" in web.get("/dashboard/static/dashboard.js").text
    with session_scope(settings.database) as session:
        video = _solved_plan(session, model["id"], "video", "not_requested")
        video.doc = {**(video.doc or {}), "video": {"clips": 2, "frames": 6}}
        image = _solved_plan(session, model["id"], "image", "not_requested")
        ids = video.id, image.id
    text = web.get(f"/dashboard/plans/{ids[0]}").text
    assert 'id="video-profile"' in text and "memory path on 2 clips × 6 frames" in text
    assert 'id="video-profile"' not in web.get(f"/dashboard/plans/{ids[1]}").text

"""The dashboard with many plans: list pages are paginated and never read a plan's per-layer
document (``plans.doc``); only the plan page does, for that one plan."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event

from searchsvc.app import create_app
from searchsvc.db.session import get_engine, session_scope
from searchsvc.db.tables import PlanRow
from searchsvc.settings import Settings

TOKEN = "bb_scale_" + "y" * 40
PLANS = 1200


@pytest.fixture
def client(tmp_path: Path) -> Iterator[tuple[TestClient, Settings]]:
    settings = Settings(data_dir=tmp_path, api_tokens=[TOKEN])
    with TestClient(create_app(settings)) as c:
        yield c, settings


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


def test_pages_stay_small_with_many_plans(client: tuple[TestClient, Settings]) -> None:
    web, settings = client
    auth = {"Authorization": f"Bearer {TOKEN}"}
    model = web.post("/v1/models", json={"name": "sam2-micro"}, headers=auth).json()
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
        last = web.get(f"/dashboard/models/{model['id']}", params={"page": PLANS // 20})
        jobs = web.get("/dashboard/jobs")
        elapsed = time.perf_counter() - started
        assert _reads_plan_docs(sql.seen) == []
        for r in (models, first, last, jobs):
            assert r.status_code == 200, r.text
        assert elapsed < 10, f"four list pages took {elapsed:.1f} s"
        assert f"page 1 of {PLANS // 20} ({PLANS} in all)" in first.text
        assert len(re.findall(r'href="[^"]*/dashboard/plans/\d+">#', first.text)) == 20
        assert f">#{PLANS}<" in first.text and f">#{PLANS - 19}<" in first.text
        assert ">#1<" in last.text and ">#21<" not in last.text
        best = re.findall(r"/dashboard/plans/(\d+)\" title", models.text)
        assert 1 <= len(best) <= 3  # the best plans of the model, out of its newest 500
        assert web.get(f"/dashboard/models/{model['id']}", params={"page": 999}).status_code == 404

        sql.seen.clear()
        one = web.get(f"/dashboard/plans/{PLANS}")
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

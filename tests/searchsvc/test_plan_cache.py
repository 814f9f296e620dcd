"""GET /v1/plans/{id} from the cache of serialized plans, in-process on a real app and database:
the answer is the plan resource as built from the rows; an ETag answers If-None-Match with 304;
whatever lands in the database (a validation, its artifact, a refinement's progress, a plan's
status), by this process or another, shows at the next GET. Also the solver memo (one solve per
request key, in worker processes) and the write guard's memory of verified tokens."""

from __future__ import annotations

import json
import operator
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, update

from searchsvc.app import create_app
from searchsvc.auth import service as auth
from searchsvc.db.session import get_engine, session_scope
from searchsvc.db.tables import ArtifactRow, PlanRow, ValidationRow
from searchsvc.plans import plan_cache
from searchsvc.plans.memo import SolveMemo
from searchsvc.settings import Settings

TOKEN = "bb_cache_" + "z" * 40


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Settings]]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("plan-cache"), api_tokens=[TOKEN], solve_processes=0
    )
    with TestClient(create_app(settings)) as c:
        yield c, settings


@pytest.fixture(scope="module")
def model_id(client: tuple[TestClient, Settings]) -> int:
    web, _ = client
    r = web.post(
        "/v1/models", json={"name": "sam2-micro"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


def _plan(settings: Settings, model_id: int, key: str) -> int:
    """A solved plan row, as the solver writes it."""
    with session_scope(settings.database) as session:
        plan = PlanRow(
            model_id=model_id,
            request_key=key,
            method="fisher_kl",
            solver="cpsat",
            budget={"memory_mb": 2},
            status="optimal",
            objective=0.01,
            totals={"memory_bytes": 1_500_000, "weight_bits": 3_000_000},
            doc={"format": "bitbudget.plan/v1", "status": "optimal", "choices": {"a": "w8a8"}},
            validation_status="not_requested",
        )
        session.add(plan)
        session.flush()
        return plan.id


def _uncached(web: TestClient, plan_id: int) -> dict[str, Any]:
    plan_cache.clear()
    r = web.get(f"/v1/plans/{plan_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_repeated_gets_are_served_from_the_cache_with_an_etag(
    client: tuple[TestClient, Settings], model_id: int
) -> None:
    web, settings = client
    plan_id = _plan(settings, model_id, "etag")
    plan_cache.clear()
    first = web.get(f"/v1/plans/{plan_id}")
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    etag = first.headers["etag"]
    doc = first.json()
    assert doc["id"] == plan_id and doc["plan"]["choices"] == {"a": "w8a8"}
    assert doc["usage"] == {"memory_mb": 1.5, "avg_bits": pytest.approx(doc["usage"]["avg_bits"])}
    assert doc["validation"] is None and doc["refinement"] is None

    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    engine = get_engine(settings.database, False)
    event.listen(engine, "before_cursor_execute", record)
    try:
        again = web.get(f"/v1/plans/{plan_id}")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert again.content == first.content and again.headers["etag"] == etag
    # a cache hit reads the fingerprint only: no ORM load of the plan, the model or the rest
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 3

    not_modified = web.get(f"/v1/plans/{plan_id}", headers={"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.content == b""
    assert not_modified.headers["etag"] == etag
    listed = web.get(f"/v1/plans/{plan_id}", headers={"If-None-Match": f'"other", W/{etag}'})
    assert listed.status_code == 304
    stale = web.get(f"/v1/plans/{plan_id}", headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200 and stale.content == first.content


def test_a_landing_validation_shows_at_the_next_get(
    client: tuple[TestClient, Settings], model_id: int
) -> None:
    """Writes made behind the API's back (as a Celery worker does) change the answer."""
    web, settings = client
    plan_id = _plan(settings, model_id, "validation")
    before = web.get(f"/v1/plans/{plan_id}")
    assert before.json()["validation"] is None
    etag = before.headers["etag"]

    with session_scope(settings.database) as session:
        session.add(ValidationRow(plan_id=plan_id, status="running", metrics={}))
        session.execute(
            update(PlanRow).where(PlanRow.id == plan_id).values(validation_status="running")
        )
    running = web.get(f"/v1/plans/{plan_id}", headers={"If-None-Match": etag})
    assert running.status_code == 200
    assert running.json()["validation_status"] == "running"
    assert running.json()["validation"]["status"] == "running"
    assert running.headers["etag"] != etag

    # the validation row changes in place: status and metrics (the plan row too)
    metrics = {"passed": True, "reasons": [], "metrics": {"iou": 0.97, "kl": 0.001}}
    with session_scope(settings.database) as session:
        session.execute(
            update(ValidationRow)
            .where(ValidationRow.plan_id == plan_id)
            .values(status="passed", metrics=metrics)
        )
        session.execute(
            update(PlanRow).where(PlanRow.id == plan_id).values(validation_status="passed")
        )
    passed = web.get(f"/v1/plans/{plan_id}").json()
    assert passed["validation"]["passed"] is True
    assert passed["validation"]["fidelity"]["image"]["iou"] == 0.97
    assert passed["validation"]["artifact"] is None

    # then its packed artifact
    with session_scope(settings.database) as session:
        session.add(
            ArtifactRow(
                kind="packed",
                key=f"plan:{plan_id}:packed",
                plan_id=plan_id,
                size_bytes=1234,
                sha256="ab" * 32,
            )
        )
    packed = web.get(f"/v1/plans/{plan_id}").json()
    assert packed["validation"]["artifact"]["file_bytes"] == 1234
    assert packed == _uncached(web, plan_id)


def test_refinement_progress_and_plan_changes_show(
    client: tuple[TestClient, Settings], model_id: int
) -> None:
    web, settings = client
    plan_id = _plan(settings, model_id, "refine")
    web.get(f"/v1/plans/{plan_id}")
    key = f"plan:{plan_id}:refinement:abc"
    with session_scope(settings.database) as session:
        session.add(
            ArtifactRow(kind="refinement", key=key, plan_id=plan_id, doc={"status": "queued"})
        )
    assert web.get(f"/v1/plans/{plan_id}").json()["refinement"]["status"] == "queued"
    # only the JSON document changes (progress), no other column
    with session_scope(settings.database) as session:
        session.execute(
            update(ArtifactRow).where(ArtifactRow.key == key).values(doc={"status": "running"})
        )
    assert web.get(f"/v1/plans/{plan_id}").json()["refinement"]["status"] == "running"
    # the plan's own document changes
    new_doc = {"format": "bitbudget.plan/v1", "status": "optimal", "choices": {"a": "w4a8"}}
    with session_scope(settings.database) as session:
        session.execute(update(PlanRow).where(PlanRow.id == plan_id).values(doc=new_doc))
    got = web.get(f"/v1/plans/{plan_id}").json()
    assert got["plan"]["choices"] == {"a": "w4a8"}
    assert got == _uncached(web, plan_id)


def test_unknown_plan_is_a_404_and_is_not_cached(client: tuple[TestClient, Settings]) -> None:
    web, _ = client
    for _ in range(2):
        r = web.get("/v1/plans/999999")
        assert r.status_code == 404 and "does not exist" in r.json()["error"]["message"]


def test_post_answers_match_get(client: tuple[TestClient, Settings], model_id: int) -> None:
    """A plan POSTed twice (201, then 200 from the stored plan) is what GET serves."""
    web, _ = client
    auth_header = {"Authorization": f"Bearer {TOKEN}"}
    body = {"model_id": model_id, "budget": {"avg_bits": 5}, "candidates": ["w8a8", "w4a8"]}
    r = web.post("/v1/plans", json=body | {"images": 2}, headers=auth_header)
    assert r.status_code in (201, 202), r.text
    if r.status_code == 202:  # profile first: wait for the job
        job = r.json()["job"]["id"]
        deadline = time.monotonic() + 600
        while web.get(f"/v1/jobs/{job}").json()["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert web.get(f"/v1/jobs/{job}").json()["state"] == "succeeded"
        r = web.post("/v1/plans", json=body | {"images": 2}, headers=auth_header)
    assert r.status_code in (200, 201), r.text
    again = web.post("/v1/plans", json=body | {"images": 2}, headers=auth_header)
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"]
    got = web.get(f"/v1/plans/{r.json()['id']}").json()
    posted = again.json()
    assert {k: v for k, v in got.items() if k not in ("validation", "refinement")} == {
        k: v for k, v in posted.items() if k not in ("validation", "refinement")
    }
    assert json.loads(json.dumps(got)) == got  # plain JSON (no NaN)


def test_solve_memo_solves_each_key_once_and_forgets_failures() -> None:
    memo = SolveMemo(size=4, slots=2)
    calls: list[int] = []
    gate = threading.Event()

    def slow(x: int) -> int:
        gate.wait(10)
        calls.append(x)
        return x * 2

    futures = [memo.submit("k", slow, 21) for _ in range(5)]
    assert len({id(f) for f in futures}) == 1  # one flight, shared
    gate.set()
    assert [f.result(10) for f in futures] == [42] * 5 and calls == [21]
    assert memo.submit("k", slow, 99).result(10) == 42 and calls == [21]  # memoised

    def boom() -> int:
        raise ValueError("bad problem")

    with pytest.raises(ValueError, match="bad problem"):
        memo.get("bad", boom)
    assert memo.get("bad", lambda: 7) == 7  # a failure is not memoised
    for i in range(6):
        memo.get(f"fill{i}", lambda: 0)
    assert memo.submit("k", slow, 1).result(10) == 2  # evicted (size 4): solved again
    memo.shutdown()


def test_solve_memo_runs_in_worker_processes() -> None:
    memo = SolveMemo(size=8, slots=1)
    memo.use_processes(1)
    try:
        future: Future[int] = memo.submit("mul", operator.mul, 6, 7)
        assert future.result(120) == 42 and memo.processes == 1
        with pytest.raises(TypeError):
            memo.submit("bad", operator.mul, None, None).result(120)
    finally:
        memo.shutdown()


def test_verified_tokens_are_remembered_briefly(
    client: tuple[TestClient, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    web, settings = client
    auth.forget_verified()
    header = f"Bearer {TOKEN}"
    assert not auth.recently_verified(settings, header)
    r = web.post("/v1/models", json={"name": "sam2-micro"}, headers={"Authorization": header})
    assert r.status_code in (200, 201)
    assert auth.recently_verified(settings, header)
    assert not auth.recently_verified(settings, "Bearer bb_someone_else_" + "q" * 30)
    assert not auth.recently_verified(settings, None)
    now = time.monotonic
    monkeypatch.setattr(auth.time, "monotonic", lambda: now() + auth.VERIFIED_TTL_S)
    assert not auth.recently_verified(settings, header)  # expired: looked up again
    monkeypatch.undo()
    auth.forget_verified()
    wrong = web.post(
        "/v1/models",
        json={"name": "sam2-micro"},
        headers={"Authorization": "Bearer bb_" + "w" * 40},
    )
    assert wrong.status_code == 401

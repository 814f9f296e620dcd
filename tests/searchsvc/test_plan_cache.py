"""GET /v1/plans/{id} from the cache of serialized plans, in-process on a real app and database
(the embedded SQLite and PostgreSQL): the answer is the plan resource as built from the rows; an
ETag answers If-None-Match with 304; whatever lands in the database (a validation, its artifact,
a refinement's progress, a plan's status), by this process or another one, shows at the next GET;
a cache hit is checked on the event loop (no engine statement), many GETs of an uncached plan
build it once, and a lost database connection falls back to the thread path. Also the solver memo
(one solve per request key, in worker processes) and the write guard's memory of verified
tokens."""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, update

from searchsvc.app import create_app
from searchsvc.auth import service as auth
from searchsvc.db.session import get_engine, session_scope
from searchsvc.db.tables import ArtifactRow, PlanRow, ValidationRow
from searchsvc.plans import plan_cache
from searchsvc.plans.memo import SOLVER_NICENESS, SolveMemo
from searchsvc.settings import Settings

TOKEN = "bb_cache_" + "z" * 40
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TestClient, Settings]]:
    """The app on the embedded SQLite, or on a PostgreSQL database of this module's own."""
    data_dir = tmp_path_factory.mktemp("plan-cache")
    if request.param == "sqlite":
        settings = Settings(data_dir=data_dir, api_tokens=[TOKEN], solve_processes=0)
        with TestClient(create_app(settings)) as c:
            yield c, settings
        return
    import psycopg

    pg_url = request.getfixturevalue("pg_url")
    name = f"{pg_url.rsplit('/', 1)[1]}_cache"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{pg_url.rsplit('/', 1)[0]}/{name}"
    try:
        settings = Settings(
            data_dir=data_dir, database_url=url, api_tokens=[TOKEN], solve_processes=0
        )
        with TestClient(create_app(settings)) as c:
            yield c, settings
    finally:
        get_engine(url).dispose()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _postgres(settings: Settings) -> bool:
    return settings.database.startswith("postgresql")


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
    reads: list[int] = []
    reader = web.app.state.plan_reader  # type: ignore[attr-defined]
    current = reader.current

    async def counted(plan: int) -> Any:
        reads.append(plan)
        return await current(plan)

    reader.current = counted
    try:
        again = web.get(f"/v1/plans/{plan_id}")
    finally:
        event.remove(engine, "before_cursor_execute", record)
        del reader.current
    assert again.content == first.content and again.headers["etag"] == etag
    # a cache hit reads the fingerprint on the event loop, nothing through the engine (no
    # worker thread, no ORM load of the plan, the model or the rest)
    assert reads == [plan_id] and statements == []
    # the thread path (a session's connection) reads the fingerprint the loop read
    with session_scope(settings.database, write=False) as session:
        assert plan_cache.lookup(session, settings.database, plan_id) == (first.content, etag)

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


_WRITER = """
import json, sys
from sqlalchemy import update
from searchsvc.db.session import session_scope
from searchsvc.db.tables import PlanRow, ValidationRow
url, plan_id, what, value = sys.argv[1], int(sys.argv[2]), sys.argv[3], json.loads(sys.argv[4])
with session_scope(url) as session:
    if what == "doc":
        session.execute(update(PlanRow).where(PlanRow.id == plan_id).values(doc=value))
    else:
        session.add(ValidationRow(plan_id=plan_id, status=value, metrics={}))
"""


def _write_elsewhere(settings: Settings, plan_id: int, what: str, value: Any) -> None:
    """A write by another process (as a Celery worker or the CLI makes one)."""
    args = [sys.executable, "-c", _WRITER, settings.database, str(plan_id), what, json.dumps(value)]
    subprocess.run(args, check=True, timeout=120)


def _doc(choice: str) -> dict[str, Any]:
    return {"format": "bitbudget.plan/v1", "status": "optimal", "choices": {"a": choice}}


def test_writes_by_another_process_show_at_the_next_get(
    client: tuple[TestClient, Settings], model_id: int
) -> None:
    """Cached plans are checked against the database at every GET: a change made by another
    process shows at once, a change back too (the cache never answers with an older state)."""
    web, settings = client
    plan_id = _plan(settings, model_id, "elsewhere")
    first = web.get(f"/v1/plans/{plan_id}")
    assert web.get(f"/v1/plans/{plan_id}").headers["etag"] == first.headers["etag"]  # cached

    _write_elsewhere(settings, plan_id, "doc", _doc("w4a8"))
    changed = web.get(f"/v1/plans/{plan_id}")
    assert changed.json()["plan"]["choices"] == {"a": "w4a8"}
    assert changed.headers["etag"] != first.headers["etag"]
    assert web.get(f"/v1/plans/{plan_id}").content == changed.content  # cached again

    _write_elsewhere(settings, plan_id, "doc", _doc("w8a8"))  # back to the first document
    back = web.get(f"/v1/plans/{plan_id}")
    assert back.json()["plan"]["choices"] == {"a": "w8a8"} and back.content == first.content

    _write_elsewhere(settings, plan_id, "validation", "running")
    validated = web.get(f"/v1/plans/{plan_id}").json()
    assert validated["validation"]["status"] == "running"
    assert validated == _uncached(web, plan_id)


def test_concurrent_gets_of_an_uncached_plan_build_it_once(
    client: tuple[TestClient, Settings], model_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients that waited for the same solve GET its plan at once: one request builds the
    resource, the others wait for it and then check its fingerprint (read after they came)."""
    web, settings = client
    plan_id = _plan(settings, model_id, "burst")
    plan_cache.clear()
    builds: list[int] = []
    store = plan_cache.store

    def slow_store(*args: Any) -> tuple[bytes, str]:
        builds.append(args[2])
        time.sleep(0.5)  # a slow build: the other requests arrive meanwhile
        return store(*args)

    monkeypatch.setattr(plan_cache, "store", slow_store)
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(lambda _: web.get(f"/v1/plans/{plan_id}"), range(8)))
    assert [r.status_code for r in replies] == [200] * 8
    assert len({r.content for r in replies}) == 1 and builds == [plan_id]
    monkeypatch.undo()
    assert replies[0].json() == _uncached(web, plan_id)


def test_a_write_during_a_build_shows_at_the_next_get(
    client: tuple[TestClient, Settings], model_id: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that lands after the fingerprint was read and before the resource is built: the
    cache keeps the older fingerprint, so the next GET rebuilds."""
    web, settings = client
    plan_id = _plan(settings, model_id, "mid-build")
    plan_cache.clear()
    store = plan_cache.store

    def store_with_a_write(
        session: Any, database: str, plan: int, build: Callable[[], Any]
    ) -> tuple[bytes, str]:
        def build_after_a_write() -> Any:
            _write_elsewhere(settings, plan, "doc", _doc("w6a8"))
            return build()

        return store(session, database, plan, build_after_a_write)

    monkeypatch.setattr(plan_cache, "store", store_with_a_write)
    assert web.get(f"/v1/plans/{plan_id}").status_code == 200
    monkeypatch.undo()
    assert web.get(f"/v1/plans/{plan_id}").json()["plan"]["choices"] == {"a": "w6a8"}


def test_lost_connections_fall_back_to_the_thread_path(
    client: tuple[TestClient, Settings], model_id: int
) -> None:
    """PostgreSQL restarted (here: every connection of the database ended): the loop's check
    fails, the GET is answered through the thread path (its pool checks connections), and the
    next one checks on the loop again with a new connection."""
    web, settings = client
    if not _postgres(settings):
        pytest.skip(
            "ends PostgreSQL's server connections (pg_terminate_backend): no such thing on SQLite; "
            "runs under the postgresql parameter"
        )
    import psycopg

    plan_id = _plan(settings, model_id, "lost")
    first = web.get(f"/v1/plans/{plan_id}")
    assert web.get(f"/v1/plans/{plan_id}").content == first.content
    database = settings.database.rsplit("/", 1)[1]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
            (database,),
        ).fetchall()
    assert ended
    for _ in range(3):
        r = web.get(f"/v1/plans/{plan_id}")
        assert r.status_code == 200 and r.content == first.content


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


def test_identical_posts_waiting_for_one_solve_get_its_one_plan(
    client: tuple[TestClient, Settings], model_id: int
) -> None:
    """Clients that ask for the same new budget at once share one solve and one stored plan:
    one 201, the others 200 with that plan (answered with what the first stored), which is
    what GET serves; requests that differ only in ``validate`` get plans whose ``validate``
    is theirs."""
    web, _ = client
    auth_header = {"Authorization": f"Bearer {TOKEN}"}
    body = {"model_id": model_id, "budget": {"avg_bits": 5.37}, "candidates": ["w8a8", "w4a8"]}
    body |= {"images": 2}
    ready = web.post("/v1/plans", json=body | {"budget": {"avg_bits": 6.5}}, headers=auth_header)
    assert ready.status_code in (200, 201), ready.text  # the profile is ready (an earlier test)

    with ThreadPoolExecutor(9) as pool:
        replies = list(
            pool.map(lambda _: web.post("/v1/plans", json=body, headers=auth_header), range(9))
        )
    assert sorted(r.status_code for r in replies) == [200] * 8 + [201], [r.text for r in replies]
    assert len({r.json()["id"] for r in replies}) == 1
    plan_id = replies[0].json()["id"]
    assert all(r.headers["location"] == f"/v1/plans/{plan_id}" for r in replies)
    got = web.get(f"/v1/plans/{plan_id}").json()
    for r in replies:
        posted = r.json()
        assert {k: v for k, v in got.items() if k not in ("validation", "refinement")} == {
            k: v for k, v in posted.items() if k not in ("validation", "refinement")
        }

    mixed = body | {"budget": {"avg_bits": 5.41}}

    def post(i: int) -> tuple[bool, Any]:
        validate = i % 3 == 0
        r = web.post("/v1/plans", json=mixed | {"validate": validate}, headers=auth_header)
        return validate, r

    with ThreadPoolExecutor(9) as pool:
        answers = list(pool.map(post, range(9)))
    assert all(r.status_code in (200, 201) for _, r in answers), [r.text for _, r in answers]
    assert all(r.json()["validate"] is validate for validate, r in answers)


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
        # solves give way to the server's requests on a busy machine
        niceness = memo.submit("nice", os.nice, 0).result(120)
        assert niceness == min(os.nice(0) + SOLVER_NICENESS, 19)
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

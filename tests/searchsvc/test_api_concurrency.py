"""Many clients at once on PostgreSQL: every POST /v1/plans gets its plan, none a 500.

Each request used to hold its read connection while it solved and then took a write one; under
bench/api_load.py's closed-loop saturation on PostgreSQL the pool ran dry and 79 of 400 POSTs
failed with a pool TimeoutError after 30 s. The read transaction now ends before the solve.
This test is a load smoke test over real HTTP (128 POSTs from 64 threads): it fails on any 500
or inconsistent answer, but it did not reproduce that pool exhaustion on its own; the bench
does (``--database-url postgresql+psycopg://…``).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from svc_helpers import PG_ADMIN, TOKEN, Server, service_env, wait_job

pytestmark = pytest.mark.service

CANDIDATES = ["w8a8", "w6a8", "w4a8", "w4a16"]
CLIENTS = 64


@pytest.fixture(scope="module")
def own_db(pg_url: str) -> Iterator[str]:
    """A database of this module's own (the session's is shared with tests that count rows)."""
    import psycopg

    name = f"{pg_url.rsplit('/', 1)[1]}_load"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{pg_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, own_db: str) -> Iterator[tuple[str, int]]:
    data_dir = tmp_path_factory.mktemp("concurrency")
    env = service_env(data_dir, database_url=own_db, api_tokens=TOKEN) | {"OMP_NUM_THREADS": "1"}
    srv = Server(env, data_dir / "server.log")
    with srv.client(TOKEN) as api:
        model_id = api.post("/v1/models", json={"name": "sam2-micro"}).json()["id"]
        body = {"model_id": model_id, "budget": {"avg_bits": 7.9}, "candidates": CANDIDATES}
        r = api.post("/v1/plans", json=body | {"images": 2})
        assert r.status_code in (201, 202), r.text
        if r.status_code == 202:  # profile once
            assert wait_job(api, r.json()["job"]["id"])["state"] == "succeeded"
    try:
        yield srv.base, model_id
    finally:
        srv.stop()


def test_concurrent_posts_all_get_their_plan(served: tuple[str, int]) -> None:
    base, model_id = served
    budgets = [round(5.0 + 0.05 * i, 2) for i in range(16)]  # new budgets: each is solved once

    def post(i: int) -> tuple[int, Any]:
        body = {"model_id": model_id, "budget": {"avg_bits": budgets[i % len(budgets)]}}
        body |= {"candidates": CANDIDATES, "images": 2}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            r = client.post("/v1/plans", json=body)
            return r.status_code, r.json()

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(post, range(2 * CLIENTS)))
    bad = [(code, doc) for code, doc in results if code not in (200, 201)]
    assert not bad, bad[:3]
    by_budget: dict[float, set[str]] = {}
    for _, doc in results:
        assert doc["status"] in ("optimal", "feasible"), doc
        assert doc["usage"]["avg_bits"] <= doc["budget"]["avg_bits"] + 1e-9
        choices = str(sorted(doc["plan"]["choices"].items()))
        by_budget.setdefault(doc["budget"]["avg_bits"], set()).add(choices)
    assert sorted(by_budget) == budgets
    assert all(len(v) == 1 for v in by_budget.values())  # one solution per budget (memoised)

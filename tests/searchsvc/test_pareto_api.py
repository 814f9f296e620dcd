"""GET /v1/models/{id}/pareto is an open read that stores nothing (the fast Lagrangian front, or
the exact one once built); POST asks for the exact front as a job. The document is the
``bitbudget.pareto/v1`` format of docs/formats.md. A real server on PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from svc_helpers import TOKEN, Server, service_env, wait_job

pytestmark = pytest.mark.service

DOCS = Path(__file__).resolve().parents[2] / "docs" / "formats.md"
CANDIDATES = ["w8a8", "w4a8", "w4a16"]
QUERY = {"images": 2, "candidates": ",".join(CANDIDATES)}


def documented_example() -> dict:
    """The example document of the ``bitbudget.pareto/v1`` section of docs/formats.md."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Pareto front — `bitbudget.pareto/v1`", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block, "docs/formats.md lost its pareto example"
    return json.loads(block.group(1))


def check_format(doc: dict) -> None:
    """Every field of the documented example is there, with the same JSON type."""
    example = documented_example()
    kinds = {int: (int,), float: (int, float), str: (str,), dict: (dict,), list: (list,)}
    for key, value in example.items():
        assert key in doc, f"{key} missing from {sorted(doc)}"
        if key != "points":
            assert isinstance(doc[key], kinds[type(value)]), (key, doc[key])
    assert doc["format"] == "bitbudget.pareto/v1"
    assert doc["method"] in ("dp", "cpsat", "milp", "lagrangian")  # the front's solver
    for point in doc["points"]:
        for key, value in example["points"][0].items():
            assert key in point and isinstance(point[key], kinds[type(value)]), (key, point)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("pareto")
    srv = Server(service_env(data, database_url=pg_url, api_tokens=TOKEN), data / "server.log")
    yield srv
    srv.stop()


def _artifacts(pg_url: str) -> int:
    with psycopg.connect(pg_url.replace("+psycopg", "")) as conn:
        row = conn.execute("SELECT count(*) FROM artifacts").fetchone()
    return int(row[0]) if row else 0


def test_pareto_read_is_open_and_stores_nothing(server: Server, pg_url: str) -> None:
    with server.client(TOKEN) as api, server.client() as anonymous:
        model_id = api.post("/v1/models", json={"name": "sam2-micro"}).json()["id"]
        path = f"/v1/models/{model_id}/pareto"

        early = anonymous.get(path, params=QUERY)  # no profile yet: a read cannot make one
        assert early.status_code == 409, early.text
        assert f"POST /v1/models/{model_id}/pareto" in early.json()["error"]["message"]

        body = {"model_id": model_id, "budget": {"avg_bits": 6}, "candidates": CANDIDATES}
        queued = api.post("/v1/plans", json=body | {"images": 2})
        assert queued.status_code == 202, queued.text
        assert wait_job(api, queued.json()["job"]["id"])["state"] == "succeeded"

        before = _artifacts(pg_url)
        fast = anonymous.get(path, params=QUERY)
        assert fast.status_code == 200, fast.text
        doc = fast.json()
        check_format(doc)
        assert doc["method"] == doc["solver"] == "lagrangian" and doc["exact"] is False
        assert doc["metric"] == "fisher_kl" and doc["requested_points"] >= len(doc["points"]) > 1
        assert all(p["bound"] <= p["objective"] + 1e-12 and p["gap"] >= 0 for p in doc["points"])
        totals = [p["total"] for p in doc["points"]]
        assert totals == sorted(totals) and all(p["choices"] for p in doc["points"])
        assert anonymous.get(path, params=QUERY | {"resource": "bops"}).status_code == 200
        assert _artifacts(pg_url) == before  # GETs stored nothing

        asked = {"resource": "memory_bytes", "images": 2, "candidates": CANDIDATES}
        assert anonymous.post(path, json=asked).status_code == 401  # the exact front is a write
        job = api.post(path, json=asked)
        assert job.status_code == 202, job.text
        again = api.post(path, json=asked)  # one job per front, not one per request
        assert again.status_code == 200 or again.json()["job"]["id"] == job.json()["job"]["id"]
        assert wait_job(api, job.json()["job"]["id"])["state"] == "succeeded"

        exact = anonymous.get(path, params=QUERY).json()
        check_format(exact)
        assert exact["exact"] is True and exact["method"] in ("cpsat", "dp", "milp")
        assert exact["profile_id"] == doc["profile_id"] and _artifacts(pg_url) == before + 1
        stored = api.post(path, json=asked)
        assert stored.status_code == 200 and stored.json()["points"] == exact["points"]
        bad = api.post(path, json=asked | {"resource": "joules"})
        assert bad.status_code == 422 and "known" in bad.json()["error"]["message"]


def test_pareto_reads_need_no_token_on_a_server_with_tokens(server: Server) -> None:
    with server.client() as anonymous:
        r = anonymous.get("/v1/models/1/pareto", params={"resource": "joules"})
        assert r.status_code == 422 and r.json()["error"]["type"] != "Unauthorized"
        r = anonymous.get("/v1/models/987654/pareto")
        assert r.status_code == 404, r.text

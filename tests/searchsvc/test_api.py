"""The REST API over HTTP (a real ``bitbudget serve`` on PostgreSQL): models endpoints, auth,
and bad input that must give a 4xx with a message a user can act on — never a 500."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from svc_helpers import TOKEN, Server, service_env

pytestmark = pytest.mark.service


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("api")
    (data / "ckpt").mkdir()
    env = service_env(
        data, database_url=pg_url, api_tokens=TOKEN, checkpoint_dirs=str(data / "ckpt")
    )
    srv = Server(env, data / "server.log")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client(TOKEN) as client:
        yield client


@pytest.fixture(scope="module")
def model_id(api: httpx.Client) -> int:
    r = api.post("/v1/models", json={"name": "sam2-micro", "image_size": 256})
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _error(r: httpx.Response, status: int, *needles: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()["error"]
    assert set(body) >= {"type", "message"}
    for needle in needles:
        assert needle in body["message"], body["message"]
    return str(body["message"])


def test_register_list_and_read_models(api: httpx.Client, model_id: int) -> None:
    again = api.post("/v1/models", json={"name": "sam2-micro", "image_size": 256})
    assert again.status_code == 200 and again.json()["id"] == model_id  # built once
    listed = api.get("/v1/models").json()
    assert listed["total"] >= 1 and any(m["id"] == model_id for m in listed["items"])
    model = api.get(f"/v1/models/{model_id}").json()
    assert model["random_weights"] is True and model["weights_hash"]
    summary = model["summary"]
    assert summary["total"]["linear"] > 0 and summary["total"]["macs"] > 0
    assert {"image_encoder", "mask_decoder"} <= set(summary["components"])
    assert sum(c["params"] for c in summary["components"].values()) == summary["total"]["params"]


def test_writes_need_a_valid_token(server: Server, api: httpx.Client, model_id: int) -> None:
    with server.client() as anonymous:
        r = anonymous.post("/v1/models", json={"name": "sam-micro"})
        _error(r, 401, "missing bearer token")
        assert r.headers["www-authenticate"] == "Bearer"
        _error(anonymous.delete("/v1/jobs/1"), 401)
        _error(anonymous.post("/v1/plans", json={}), 401)
        assert anonymous.get(f"/v1/models/{model_id}").status_code == 200  # reads are open
    with server.client("bb_wrong_token_wrong_token") as wrong:
        _error(wrong.post("/v1/models", json={"name": "sam-micro"}), 401, "invalid")
    bad_scheme = {"Authorization": f"Basic {TOKEN}"}
    _error(api.post("/v1/models", json={}, headers=bad_scheme), 401, "Bearer")


def test_cli_token_is_accepted(server: Server, pg_url: str, tmp_path: Path) -> None:
    env = service_env(tmp_path, database_url=pg_url)
    out = subprocess.run(
        [sys.executable, "-m", "searchsvc.cli", "token", "create", "--name", "test"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip().splitlines()[-1]
    assert token.startswith("bb_")
    with server.client(token) as client:
        r = client.post("/v1/models", json={"name": "sam2-micro", "image_size": 256})
        assert r.status_code == 200


@pytest.mark.parametrize(
    "body, status, needles",
    [
        ({"name": "sam3-huge"}, 404, ("unknown model 'sam3-huge'", "sam2.1-hiera-tiny")),
        ({"name": "sam2-micro", "image_size": 999}, 422, ("image_size 999",)),
        ({"name": "sam2-micro", "seed": -1}, 422, ("seed",)),
        ({"name": "sam2-micro", "colour": "red"}, 422, ("colour",)),
        ({"image_size": 256}, 422, ("name",)),
        ({"name": "sam2-micro", "checkpoint": "/etc/passwd"}, 403, ("outside the allowed",)),
    ],
)
def test_bad_model_requests(api: httpx.Client, body: dict, status: int, needles: tuple) -> None:
    _error(api.post("/v1/models", json=body), status, *needles)


def test_checkpoint_inside_allowed_dir_must_exist(api: httpx.Client, server: Server) -> None:
    path = server.log.parent / "ckpt" / "missing.pt"
    r = api.post("/v1/models", json={"name": "sam2-micro", "checkpoint": str(path)})
    _error(r, 422, "does not exist")


def test_malformed_json_is_a_400(api: httpx.Client) -> None:
    r = api.post("/v1/models", content=b'{"name": ', headers={"content-type": "application/json"})
    _error(r, 400, "not valid JSON")
    r = api.post("/v1/plans", content=b"[1, 2", headers={"content-type": "application/json"})
    _error(r, 400, "not valid JSON")


@pytest.mark.parametrize(
    "budget, extra, status, needles",
    [
        ({"memory_mb": -5}, {}, 422, ("budget.memory_mb", "greater than 0")),
        ({"avg_bits": 0.5}, {}, 422, ("avg_bits",)),
        ({}, {}, 422, ("at least one of",)),
        ({"latency_ms": 2}, {}, 422, ("needs a hardware profile",)),
        ({"latency_ms": 2, "hardware": "tpu9"}, {}, 422, ("unknown hardware", "nvidia_t4")),
        ({"memory_mb": 5}, {"solver": "magic"}, 422, ("unknown solver", "cpsat", "greedy")),
        ({"memory_mb": 5}, {"method": "vibes"}, 422, ("unknown method", "fisher_kl")),
        ({"memory_mb": 5}, {"candidates": ["w9a9"]}, 422, ("w9a9",)),
        ({"memory_mb": 5}, {"model_id": 424242}, 404, ("model 424242",)),
    ],
)
def test_bad_plan_requests(
    api: httpx.Client, model_id: int, budget: dict, extra: dict, status: int, needles: tuple
) -> None:
    body = {"model_id": model_id, "budget": budget} | extra
    _error(api.post("/v1/plans", json=body), status, *needles)


def test_missing_things_are_404s(api: httpx.Client) -> None:
    _error(api.get("/v1/models/987654"), 404, "not registered")
    _error(api.get("/v1/plans/987654"), 404, "does not exist")
    _error(api.get("/v1/profiles/987654"), 404, "does not exist")
    _error(api.get("/v1/jobs/987654"), 404, "does not exist")
    _error(api.delete("/v1/jobs/987654"), 404, "does not exist")
    _error(api.get("/v1/nowhere"), 404, "no such endpoint")
    _error(api.get("/v1/models/abc"), 422, "model_id")


def test_model_specs_list_what_can_be_registered(server: Server) -> None:
    with server.client() as anonymous:  # a read: no token
        specs = anonymous.get("/v1/model-specs").json()
    by_name = {s["name"]: s for s in specs}
    assert {"sam2-micro", "sam-micro", "sam2.1-hiera-tiny", "sam-vit-b"} <= set(by_name)
    micro = by_name["sam2-micro"]
    assert micro["family"] == "sam2" and micro["default_image_size"] in micro["image_sizes"]


def test_pareto_input_checks(api: httpx.Client, model_id: int) -> None:
    _error(api.get(f"/v1/models/{model_id}/pareto", params={"resource": "joules"}), 422, "known")
    r = api.get(f"/v1/models/{model_id}/pareto", params={"resource": "latency_ms"})
    _error(r, 422, "hardware")


def test_health_docs_and_listing(api: httpx.Client) -> None:
    health = api.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "database": "ok", "broker": "embedded"}
    assert api.get("/docs").status_code == 200
    paths = api.get("/openapi.json").json()["paths"]
    for path in ("/v1/models", "/v1/plans", "/v1/jobs/{job_id}", "/v1/models/{model_id}/pareto"):
        assert path in paths
    page = api.get("/v1/plans", params={"limit": 1, "offset": 0}).json()
    assert page["limit"] == 1 and "items" in page
    _error(api.get("/v1/plans", params={"limit": 0}), 422, "limit")

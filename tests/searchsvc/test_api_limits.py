"""Bad input from the fuzz campaign (issue 20) over real HTTP (``bitbudget serve`` on PostgreSQL,
token on): ids outside the database's integers, budgets that overflow, impossible checkpoint
paths, oversized bodies and unauthenticated ones each get one 4xx naming the field — never a
500; and the OpenAPI document declares what the server answers."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from svc_helpers import TOKEN, Server, service_env

pytestmark = pytest.mark.service

LIMIT = 65_536  # BITBUDGET_MAX_BODY_BYTES of this server
BIG = 2**31  # one past PostgreSQL's `integer`


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("limits")
    (data / "ckpt").mkdir()
    env = service_env(
        data,
        database_url=pg_url,
        api_tokens=TOKEN,
        checkpoint_dirs=str(data / "ckpt"),
        max_body_bytes=LIMIT,
    )
    srv = Server(env, data / "server.log")
    yield srv
    srv.stop()
    assert " 500 " not in srv.output() and "Traceback" not in srv.output()


@pytest.fixture(scope="module")
def api(server: Server) -> Iterator[httpx.Client]:
    with server.client(TOKEN) as client:
        yield client


def _error(r: httpx.Response, status: int, *needles: str) -> None:
    assert r.status_code == status, r.text
    message = r.json()["error"]["message"]
    for needle in needles:
        assert needle in message, message


@pytest.mark.parametrize("bad", [BIG, 2**63, 2**64, -(2**31) - 1, 0])
def test_ids_no_row_can_have_are_404(api: httpx.Client, bad: int) -> None:
    for method, path in [
        ("GET", "/v1/models/{}"),
        ("GET", "/v1/models/{}/pareto"),
        ("GET", "/v1/plans/{}"),
        ("GET", "/v1/plans/{}/artifact"),
        ("POST", "/v1/plans/{}/validate"),
        ("GET", "/v1/profiles/{}"),
        ("GET", "/v1/jobs/{}"),
        ("DELETE", "/v1/jobs/{}"),
        ("GET", "/dashboard/models/{}"),
        ("GET", "/dashboard/plans/{}"),
    ]:
        r = api.request(method, path.format(bad))
        assert r.status_code == 404, (method, path, r.text)


def test_integers_outside_the_database_name_the_field(api: httpx.Client) -> None:
    _error(api.get("/v1/plans", params={"model_id": BIG}), 422, "model_id")
    _error(api.get("/v1/plans", params={"offset": 2**63}), 422, "offset")
    _error(api.get("/v1/models", params={"offset": 2**64}), 422, "offset")
    plan = {"model_id": BIG, "budget": {"avg_bits": 4}}
    _error(api.post("/v1/plans", json=plan), 422, "model_id")
    _error(api.post("/v1/gate", json={"plan_id": BIG, "max_size_mb": 1}), 422, "plan_id")
    _error(api.post("/v1/models", json={"name": "sam2-micro", "seed": BIG}), 422, "seed")
    assert api.get("/dashboard/models/1", params={"profile": BIG}).status_code == 422


@pytest.mark.parametrize(
    "budget, field",
    [
        ('{"memory_mb": 1e308}', "budget.memory_mb"),
        ('{"memory_mb": Infinity}', "budget.memory_mb"),
        ('{"memory_mb": NaN}', "budget.memory_mb"),
        ('{"bops_g": 1e303}', "budget.bops_g"),
        ('{"latency_ms": Infinity, "hardware": "nvidia_t4"}', "budget.latency_ms"),
        ('{"memory_mb": "6"}', "budget.memory_mb"),  # strict types: no strings as numbers
        ('{"memory_mb": true}', "budget.memory_mb"),
        ('{"avg_bits": 4, "hardware": ""}', "budget.hardware"),
    ],
)
def test_budgets_that_overflow_or_are_not_numbers_name_the_field(
    api: httpx.Client, budget: str, field: str
) -> None:
    body = '{"model_id": 1, "budget": ' + budget + "}"
    headers = {"Content-Type": "application/json"}
    _error(api.post("/v1/plans", content=body, headers=headers), 422, field)


def test_impossible_checkpoints_name_the_field(api: httpx.Client, server: Server) -> None:
    folder = Path(server.log.parent) / "ckpt"
    for path, needle in [
        (f"{folder}/a\x00b.pt", "checkpoint"),
        (f"{folder}/{'n' * 300}.pt", "checkpoint: a name in the path is 303 bytes"),
        (f"{folder}/" + "d/" * 2100 + "x.pt", "checkpoint"),
    ]:
        body = {"name": "sam2-micro", "checkpoint": path}
        _error(api.post("/v1/models", json=body), 422, needle)
    (folder / "garbage.pt").write_bytes(bytes.fromhex("80026851"))  # KeyError in torch.load
    body = {"name": "sam2-micro", "checkpoint": str(folder / "garbage.pt")}
    r = api.post("/v1/models", json=body)
    _error(r, 422, "cannot be read as plain tensors")
    assert r.json()["error"]["type"] == "BadCheckpoint"


def _raw_post(server: Server, path: str, headers: str, body: bytes) -> tuple[str, float]:
    """Send a request's head and the first bytes of its body; the status line and how long
    the answer took."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n{headers}"
        sock.sendall(head.encode() + b"\r\n" + body)
        answer = b""
        while True:  # the head and the body may come in separate packets: read the whole answer
            part = sock.recv(65536)
            answer += part
            head_end = answer.find(b"\r\n\r\n")
            if not part or (head_end >= 0 and _complete(answer, head_end)):
                break
    return answer.decode(errors="replace"), time.monotonic() - started


def _complete(answer: bytes, head_end: int) -> bool:
    """Whether ``answer`` holds the whole body its Content-Length announces."""
    for line in answer[:head_end].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(answer) - head_end - 4 >= int(value.strip())
    return False


def test_oversized_bodies_are_413_before_they_are_read(server: Server, api: httpx.Client) -> None:
    # 50 MB declared, 1 byte sent: answered at once (the rest is never read)
    answer, took = _raw_post(server, "/v1/gate", "Content-Length: 50000000\r\n", b"{")
    assert answer.startswith("HTTP/1.1 413") and '"TooLarge"' in answer and took < 5
    answer, _ = _raw_post(server, "/v1/plans", "Content-Length: 50000000\r\n", b"{")
    assert answer.startswith("HTTP/1.1 413")  # unauthenticated: not parsed either

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"plan_id": 1, "max_size_mb": 1, "validation": {"x": "'
        for _ in range(2 * LIMIT // 4096):
            yield b"a" * 4096
        yield b'"}}'

    r = api.post("/v1/gate", content=chunks(), headers={"Content-Type": "application/json"})
    _error(r, 413, "BITBUDGET_MAX_BODY_BYTES")
    assert r.json()["error"]["type"] == "TooLarge"


def test_the_token_is_checked_before_the_body_is_parsed(server: Server) -> None:
    with server.client() as anonymous:
        for path in ("/v1/plans", "/v1/models", "/v1/models/1/profiles"):
            r = anonymous.post(path, content=b"{not json", headers={"Content-Type": "text/x"})
            _error(r, 401, "bearer token")  # not 400 (malformed) nor 422: never parsed
        big = json.dumps({"model_id": 1, "budget": {"avg_bits": 4}, "x": "a" * (LIMIT // 2)})
        _error(anonymous.post("/v1/plans", content=big), 401)


def test_lists_and_names_are_bounded(api: httpx.Client) -> None:
    many = [f"w{w}a{a}" for w in range(1, 9) for a in range(1, 9)] * 2
    plan = {"model_id": 1, "budget": {"avg_bits": 4}, "candidates": many}
    _error(api.post("/v1/plans", json=plan), 422, "candidates")
    _error(api.post("/v1/models/1/profiles", json={"candidates": many}), 422, "candidates")
    _error(api.post("/v1/plans", json=plan | {"candidates": ["w4a8"], "method": "m" * 65}), 422)


def test_405_names_every_allowed_method(api: httpx.Client) -> None:
    r = api.put("/v1/models")
    assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "POST"}
    assert r.json()["error"]["message"].endswith("allowed: GET, POST")
    assert api.patch("/v1/jobs/1").headers["allow"] == "GET, DELETE"


def test_openapi_declares_the_errors_and_the_rules(api: httpx.Client) -> None:
    doc = api.get("/openapi.json").json()
    error_ref = "#/components/schemas/ErrorOut"
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            responses = op["responses"]
            where = (method, path)
            assert "503" in responses and "Retry-After" in responses["503"]["headers"], where
            for code, entry in responses.items():
                if code >= "400":
                    assert entry["content"]["application/json"]["schema"]["$ref"] == error_ref
            if "requestBody" in op:
                assert {"400", "413", "422"} <= set(responses), where
            if "{" in path:
                assert "404" in responses, where
            if method in ("post", "delete") and path != "/v1/gate":
                assert "401" in responses and op["security"], where
    paths = doc["paths"]
    assert "409" in paths["/v1/jobs/{job_id}"]["delete"]["responses"]
    gate = paths["/v1/gate"]["post"]["responses"]["200"]["content"]
    assert "application/xml" in gate and "application/json" in gate
    schemas = doc["components"]["schemas"]
    assert len(schemas["GateRequest"]["oneOf"]) == 2
    assert {tuple(s["required"]) for s in schemas["Budget"]["anyOf"]} == {
        ("memory_mb",),
        ("latency_ms",),
        ("bops_g",),
        ("avg_bits",),
    }
    assert schemas["Budget"]["then"]["required"] == ["hardware"]
    assert "HTTPValidationError" not in schemas

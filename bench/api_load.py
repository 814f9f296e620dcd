"""API under load: 50 concurrent clients POST budgets and GET plans against a profiled model.

Starts ``bitbudget serve --dev`` (the embedded default, or ``--database-url``) on a free loopback
port in a temporary data dir, registers sam2-micro, profiles it once (fisher_kl, 2 images), then
runs two bounded phases. In each, every client does ``--requests`` rounds of POST a budget (drawn
from a pool of ``--budgets`` distinct ones: a new budget is solved once, a repeated one is served
from the stored plan) then GET that plan:

* ``paced``: 50 users, each pausing ``--think`` seconds (±50 %) between rounds;
* ``saturation``: the same 50 clients with no pause (closed loop) — throughput-bound, so its
  latencies are concurrency / throughput, whatever the per-request cost.

Reports p50/p95 per kind, status counts, errors, throughput and the server process's CPU time
per request for both phases, and the machine's load average (the latencies are only comparable
at similar load; the CPU time much less disturbed by other work). The load generator runs on the
same cores as the server, so it is kept lean: its clients are made before the clock starts, and
by default it speaks plain HTTP/1.1 keep-alive (``--client raw``) instead of httpx, which costs as
much CPU per request as the server does (``--client httpx`` measures with it). ``--trace FILE``
writes every request (kind, client, round, start, latency, status) for a closer look.
Run: .venv/bin/python bench/api_load.py  (writes bench/results/api_load.json)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

OUT = Path(__file__).parent / "results" / "api_load.json"
CANDIDATES = ["w8a8", "w6a8", "w4a8", "w4a16"]
TARGETS = {"post_p95_s": 1.0, "get_p95_s": 0.05, "errors": 0}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start(data: Path, database_url: str | None) -> tuple[subprocess.Popen, str, str]:
    """``bitbudget serve --dev``; returns the process, its base URL and the dev token."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BITBUDGET_")}
    env |= {"BITBUDGET_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
    if database_url:
        env["BITBUDGET_DATABASE_URL"] = database_url
    log = open(data / "server.log", "w")  # noqa: SIM115  (closed with the process)
    cmd = [sys.executable, "-m", "searchsvc.cli", "serve", "--port", str(port), "--dev"]
    proc = subprocess.Popen(cmd + ["--log-level", "warning"], env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    match = re.search(r"token:\s+(bb_\S+)", (data / "server.log").read_text())
    if match is None:
        proc.kill()
        raise RuntimeError((data / "server.log").read_text())
    return proc, base, match.group(1)


def _profiled_model(client: httpx.Client) -> tuple[int, float]:
    """Register sam2-micro and profile it; returns (model id, profiling seconds)."""
    model_id = (
        client.post("/v1/models", json={"name": "sam2-micro"}).raise_for_status().json()["id"]
    )
    start = time.perf_counter()
    body = {"metric": "fisher_kl", "candidates": CANDIDATES, "images": 2}
    reply = client.post(f"/v1/models/{model_id}/profiles", json=body).raise_for_status().json()
    while reply["job"] is not None:
        job = client.get(f"/v1/jobs/{reply['job']['id']}").json()
        if job["state"] in ("failed", "cancelled"):
            raise RuntimeError(f"profiling {job['state']}: {job['error']}")
        if job["state"] == "succeeded":
            break
        time.sleep(0.5)
    return model_id, time.perf_counter() - start


def _budgets(count: int, shift: float) -> list[dict[str, float]]:
    """Feasible, distinct budgets: memory (MB) and average bits (``shift`` moves the pool)."""
    half = max(count // 2, 1)
    memory = [round(1.30 + shift + 0.6 * i / max(half - 1, 1), 4) for i in range(half)]
    bits = [round(5.0 + shift + 2.8 * i / max(count - half - 1, 1), 4) for i in range(count - half)]
    out: list[dict[str, float]] = [{"memory_mb": m} for m in memory]
    return out + [{"avg_bits": b} for b in bits]


@dataclass
class _Reply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class _RawClient:
    """A lean HTTP/1.1 keep-alive client on one asyncio connection (``--client raw``).

    The load generator shares the machine's cores with the server; httpx spends ~3 ms of CPU per
    request (as much as the server) and, with 50 clients on one event loop, that time queues in
    front of every measurement. This client writes the request and reads a Content-Length body
    (uvicorn always sends one for these endpoints): ~0.1 ms per request.
    """

    def __init__(self, base: str, headers: dict[str, str], timeout: float) -> None:
        url = httpx.URL(base)
        self.host, self.port, self.timeout = url.host, url.port or 80, timeout
        self.headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def __aenter__(self) -> _RawClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None

    async def _exchange(self, request: bytes) -> _Reply:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
        fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
        body = await reader.readexactly(int(fields.get("content-length", "0")))
        if fields.get("connection", "").lower() == "close":
            writer.close()
            self._streams = None
        return _Reply(status, body)

    async def _send(self, method: str, path: str, body: bytes | None) -> _Reply:
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.headers}"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        request = (head + "\r\n").encode() + (body or b"")
        fresh = self._streams is None
        try:
            return await asyncio.wait_for(self._exchange(request), self.timeout)
        except (ConnectionError, asyncio.IncompleteReadError):
            self._streams = None
            if fresh:
                raise
            # the server closed an idle keep-alive connection: once more on a new one
            return await asyncio.wait_for(self._exchange(request), self.timeout)

    async def post(self, path: str, json: Any) -> _Reply:
        return await self._send("POST", path, _dumps(json).encode())

    async def get(self, path: str) -> _Reply:
        return await self._send("GET", path, None)


def _dumps(doc: Any) -> str:
    return json.dumps(doc)  # (``json`` is a parameter name in the methods above)


_FAILURES = (httpx.HTTPError, OSError, asyncio.IncompleteReadError, asyncio.TimeoutError)


async def _client(
    client: Any,
    model_id: int,
    budgets: list[dict],
    n: int,
    offset: int,
    think: float,
    out: dict,
) -> None:
    rng = random.Random(offset)
    await asyncio.sleep(rng.uniform(0, think))  # clients arrive spread over one think time
    extra = {"candidates": CANDIDATES, "images": 2}
    async with client:
        for i in range(n):
            budget = budgets[(offset + i) % len(budgets)]
            start = time.perf_counter()
            try:
                r = await client.post(
                    "/v1/plans", json={"model_id": model_id, "budget": budget} | extra
                )
            except _FAILURES as exc:
                out["errors"].append(f"POST: {exc!r}")
                continue
            out["post"].append(time.perf_counter() - start)
            out["post_status"].append(r.status_code)
            out["trace"].append(("POST", offset, i, start, out["post"][-1], r.status_code))
            if r.status_code not in (200, 201):
                out["errors"].append(f"POST {budget}: {r.status_code} {r.text[:200]}")
                continue
            start = time.perf_counter()
            try:
                g = await client.get(f"/v1/plans/{r.json()['id']}")
            except _FAILURES as exc:
                out["errors"].append(f"GET: {exc!r}")
                continue
            out["get"].append(time.perf_counter() - start)
            out["trace"].append(("GET", offset, i, start, out["get"][-1], g.status_code))
            if g.status_code != 200:
                out["errors"].append(f"GET: {g.status_code} {g.text[:200]}")
            await asyncio.sleep(rng.uniform(0.5, 1.5) * think)


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)], 4)


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_s": _pct(values, 0.50),
        "p95_s": _pct(values, 0.95),
        "max_s": round(max(values), 4) if values else None,
        "mean_s": round(statistics.fmean(values), 4) if values else None,
    }


async def _load(
    args: argparse.Namespace, base: str, token: str, model_id: int, think: float, seed: int
) -> dict:
    out: dict[str, list] = {"post": [], "get": [], "post_status": [], "errors": [], "trace": []}
    budgets = _budgets(args.budgets, 0.0 if think else 0.01)  # fresh budgets in each phase
    # every client has its own connection; they are made before the clock starts and share one
    # TLS context: building one per client (httpx loads the CA bundle, ~80 ms of CPU each) used
    # to stall this event loop for seconds at the start of a phase, which the first round's
    # latencies then counted as server time
    tls = ssl.create_default_context()
    headers = {"Authorization": f"Bearer {token}"}
    clients: list[Any] = [
        _RawClient(base, headers, timeout=120)
        if args.client == "raw"
        else httpx.AsyncClient(base_url=base, headers=headers, timeout=120, verify=tls)
        for _ in range(args.clients)
    ]
    start = time.perf_counter()
    await asyncio.gather(
        *(
            _client(client, model_id, budgets, args.requests, seed + c * args.requests, think, out)
            for c, client in enumerate(clients)
        )
    )
    out["wall_s"] = [time.perf_counter() - start]
    out["trace"] = [
        (k, c, i, round(t - start, 4), round(s, 4), code) for k, c, i, t, s, code in out["trace"]
    ]
    return out


def _cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used so far (Linux; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _measured(pid: int, run: Any) -> dict:
    """``run()``'s raw results, with the server process's CPU seconds meanwhile (its own
    threads; not the solver processes, not the database): a measure of the server's cost that
    other work on the machine disturbs far less than the latencies."""
    before = _cpu_s(pid)
    raw = run()
    after = _cpu_s(pid)
    raw["server_cpu_s"] = None if before is None or after is None else after - before
    return raw


def _scenario(raw: dict, think: float) -> dict[str, Any]:
    """Latencies, statuses, errors and throughput of one load phase, against the targets."""
    statuses = raw["post_status"]
    out: dict[str, Any] = {
        "think_time_s": think,
        "post": _summary(raw["post"])
        | {"created_201": statuses.count(201), "stored_200": statuses.count(200)},
        "get": _summary(raw["get"]),
        "errors": len(raw["errors"]),
        "error_samples": raw["errors"][:5],
        "requests_per_s": round((len(raw["post"]) + len(raw["get"])) / raw["wall_s"][0], 1),
    }
    if raw.get("server_cpu_s") is not None:
        requests = len(raw["post"]) + len(raw["get"])
        out["server_cpu_s"] = round(raw["server_cpu_s"], 2)
        out["server_cpu_ms_per_request"] = round(1000 * raw["server_cpu_s"] / max(requests, 1), 2)
    post_p95, get_p95 = out["post"]["p95_s"], out["get"]["p95_s"]
    out["targets_met"] = {
        "post_p95": post_p95 is not None and post_p95 <= TARGETS["post_p95_s"],
        "get_p95": get_p95 is not None and get_p95 <= TARGETS["get_p95_s"],
        "errors": out["errors"] == TARGETS["errors"],
    }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark and write the JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=8, help="POSTs per client")
    parser.add_argument("--budgets", type=int, default=16, help="distinct budgets in the pool")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between rounds, s")
    parser.add_argument("--database-url", default=None, help="default: the embedded SQLite")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="load generator's HTTP client: a lean keep-alive one (default) or httpx",
    )
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--keep", action="store_true", help="keep the data dir and server log")
    parser.add_argument(
        "--trace",
        type=Path,
        default=None,
        help="also write every request (kind, client, round, "
        "start s, latency s, status) of both phases to this JSON file",
    )
    args = parser.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="bb-api-load-")
    try:
        proc, base, token = _start(Path(tmp), args.database_url)
        try:
            with httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=600
            ) as client:
                model_id, profile_s = _profiled_model(client)
                warm = {"model_id": model_id, "budget": {"memory_mb": 1.95}, "images": 2}
                client.post("/v1/plans", json=warm | {"candidates": CANDIDATES})
            load_avg = os.getloadavg()
            paced = _measured(
                proc.pid, lambda: asyncio.run(_load(args, base, token, model_id, args.think, 0))
            )
            burst = _measured(
                proc.pid, lambda: asyncio.run(_load(args, base, token, model_id, 0.0, 10_000))
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    finally:
        if args.keep:
            print(f"data dir and server log kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    result = {
        "bench": "api_load",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before": [round(x, 2) for x in load_avg],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
        },
        "config": {
            "clients": args.clients,
            "posts_per_client": args.requests,
            "distinct_budgets": args.budgets,
            "database": "postgresql" if args.database_url else "sqlite (embedded)",
            "model": "sam2-micro",
            "profile": {"metric": "fisher_kl", "candidates": CANDIDATES, "images": 2},
            "solver": "cpsat (server default)",
            "client": args.client,
        },
        "profile_seconds": round(profile_s, 2),
        "targets": TARGETS,
        "paced": _scenario(paced, args.think),
        "saturation": _scenario(burst, 0.0),
    }
    if args.trace is not None:
        args.trace.write_text(json.dumps({"paced": paced["trace"], "saturation": burst["trace"]}))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()

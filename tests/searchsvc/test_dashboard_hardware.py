"""The dashboard's Hardware pages in-process on a real app and database: the listing (stored
tables with their host, shipped estimates), one measured table's heatmap, and the HTML 404."""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from searchsvc.app import create_app
from searchsvc.dashboard.hardware import heatmap_rows
from searchsvc.settings import Settings

TOKEN = "bb_hw_" + "z" * 40


def _table() -> dict[str, Any]:
    rng = random.Random(0)
    options = ("w8a8", "w4a16", "w16a16")
    cells = {
        f"image_encoder.blocks.{i}.qkv": {
            o: {"median_ms": rng.uniform(0.05, 5.0), "spread": 0.01, "repeats": 7} for o in options
        }
        for i in range(5)
    }
    return {
        "format": "bitbudget.hardware/v1",
        "kind": "measured",
        "name": "bench-box",
        "model": "sam2-micro",
        "image_size": 256,
        "measured": {
            "runtime": "onnxruntime",
            "runtime_version": "1.23.2",
            "threads": 2,
            "warmup": 3,
            "repeats": 7,
            "host": "jetson-7",
            "cpu": "ARMv8 Processor rev 1 (v8l)",
            "gpu": None,
            "date": "2026-12-05T07:00:00+00:00",
        },
        "float_ms": {"median_ms": 12.5, "spread": 0.4, "repeats": 7},
        "fixed_ms": 1.25,
        "latency_table": cells,
    }


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("dash-hw"), api_tokens=[TOKEN])
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/v1/hardware",
            json={"table": _table()},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        assert r.status_code == 201, r.text
        yield client


def test_hardware_listing(web: TestClient) -> None:
    page = web.get("/dashboard/hardware")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    rows = re.findall(r'<tr class="hw" data-name="([^"]+)" data-kind="([^"]+)"', page.text)
    kinds = dict(rows)
    assert kinds["bench-box"] == "measured" and kinds["nvidia_t4"] == "estimate"
    assert "jetson-7" in page.text and ">Hardware</a>" in page.text


def test_measured_heatmap(web: TestClient) -> None:
    table = _table()
    page = web.get("/dashboard/hardware/bench-box")
    assert page.status_code == 200
    assert "onnxruntime 1.23.2, 2 threads" in page.text and "ARMv8 Processor" in page.text
    cells = re.findall(r'<td class="hm" style="background: (rgb\([^)]*\))"', page.text)
    assert len(cells) == 5 * 3
    options, rows = heatmap_rows(table)
    assert options == ["w16a16", "w4a16", "w8a8"] and len(rows) == 5
    flat = [c for r in rows for c in r["cells"]]
    slowest = max(flat, key=lambda c: c["ms"])
    fastest = min(flat, key=lambda c: c["ms"])
    assert slowest["color"] == "rgb(175,45,30)" and fastest["color"] == "rgb(255,245,200)"


def test_estimate_and_missing(web: TestClient) -> None:
    page = web.get("/dashboard/hardware/nvidia_t4")
    assert page.status_code == 200 and "roofline estimate" in page.text
    missing = web.get("/dashboard/hardware/nope")
    assert missing.status_code == 404 and "nope" in missing.text
    assert "text/html" in missing.headers["content-type"]

"""Helpers of the export tests: a solved sam2-micro plan over HTTP, and the checks every
downloaded export must pass (the zip's sha256 header, its three files, ONNX Runtime loads both
graphs)."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from typing import Any

import httpx
from svc_helpers import wait_job

CANDIDATES = ["w8a8", "w4a16"]
FILES = {"image_encoder.onnx", "mask_decoder.onnx", "manifest.json"}


def solved_plan(api: httpx.Client, avg_bits: float = 6) -> dict[str, Any]:
    """Register sam2-micro (256 px) and solve a small plan over it; the plan resource."""
    r = api.post("/v1/models", json={"name": "sam2-micro", "image_size": 256})
    assert r.status_code in (200, 201), r.text
    body = {"model_id": r.json()["id"], "budget": {"avg_bits": avg_bits}}
    r = api.post("/v1/plans", json=body | {"candidates": CANDIDATES, "images": 2})
    if r.status_code == 202:
        assert wait_job(api, r.json()["job"]["id"])["state"] == "succeeded"
        plan_id = r.json()["plan"]["id"]
    else:
        assert r.status_code in (200, 201), r.text
        plan_id = r.json()["id"]
    plan = api.get(f"/v1/plans/{plan_id}").json()
    assert plan["status"] in ("optimal", "feasible"), plan
    return plan


def check_download(api: httpx.Client, export: dict[str, Any]) -> dict[str, bytes]:
    """Download a finished export: the zip matches its sha256 header and the export resource,
    holds the two graphs and the manifest, and ONNX Runtime loads both graphs. Its members."""
    import onnxruntime

    r = api.get(export["url"])
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert f"plan-{export['plan_id']}-export-{export['id']}.zip" in r.headers["content-disposition"]
    digest = hashlib.sha256(r.content).hexdigest()
    assert r.headers["x-bitbudget-sha256"] == digest == export["sha256"]
    assert len(r.content) == export["zip_bytes"]
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        members = {name: zf.read(name) for name in zf.namelist()}
    assert set(members) == FILES
    assert sum(len(b) for b in members.values()) == export["file_bytes"]
    assert int(r.headers["x-bitbudget-file-bytes"]) == export["file_bytes"]
    manifest = json.loads(members["manifest.json"])
    assert manifest["format"] == "bitbudget.onnx_export/v1" == export["manifest"]["format"]
    for name in ("image_encoder.onnx", "mask_decoder.onnx"):
        session = onnxruntime.InferenceSession(members[name], providers=["CPUExecutionProvider"])
        assert session.get_inputs() and session.get_outputs()
    return members

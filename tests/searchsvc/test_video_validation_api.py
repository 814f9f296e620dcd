"""Video validation over HTTP (a real ``bitbudget serve`` on PostgreSQL, in-process jobs):
``"validate": {"video": true}`` on plan creation and on ``POST /v1/plans/{id}/validate`` tracks
short synthetic clips with the plan on sam2-micro and stores J&F with the validation, next to
the image fidelity; a plain ``"validate": true`` keeps working and measures no video."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from svc_helpers import TOKEN, Server, service_env, wait_job

pytestmark = [pytest.mark.service, pytest.mark.slow]

VIDEO = {"video": True, "clips": 1, "frames": 4, "policy": {"name": "sis", "capacity": 2}}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[httpx.Client]:
    data_dir = tmp_path_factory.mktemp("video-validation")
    env = service_env(data_dir, database_url=pg_url, api_tokens=TOKEN) | {"OMP_NUM_THREADS": "1"}
    srv = Server(env, data_dir / "server.log")
    try:
        with srv.client(TOKEN) as client:
            yield client
    finally:
        srv.stop()


def _validated(api: httpx.Client, plan_id: int, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        plan = api.get(f"/v1/plans/{plan_id}").json()
        v = plan.get("validation")
        if v is not None and v["status"] not in ("pending", "running"):
            return plan
        time.sleep(0.5)
    raise AssertionError(f"plan {plan_id} was not validated: {plan}")


def _check_video(validation: dict[str, Any], frames: int) -> None:
    assert validation["status"] in ("passed", "failed"), validation
    doc = validation["validation"]
    video = doc["video"]
    assert video["format"] == "bitbudget.video_validation/v1"
    assert video["model"]["name"] == "sam2-micro" and video["random_weights"] is True
    assert video["policy"] == {"name": "sis", "k": 3, "capacity": 2}
    assert len(video["clips"]) == 1 and video["clips"][0]["frames"] == frames
    jf = video["summary"]["vs_float"]
    assert 0 <= jf["J"] <= 100 and 0 <= jf["F"] <= 100
    assert jf["JF"] == pytest.approx((jf["J"] + jf["F"]) / 2, abs=1e-3)
    assert video["summary"]["vs_gt"] is not None  # synthetic clips carry ground truth
    assert video["memory"]["policy"]["slots"] <= 1  # capacity 2: conditioning frame + 1
    # J&F is shown next to the image fidelity
    fid = validation["fidelity"]
    assert fid["image"]["iou"] == doc["metrics"]["iou"]
    assert fid["video"]["jf_vs_float"] == jf
    assert fid["video"]["jf_vs_gt"] == video["summary"]["vs_gt"]
    assert validation["request"]["video"]["frames"] == frames


def test_video_validation_on_plan_creation_and_on_request(api: httpx.Client) -> None:
    r = api.post("/v1/models", json={"name": "sam2-micro", "image_size": 128})
    assert r.status_code in (200, 201), r.text
    model_id = int(r.json()["id"])
    # candidates no other test profiles: the session's PostgreSQL database is shared, and a
    # ready profile would make the first POST a 201 without a job
    base = {"model_id": model_id, "budget": {"avg_bits": 6}, "candidates": ["w8a8", "w5a8"]}
    base |= {"images": 2}

    bad = api.post("/v1/plans", json=base | {"validate": {"video": True, "policy": "lru"}})
    assert bad.status_code == 422 and "lru" in bad.text

    # a plain boolean still works: image fidelity only
    r = api.post("/v1/plans", json=base | {"validate": True})
    assert r.status_code == 202, r.text
    assert wait_job(api, r.json()["job"]["id"])["state"] == "succeeded"
    plain = _validated(api, r.json()["plan"]["id"])
    assert plain["validate"] is True and plain["validation"]["status"] == "passed"
    assert "video" not in plain["validation"]["validation"]
    assert plain["validation"]["fidelity"]["video"] is None

    # asking that plan for video fidelity validates it again, with clips
    plan_id = plain["id"]
    again = api.post(f"/v1/plans/{plan_id}/validate", json=VIDEO)
    assert again.status_code == 202, again.text
    assert again.json()["validation"]["id"] != plain["validation"]["id"]
    got = _validated(api, plan_id)
    _check_video(got["validation"], frames=4)
    stored = api.get(f"/v1/plans/{plan_id}/validation").json()
    assert stored["validation"]["video"] == got["validation"]["validation"]["video"]
    same = api.post(f"/v1/plans/{plan_id}/validate", json=VIDEO)  # covered: nothing new
    assert same.status_code == 200 and same.json()["validation"]["id"] == stored["id"]
    plain_again = api.post(f"/v1/plans/{plan_id}/validate")
    assert plain_again.status_code == 200 and plain_again.json()["validation"]["id"] == stored["id"]

    # "validate": {"video": true} on creation (the profile is ready: solved at once)
    r = api.post("/v1/plans", json=base | {"validate": VIDEO | {"frames": 3}})
    assert r.status_code == 201, r.text
    created = _validated(api, r.json()["id"])
    assert created["id"] != plan_id and created["validate"] is True
    _check_video(created["validation"], frames=3)

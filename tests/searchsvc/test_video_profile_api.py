"""``"video": true`` over HTTP (a real ``bitbudget serve`` on PostgreSQL, in-process jobs): a
hierarchical profile of sam2-micro profiles the memory path on clips, a plan solved on it gives
memory attention / memory encoder real options and is validated by J&F; bad input is a 422
naming the field."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from svc_helpers import TOKEN, Server, service_env, wait_job, wait_validated

pytestmark = [pytest.mark.service, pytest.mark.slow]

MEMORY = ("memory_attention.", "memory_encoder.", "obj_ptr_proj", "obj_ptr_tpos_proj")
CLIPS = {"clips": 1, "frames": 3}
BASE = {"metric": "fisher_kl", "candidates": ["w8a8", "w4a8"], "images": 2}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, pg_url: str) -> Iterator[httpx.Client]:
    data_dir = tmp_path_factory.mktemp("video-profile")
    env = service_env(data_dir, database_url=pg_url, api_tokens=TOKEN) | {"OMP_NUM_THREADS": "1"}
    srv = Server(env, data_dir / "server.log")
    try:
        with srv.client(TOKEN) as client:
            yield client
    finally:
        srv.stop()


def _model(api: httpx.Client, name: str) -> int:
    r = api.post("/v1/models", json={"name": name, "image_size": 128})
    assert r.status_code in (200, 201), r.text
    return int(r.json()["id"])


def test_video_profile_then_plan_validated_by_jf(api: httpx.Client) -> None:
    model_id = _model(api, "sam2-micro")
    r = api.post(f"/v1/models/{model_id}/profiles", json=BASE | {"video": CLIPS})
    assert r.status_code == 202, r.text
    assert wait_job(api, r.json()["job"]["id"], timeout=600)["state"] == "succeeded"
    profile = api.get(f"/v1/profiles/{r.json()['profile']['id']}").json()
    assert profile["status"] == "ready" and profile["video"] == CLIPS
    memory = [n for n in profile["layers"] if n.startswith(MEMORY)]
    assert memory and all(set(profile["layers"][n]) >= {"w8a8", "w4a8"} for n in memory)
    assert profile["stats"]["video"]["clips"] == CLIPS

    plain = api.post(f"/v1/models/{model_id}/profiles", json=BASE)  # another profile
    assert plain.status_code in (200, 202) and plain.json()["profile"]["id"] != profile["id"]
    assert plain.json()["profile"]["video"] is None

    body = {"model_id": model_id, "budget": {"avg_bits": 5}, "method": "fisher_kl"}
    body |= {"candidates": BASE["candidates"], "images": 2, "video": CLIPS, "validate": True}
    r = api.post("/v1/plans", json=body)
    assert r.status_code == 201, r.text  # the video profile is ready: solved at once
    plan = r.json()
    assert plan["profile_id"] == profile["id"] and plan["video"] == CLIPS
    choices = {k: v for k, v in plan["plan"]["choices"].items() if k.startswith(MEMORY)}
    assert set(choices) == set(memory) and "w4a8" in choices.values()
    done = wait_validated(api, plan["id"])
    video = done["validation"]["fidelity"]["video"]
    assert video is not None and 0 <= video["jf_vs_float"]["JF"] <= 100
    assert done["validation"]["request"]["video"]["frames"] == 6  # ValidationRequest defaults


@pytest.mark.parametrize(
    ("model", "extra", "needle"),
    [
        ("sam-micro", {"video": True}, "video: sam-micro is not a SAM2 model"),
        ("sam2-micro", {"video": True, "metric": "wais"}, "cannot hold memory-path losses"),
        ("sam2-micro", {"video": {"clips": 0}}, "clips"),
        ("sam2-micro", {"video": {"frames": 2, "seed": 1}}, "seed"),
    ],
)
def test_bad_video_requests_are_422(
    api: httpx.Client, model: str, extra: dict[str, Any], needle: str
) -> None:
    model_id = _model(api, model)
    r = api.post(f"/v1/models/{model_id}/profiles", json=BASE | extra)
    assert r.status_code == 422 and needle in r.json()["error"]["message"], r.text
    body = {"model_id": model_id, "budget": {"avg_bits": 6}, **BASE, **extra}
    body["method"] = body.pop("metric")
    r = api.post("/v1/plans", json=body)
    assert r.status_code == 422 and needle in r.json()["error"]["message"], r.text

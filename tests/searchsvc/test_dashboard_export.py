"""The plan page's Export button in a real headless Chromium against a real ``bitbudget serve
--dev``: without a token it says so in the page; with one it posts the export, follows its job
in place (state, progress bar), and the page reloads with the download link, whose zip is the
export the API describes. No console errors. Screenshots are kept as in test_dashboard.py."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import httpx
import pytest
from export_helpers import check_download, solved_plan
from svc_helpers import Server, service_env
from test_dashboard import Console, _shot, _token, browser  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.service, pytest.mark.browser]


def test_export_button(tmp_path: Path, browser: Any) -> None:  # noqa: F811
    shots = tmp_path / "screenshots"
    shots.mkdir()
    server = Server(service_env(tmp_path), tmp_path / "server.log", "--dev")
    try:
        token = _token(server)
        with server.client(token) as api:
            plan = solved_plan(api)
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        console = Console(page)
        page.set_default_timeout(120_000)
        page.goto(f"{server.base}/dashboard/plans/{plan['id']}")
        button = page.locator("#export-button")
        assert button.is_visible() and page.locator("#export-link").count() == 0
        button.click()  # no token yet: refused in the page itself
        assert "API token" in page.locator("#export-result").inner_text()

        page.fill("#token-input", token)
        page.click("#token-save")
        page.click("#export-button")
        job = page.locator("#export-job")
        job.wait_for(state="visible")
        assert job.get_attribute("data-state") in ("queued", "running", "succeeded")
        assert f"job #{job.get_attribute('data-job-id')}" in job.inner_text()
        _shot(page, shots, "01-plan-export-running")

        page.locator("#export-link").wait_for(timeout=600_000)  # reloaded when the job ended
        assert page.locator("#export-status").inner_text() == "done"
        href = page.locator("#export-link").get_attribute("href")
        with server.client(token) as api:
            export = api.get(f"/v1/plans/{plan['id']}").json()["export"]
            assert href == export["url"]
            full = api.get(f"/v1/plans/{plan['id']}/exports/{export['id']}").json()
            check_download(api, full)
        body = httpx.get(server.base + str(href)).content
        assert export["sha256"].startswith(hashlib.sha256(body).hexdigest()[:16])
        assert export["sha256"][:16] in page.locator("#export").inner_text()
        assert "files on disk" in page.locator("#export-sizes").inner_text()
        assert page.locator("#export-button").count() == 0
        _shot(page, shots, "02-plan-export-done")
        assert console.errors == [], console.errors
    finally:
        server.stop()

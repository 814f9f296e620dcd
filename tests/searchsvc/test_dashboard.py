"""The dashboard in a real headless Chromium against a real ``bitbudget serve --dev``: open the
model page of sam2-micro, enter the token, submit a budget through the form, follow the job on
the plan page, see one heatmap cell per layer, the validation and the front; no console errors.
Screenshots of every page are kept under the test's output folder (``screenshots/``), and copied
to ``$BITBUDGET_SCREENSHOTS`` when that is set."""

from __future__ import annotations

import html
import os
import re
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from svc_helpers import Server, service_env, wait_job

pytestmark = [pytest.mark.service, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CANDIDATES = "w8a8,w4a8,w4a16"


def _token(server: Server) -> str:
    match = re.search(r"token:\s+(bb_\S+)", server.output())
    assert match, server.output()
    return match.group(1)


@pytest.fixture
def browser() -> Any:
    """Debian's Chromium driven by Playwright (nothing downloaded at run time)."""
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"browser test: no Chromium at {CHROMIUM}; install it with "
            "`sudo apt-get install -y chromium` (.ci/run does)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]'")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        )
        try:
            yield b
        finally:
            b.close()


class Console:
    """Every console error and uncaught page error of a page."""

    def __init__(self, page: Any) -> None:
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))

    def _console(self, msg: Any) -> None:
        if msg.type == "error":
            self.errors.append(f"console: {msg.text} @ {msg.location}")


def _shot(page: Any, folder: Path, name: str) -> Path:
    """A full-page screenshot in the test's folder (and in $BITBUDGET_SCREENSHOTS when set)."""
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 5000, f"{name}: empty screenshot"
    extra = os.environ.get("BITBUDGET_SCREENSHOTS")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    return path


def test_dashboard_in_a_browser(tmp_path: Path, browser: Any) -> None:
    shots = tmp_path / "screenshots"
    shots.mkdir()
    server = Server(service_env(tmp_path), tmp_path / "server.log", "--dev")
    try:
        token = _token(server)
        with server.client(token) as api:
            model_id = api.post("/v1/models", json={"name": "sam2-micro"}).json()["id"]
        page = browser.new_page(viewport={"width": 1360, "height": 900})
        console = Console(page)
        page.set_default_timeout(90_000)

        # models: the registered model, not profiled yet
        page.goto(f"{server.base}/dashboard")
        row = page.locator(f"tr.model-row[data-model-id='{model_id}']")
        assert "sam2-micro" in row.inner_text() and "not profiled" in row.inner_text()
        _shot(page, shots, "01-models")

        # model page: no profile yet; a budget without a token is refused in the page itself
        row.get_by_role("link", name="sam2-micro").click()
        page.wait_for_url(f"**/dashboard/models/{model_id}")
        assert page.locator("#no-profile").is_visible()
        form = page.locator("#budget-form")
        form.locator("input[name=avg_bits]").fill("6")
        form.locator("input[name=candidates]").fill(CANDIDATES)
        form.locator("input[name=images]").fill("2")
        form.locator("input[name=validate]").check()
        form.locator("#budget-submit").click()
        assert "API token" in page.locator("#budget-result").inner_text()
        _shot(page, shots, "02-model-no-profile")

        # the token, entered once, is kept in this tab's session storage
        page.fill("#token-input", token)
        page.click("#token-save")
        assert page.evaluate("sessionStorage.getItem('bitbudget.token')") == token
        assert "token set" in page.locator("#token-state").inner_text()
        form.locator("#budget-submit").click()

        # plan page: live progress of the profile -> solve job while it runs
        page.wait_for_url(re.compile(r".*/dashboard/plans/\d+$"))
        plan_id = int(page.url.rsplit("/", 1)[1])
        progress = page.locator("#job-progress .job").first
        progress.wait_for(state="visible")
        first_state = progress.get_attribute("data-state")
        assert first_state in ("queued", "running"), first_state
        assert page.locator("#heatmap-pending").is_visible()
        # the bar moves as the job reports progress (a locator wait survives the page's reload)
        expect = pytest.importorskip("playwright.sync_api").expect
        expect(page.locator("#job-progress .fill").first).not_to_have_attribute(
            "style", re.compile(r"width: 0(\.0)?%"), timeout=90_000
        )
        _shot(page, shots, "03-plan-job-progress")

        # the page reloads itself when the job ends: one heatmap cell per layer of the plan
        page.locator("#heatmap .hm-cell").first.wait_for(state="attached")
        with server.client(token) as api:
            plan = api.get(f"/v1/plans/{plan_id}").json()
            assert plan["status"] in ("optimal", "feasible"), plan
            done = wait_job(api, plan["validation"]["job_id"])
            assert done["state"] == "succeeded", done
        page.wait_for_selector("#artifact-link")  # reloaded again once the validation ended
        choices = plan["plan"]["choices"]
        cells = page.locator("#heatmap .hm-cell")
        assert cells.count() == len(choices)
        names = cells.evaluate_all("els => els.map(e => e.getAttribute('data-layer'))")
        assert sorted(names) == sorted(choices)
        chosen = cells.evaluate_all(
            "els => Object.fromEntries(els.map(e => [e.dataset.layer, e.dataset.choice]))"
        )
        assert chosen == choices
        titles = page.locator(".hm-title").all_inner_texts()
        for group in ("image encoder · stage 1", "image encoder · neck", "mask decoder"):
            assert any(t.startswith(group) for t in titles), titles
        assert any(t.startswith("memory attention") for t in titles), titles
        assert "breakdown agrees" in page.locator("#sizes").locator("..").inner_text()
        assert page.locator("#validation-status").inner_text() in ("passed", "failed")
        measured = page.locator("#predicted-vs-measured").inner_text()
        assert "size (tensor bytes)" in measured and "output KL" in measured
        size_row = page.locator("#predicted-vs-measured tr", has_text="size").inner_text()
        assert "e+" not in size_row and re.search(r"\d,\d{3},\d{3}\s+\d,\d{3},\d{3}", size_row)
        assert "image mask IoU" in page.locator("#fidelity").inner_text()
        href = page.locator("#artifact-link").get_attribute("href")
        assert href == f"/v1/plans/{plan_id}/artifact"
        assert httpx.get(server.base + href).status_code == 200
        cells.nth(len(choices) // 2).hover()
        tip = page.locator("#tooltip")
        assert tip.is_visible() and names[len(choices) // 2] in tip.inner_text()
        _shot(page, shots, "04-plan-heatmap")

        # model page: the front, the uniform baselines and the validated plan, with hover details
        page.goto(f"{server.base}/dashboard/models/{model_id}")
        page.locator("#front-chart svg.scatter").wait_for()
        with server.client(token) as api:
            front = api.get(
                f"/v1/models/{model_id}/pareto",
                params={"resource": "memory_bytes", "images": 2, "candidates": CANDIDATES},
            ).json()
        assert page.locator("svg.scatter .s-front .point").count() == len(front["points"]) > 1
        assert page.locator("svg.scatter .s-base .point").count() == len(CANDIDATES.split(","))
        assert page.locator("svg.scatter .s-valid .point").count() == 1
        page.locator("svg.scatter .s-valid .point").first.hover()
        assert f"plan #{plan_id} (validated)" in tip.inner_text()
        assert "measured IoU" in tip.inner_text()
        _shot(page, shots, "05-model-front")

        assert console.errors == [], console.errors

        # a second budget, without entering the token again: infeasible -> the least achievable.
        # Chromium logs every non-2xx fetch itself; that one line is the only error allowed here.
        form = page.locator("#budget-form")
        form.locator("input[name=memory_mb]").fill("0.01")
        form.locator("#budget-submit").click()
        page.wait_for_function(
            "() => document.querySelector('#budget-result').textContent.includes('least')"
        )
        assert "memory_mb" in page.locator("#budget-result").inner_text()
        network = f"status of 422 (Unprocessable Entity) @ {{'url': '{server.base}/v1/plans'"
        assert len(console.errors) == 1 and network in console.errors[0], console.errors
        console.errors.clear()

        # the same front in latency on a hardware profile, and measured IoU on the y axis
        page.goto(
            f"{server.base}/dashboard/models/{model_id}?resource=latency_ms&hardware=nvidia_t4"
        )
        page.locator("svg.scatter .s-front .point").first.wait_for()
        assert "latency (ms) on nvidia_t4" in page.locator("#front-chart").inner_text()
        _shot(page, shots, "06-model-front-latency")
        page.goto(f"{server.base}/dashboard/models/{model_id}?logy=true")
        assert "(log scale)" in page.locator("#front-chart").inner_text()
        assert page.locator("svg.scatter .s-front .point").count() == len(front["points"])
        _shot(page, shots, "07-model-front-log")
        page.goto(f"{server.base}/dashboard/models/{model_id}?y=iou")
        assert page.locator("svg.scatter .s-valid .point").count() == 1
        assert page.locator("svg.scatter .s-front .point").count() == 0

        # jobs: profile, solve and validation, all succeeded
        page.goto(f"{server.base}/dashboard/jobs")
        states = page.locator("#jobs tr.job").evaluate_all("els => els.map(e => e.dataset.state)")
        assert len(states) >= 3 and set(states) == {"succeeded"}, states
        _shot(page, shots, "08-jobs")

        # models again: profiled, with its best plan
        page.goto(f"{server.base}/dashboard")
        assert (
            f"#{plan_id}" in page.locator(f"tr.model-row[data-model-id='{model_id}']").inner_text()
        )

        # the fast front until asked for the exact one: a job, followed in place, then the page
        # reloads with the exact front
        page.goto(f"{server.base}/dashboard/models/{model_id}")
        assert "Fast front" in page.locator("#front-kind").inner_text()
        page.click("#exact-front")
        page.locator("#front-kind", has_text="Exact front").wait_for(timeout=180_000)
        assert page.locator("svg.scatter .s-front .point").count() > 1
        _shot(page, shots, "09-model-exact-front")

        assert console.errors == [], console.errors
        page.close()
        _docs_render_offline(browser, server, shots)
    finally:
        server.stop()
    print(f"screenshots: {shots}")


def _docs_render_offline(browser: Any, server: Server, shots: Path) -> None:
    """The dashboard's API link opens Swagger UI with every asset from this server: any request
    elsewhere is refused (as on an offline machine) and counted."""
    page = browser.new_page(viewport={"width": 1360, "height": 900})
    elsewhere: list[str] = []

    def only_here(route: Any) -> None:
        if route.request.url.startswith(server.base):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_here)
    page.goto(f"{server.base}/dashboard")
    page.get_by_role("link", name="API").click()
    page.wait_for_url("**/docs")
    page.locator(".swagger-ui .info .title", has_text="bitbudget").wait_for(timeout=30_000)
    assert page.locator(".swagger-ui .opblock").count() > 10  # the operations are listed
    _shot(page, shots, "10-api-docs-offline")
    assert elsewhere == [], elsewhere
    page.close()  # pytest keeps the tmp folders of the last three runs


def test_dashboard_errors_are_html_pages(tmp_path: Path) -> None:
    server = Server(service_env(tmp_path), tmp_path / "server.log", "--dev")
    try:
        with httpx.Client(base_url=server.base, timeout=60) as web:
            for path, status, text in (
                ("/dashboard/models/999", 404, "model 999 is not registered"),
                ("/dashboard/plans/999", 404, "plan 999 does not exist"),
                ("/dashboard/plans/abc", 404, "plan_id"),
                ("/dashboard/nowhere", 404, "no dashboard page at /dashboard/nowhere"),
                ("/dashboard/jobs?state=sleeping", 422, "unknown state 'sleeping'"),
                ("/dashboard?page=7", 404, "page 7 does not exist"),
                ("/dashboard?page=first", 422, "page: Input should be a valid integer"),
            ):
                r = web.get(path)
                assert r.status_code == status, (path, r.text)
                assert r.headers["content-type"].startswith("text/html"), path
                assert text in html.unescape(r.text) and "Traceback" not in r.text, (path, r.text)
            assert web.get("/dashboard").status_code == 200
            js = web.get("/dashboard/static/charts.js")
            assert js.status_code == 200 and "BBCharts" in js.text
            assert "http" not in re.sub(r"http://www\.w3\.org/2000/svg", "", js.text)
    finally:
        server.stop()

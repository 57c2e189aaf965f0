"""Readiness: while the custodian answers 202 + Retry-After, the run page says it is collecting
data and asks again after Retry-After — through /runs/<id>/status.json (the JS poller) or the
<noscript> meta refresh — then shows the meters. The sandbox serves UsagePoints at once, so a
tiny fake custodian on loopback answers 202 first and then the sandbox's own feed."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from demo.site import client as gbc
from demo.site import runs
from demo.site.models import Run

from flow import full_flow, token_of

CHROMIUM = Path("/usr/bin/chromium")


class FakeCustodian:
    """Answers ``…/UsagePoint`` with 202 (Retry-After: 1) ``not_ready`` times, then the feed."""

    def __init__(self, feed: bytes, not_ready: int) -> None:
        self.feed, self.left, self.calls = feed, not_ready, 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                fake.calls += 1
                if not self.path.endswith("/UsagePoint"):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if fake.left > 0:
                    fake.left -= 1
                    self.send_response(202)
                    self.send_header("Retry-After", "1")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/atom+xml")
                self.send_header("Content-Length", str(len(fake.feed)))
                self.end_headers()
                self.wfile.write(fake.feed)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _point_run_at(live, run_id: str, fake: FakeCustodian) -> None:
    """The run's token now names the fake custodian's subscription; its data is 'not ready'."""
    ctx = live.site_app.extensions["gbc_site"]
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        token = json.loads(ctx.vault.decrypt(run.token_enc))
        token["resourceURI"] = fake.url + "/DataCustodian/espi/1_1/resource/Subscription/77"
        token.pop("authorizationURI", None)
        run.token_enc = ctx.vault.encrypt(json.dumps(token))
        run.meters, run.meter_count = None, None
        run.error = {"error": "not_ready", "step": "meters", "retry_after": 0, "retry_at": int(time.time()),
                     "message": "The utility is still collecting the data."}


@pytest.fixture
def waiting_run(live, visitor):
    page = full_flow(visitor, live, "residential", "phone")
    token = token_of(live, page)
    feed = requests.get(gbc.usage_points_url(token["resourceURI"]), timeout=10,
                        headers={"Authorization": f"Bearer {token['access_token']}"}).content
    fake = FakeCustodian(feed, not_ready=2)
    _point_run_at(live, page.url.rsplit("/", 1)[1], fake)
    yield page.url, fake
    fake.close()


def test_status_json_polls_until_ready(visitor, waiting_run):
    run_url, fake = waiting_run
    page = visitor.get(run_url)                       # due: asks the fake custodian -> 202
    assert fake.calls == 1
    assert "collecting data" in page.text_of("status")
    assert page.text_of("readiness-countdown") == "1"
    live_div = page.doc.get_element_by_id("run-live")
    assert live_div.get("data-status-url").endswith("/status.json") and live_div.get("data-retry-in") == "1"
    # without JS the page reloads itself after Retry-After; with JS the poller takes over
    assert page.doc.cssselect("head noscript")[0].text_content() == ""  # lxml keeps noscript raw
    assert 'http-equiv="refresh" content="1"' in page.text
    assert page.doc.cssselect("script[src$='/js/run-status.js']")
    last = page.doc.cssselect("ol.timeline > li.timeline__item")[-1]
    assert last.cssselect(".tl-status")[0].text_content() == "202"
    assert "Collecting data" in last.text_content() and "Retry-After: 1 s" in last.text_content()

    status = visitor.get(run_url + "/status.json").response.json()
    assert status["waiting"] is True and status["retry_in"] in (0, 1)
    deadline = time.time() + 8
    while status["waiting"] and time.time() < deadline:
        time.sleep(max(status["retry_in"] or 0, 0) + 0.1)
        status = visitor.get(run_url + "/status.json").response.json()
    assert status["waiting"] is False and status["meter_count"] == 1
    # one more 202 and the 200, however slow the machine (the first status.json may already be due)
    assert fake.calls == 3

    page = visitor.get(run_url)
    assert page.text_of("status").startswith("Authorized") and len(page.doc.cssselect("#meters tbody tr")) == 1
    assert "http-equiv" not in page.text and page.doc.get_element_by_id("run-live").get("data-status-url") is None
    statuses = [li.cssselect(".tl-status")[0].text_content() for li in page.doc.cssselect("ol.timeline > li")
                if li.cssselect(".tl-status")]
    assert statuses.count("202") == 2 and statuses[-2:] in (["200", "200"], ["202", "200"])


def test_status_json_is_private(live, visitor, waiting_run):
    run_url, _fake = waiting_run
    assert type(visitor)().get(run_url + "/status.json").status == 404


def test_no_meters_yet_backs_off_then_gives_up(monkeypatch):
    run = Run(id="r", visitor_id="v", status="authorized", utility="PCE", client_id="c", authorize_url="a",
              token_url="t", redirect_uri="r", requested_scope="FB=4")
    clock = [1_000_000.0]
    monkeypatch.setattr(runs.time, "time", lambda: clock[0])
    waits = []
    for _ in range(6):
        runs.record_fetched(run, gbc.Fetched({"uid": "1"}, []))
        waits.append(runs.waiting_for_data(run))
        clock[0] += waits[-1]
    assert waits == [5, 10, 20, 30, 60, 60]
    clock[0] += runs.NO_METERS_PATIENCE
    runs.record_fetched(run, gbc.Fetched({"uid": "1"}, []))
    assert run.error["error"] == "no_meters" and runs.waiting_for_data(run) is None
    runs.record_fetched(run, gbc.Fetched({"uid": "1"}, [{"usage_point_id": "1"}]))
    assert run.error is None and run.meter_count == 1


@pytest.mark.browser
def test_js_poller_updates_the_page_without_a_reload(live, visitor, waiting_run, browser):
    run_url, fake = waiting_run
    fake.left = 1                                     # one 202 is enough here
    cookies = [{"name": c.name, "value": c.value, "url": live.site_url} for c in visitor.http.cookies
               if c.name.startswith("gbc_site")]
    context = browser.new_context()
    try:
        context.add_cookies(cookies)
        page = context.new_page()
        errors = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(run_url)
        assert "collecting data" in page.locator("#status").inner_text()
        page.evaluate("window.__samePage = true")
        # (a locator wait: wait_for_function would eval a string, which the CSP forbids)
        page.locator("#status", has_text="Authorized.").wait_for(timeout=10_000)
        assert page.evaluate("window.__samePage === true")       # updated in place, not reloaded
        assert page.locator("#meters tbody tr").count() == 1
        assert errors == []
    finally:
        context.close()


def test_concurrent_polls_ask_the_custodian_once(visitor, waiting_run):
    """Several tabs (or workers) polling one waiting run: only the one that claims the
    attempt asks; the others answer from what is stored."""
    from concurrent.futures import ThreadPoolExecutor

    run_url, fake = waiting_run
    cookies = visitor.http.cookies

    def poll(_):
        return requests.get(run_url + "/status.json", cookies=cookies, timeout=20).json()

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(poll, range(6)))
    assert all(a["waiting"] for a in answers)
    assert fake.calls == 1

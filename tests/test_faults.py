"""The fault matrix (issue 6): every way a custodian's answer can go wrong, at each place the
site calls it: the token endpoint, the ESPI Authorization, the ESPI UsagePoint feed and the JSON
API's reads. tests/faults.py serves the custodian on loopback and fails one endpoint at a time.

For each fault x endpoint, through the real site on loopback: the run page explains the error
(what happened, when to retry, the start of an HTML page's text, escaped), the exchange that
failed is recorded (secrets masked), the run is kept (listed, not deleted) and can be carried on
(Try again for reads; a new run with the same settings after a failed token exchange, since a
code is single-use), no answer is a 5xx, and no request to the site takes longer than
``http_timeout`` / ``http_max_seconds`` plus a margin, whatever the custodian does.
"""
from __future__ import annotations

import contextvars
import json
import re
import time
from email.utils import formatdate

import faults
import pytest

from demo.site import client as gbc
from demo.site import explain

from conftest import Page, Visitor, start_servers
from flow import connect

TIMEOUT = 1.0           # http_timeout: each wait
MAX_SECONDS = 1.5       # http_max_seconds: a whole answer
MAX_BODY = 200_000      # http_max_body
MARGIN = 2.5            # for a slow machine; the faults themselves last 30 s (timeout) or ~20 s (drip)
BOUND = max(TIMEOUT, MAX_SECONDS) + MARGIN
API_TOKEN = "fault-api-token-0123456789abcdef"
VISITOR_API_TOKEN = "fault-visitor-api-token-0123456789"   # a visitor's own token for their own API URL
CLIENT_SECRET = "fault-client-secret-0123456789"

#: what the run page (or the JSON API panel) must say for each fault: the error code and patterns
EXPECTED = {
    "timeout": ("timeout", [rf"did not answer within {TIMEOUT:g} s"]),
    "refused": ("connection", [r"Could not connect", r"connection refused"]),
    "500": ("http", [r"HTTP 500", r"failed while handling the request"]),
    "503": ("http", [r"HTTP 503", r"It asks to wait (1\d\d s|2 min) before trying again",
                     r"until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"]),
    "429": ("http", [r"HTTP 429", rf"It asks to wait {faults.RETRY_SECONDS} s before trying again"]),
    "html": ("html", [r"HTML page instead of (JSON|Atom XML)", re.escape(faults.HTML_TEXT)]),
    "truncated": ("truncated", [r"cut short", r"closed before the whole body arrived"]),
    "oversized": ("too_large", [r"200,000 bytes", r"GBC_HTTP_MAX_BODY"]),
    "drip": ("timeout", [rf"within {MAX_SECONDS:g} s", r"GBC_HTTP_MAX_SECONDS"]),
    "slow_headers": ("timeout", [r"status line and headers", rf"within {MAX_SECONDS:g} s", r"GBC_HTTP_MAX_SECONDS"]),
}

#: the step a run's error names, and how to find the exchange of each endpoint
STEPS = {"token": "token", "authorization": "authorization", "usage_points": "meters"}
PATHS = {"token": "/oauth/token", "authorization": "/Authorization/77", "usage_points": "/Subscription/77/UsagePoint",
         "json": "/api/v2/authorizations/77"}


@pytest.fixture(scope="module")
def server():
    srv = faults.FaultServer()
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory, server):
    live, servers = start_servers(
        tmp_path_factory.mktemp("faults"), authorize_url=server.url + "/oauth/authorize",
        token_url=server.url + "/oauth/token", api_url=server.url + "/api/v2", api_token=API_TOKEN,
        client_secret=CLIENT_SECRET, http_timeout=TIMEOUT, http_max_seconds=MAX_SECONDS, http_max_body=MAX_BODY)
    yield live
    for srv in servers:
        srv.shutdown()


@pytest.fixture(autouse=True)
def healed(server):
    server.heal()
    yield
    server.heal()


# ---------------------------------------------------------------- helpers


def _check_site_answers(page: Page, live) -> None:
    """Every answer of the site in this click (redirects included): no 5xx, and in time."""
    for resp in [*page.response.history, page.response]:
        if resp.url.startswith(live.site_url):
            assert resp.status_code < 500, (resp.url, resp.status_code, resp.text[:300])
            assert resp.elapsed.total_seconds() < BOUND, (resp.url, resp.elapsed)


def _click(visitor: Visitor, live, action) -> Page:
    start = time.monotonic()
    page = action()
    assert time.monotonic() - start < 3 * BOUND
    _check_site_answers(page, live)
    return page


def _run_json(visitor: Visitor, page: Page) -> dict:
    url = page.url.split("#", 1)[0]
    resp = visitor.http.get(url + ".json", timeout=20)
    assert resp.status_code == 200
    return resp.json()


def _secrets_masked(server, *texts: str) -> None:
    for text in texts:
        for secret in [*server.tokens, API_TOKEN, VISITOR_API_TOKEN, CLIENT_SECRET]:
            assert secret not in text, "a secret appeared unmasked"


def _settings(visitor: Visitor, live, **values: str) -> None:
    """Change this browser's settings (the Settings page's form), e.g. a token URL on a closed port."""
    page = visitor.get(live.site_url + "/settings")
    form = next(f for f in page.doc.forms if (f.get("action") or "").rstrip("/").endswith("/settings"))
    from conftest import Form

    filled = Form(page, form)
    for name, value in values.items():
        filled.set(name, value)
    saved = filled.submit(visitor)
    assert saved.status == 200 and "Settings saved" in saved.text, saved.text_of("main") or saved.text[:500]


def _expect(text: str, kind: str) -> None:
    for pattern in EXPECTED[kind][1]:
        assert re.search(pattern, text), f"{pattern!r} not in {text!r}"


def _kept(visitor: Visitor, live, run_id: str) -> None:
    runs = visitor.get(live.site_url + "/runs")
    assert runs.status == 200 and run_id in runs.text, "the run is no longer listed"


# ---------------------------------------------------------------- the matrix: token and ESPI


@pytest.mark.parametrize("endpoint", ["token", "authorization", "usage_points"])
@pytest.mark.parametrize("kind", faults.KINDS)
def test_a_custodian_fault_is_explained_on_the_run_page(live, server, kind, endpoint):
    visitor = Visitor()
    try:
        if kind == "refused" and endpoint == "token":
            _settings(visitor, live, token_url=server.refused_url + "/oauth/token")
        server.fail(endpoint, kind)
        page = _click(visitor, live, lambda: connect(visitor, live))
        assert page.status == 200 and "/runs/" in page.url, (page.status, page.url, page.text[:300])

        # explained on the page, with what to check
        status = page.text_of("status")
        assert status and "Something went wrong" in status, status
        _expect(status, kind)
        assert page.text_of("status-hint"), "no hint on what to check"
        assert '<script>alert("fault-script")' not in page.text and "<script>alert" not in page.text

        # the run's error and the exchange that failed, recorded and masked
        run = _run_json(visitor, page)
        code, _ = EXPECTED[kind]
        assert run["status"] == "error" and run["error"]["error"] == code, run["error"]
        assert run["error"]["step"] == STEPS[endpoint]
        assert run["explanation"] and run["explanation"]["hint"]
        if kind in ("429", "503"):
            wanted = faults.RETRY_SECONDS if kind == "429" else faults.RETRY_DATE_SECONDS
            assert wanted - 15 <= run["error"]["retry_after"] <= wanted, run["error"]
        if kind == "html":
            assert run["error"]["excerpt"] == faults.HTML_TEXT
        failed = next(x for x in run["exchanges"] if x["seq"] == run["error"]["exchange"])
        assert PATHS[endpoint] in (failed["url"] or ""), failed
        if kind in ("timeout", "refused", "slow_headers"):
            assert failed["status"] is None and failed["error"]["kind"] in ("timeout", "connection"), failed
        elif kind not in ("drip", "truncated", "oversized"):
            assert failed["status"] == int(kind) if kind.isdigit() else failed["status"] == 200
        _secrets_masked(server, page.text, json.dumps(run))

        # kept, and a way on
        run_id = run["id"]
        _kept(visitor, live, run_id)
        server.heal()
        if endpoint == "token":
            assert page.doc.get_element_by_id("retry", None) is None, "a code can't be exchanged twice"
            assert "authorization code works once" in page.text_of("status-no-retry")
            again = page.doc.get_element_by_id("new-run").get("href")
            if kind == "refused":
                _settings(visitor, live, token_url=server.url + "/oauth/token")
            home = visitor.get(live.site_url + again)
            assert home.status == 200
            checked = sorted(el.get("value") for el in home.form("/connect").form.inputs
                             if el.get("name") == "function_blocks" and el.checked)
            assert checked == ["16", "4", "51"], checked
            fresh = _click(visitor, live, lambda: home.form("/connect").submit(visitor))
            assert _run_json(visitor, fresh)["status"] == "authorized", fresh.text_of("status")
        else:
            retried = _click(visitor, live, lambda: page.form(f"/runs/{run_id}/retry").submit(visitor))
            assert retried.status == 200 and retried.url.split("#")[0].endswith(f"/runs/{run_id}")
            after = _run_json(visitor, retried)
            if kind == "refused":   # the token named a closed port: trying again meets it again, explained again
                assert after["status"] == "error" and after["error"]["error"] == "connection"
                assert after["error"]["exchange"] > run["error"]["exchange"], "the new attempt is recorded"
                _expect(retried.text_of("status"), kind)
            else:
                assert after["status"] == "authorized" and [m["usage_point_id"] for m in after["meters"]] == ["1"], \
                    after["error"]
        _kept(visitor, live, run_id)
    finally:
        server.heal()
        visitor.http.close()


# ---------------------------------------------------------------- the matrix: JSON API reads


@pytest.fixture(scope="module")
def json_run(live, server):
    """A run that went fine; the JSON API panel then meets the faults."""
    visitor = Visitor()
    server.heal()
    page = connect(visitor, live)
    assert _run_json(visitor, page)["status"] == "authorized"
    yield visitor, page.url
    visitor.http.close()


@pytest.mark.parametrize("kind", faults.KINDS)
def test_a_json_api_fault_is_explained_in_the_json_panel(live, server, json_run, kind):
    visitor, run_url = json_run
    if kind == "refused":
        _settings(visitor, live, api_url=server.refused_url + "/api/v2", api_token=VISITOR_API_TOKEN)
    try:
        server.fail("json", kind)
        page = visitor.get(run_url)
        page = _click(visitor, live, lambda: page.form("/json-api").submit(visitor))
        assert page.status == 200
        shown = page.text_of("json-api-error")
        assert shown, "no error shown in the JSON API panel"
        _expect(shown, kind)
        assert "What to check" in shown and "Read again" in shown
        assert "<script>alert" not in page.text
        run = _run_json(visitor, page)
        assert run["status"] == "authorized", "a failed JSON API read leaves the run as it was"
        failed = [x for x in run["exchanges"] if "/api/v2/authorizations/77" in (x["url"] or "")]
        assert failed, "the JSON API call is recorded"
        _secrets_masked(server, page.text, json.dumps(run))
        _kept(visitor, live, run["id"])
    finally:
        server.heal()
        if kind == "refused":
            _settings(visitor, live, api_url=server.url + "/api/v2", api_token=API_TOKEN)
    page = visitor.get(run_url)
    page = _click(visitor, live, lambda: page.form("/json-api").submit(visitor))
    assert page.doc.get_element_by_id("json-api-error", None) is None, page.text_of("json-api-error")
    assert page.text_of("json-same-meters")


# ---------------------------------------------------------------- the tools' calls are capped too


def _config(server, **kw) -> gbc.ClientConfig:
    return gbc.ClientConfig(client_id="c", client_secret=CLIENT_SECRET, authorize_url=server.url + "/oauth/authorize",
                            token_url=server.url + "/oauth/token", redirect_uri="http://127.0.0.1:9/callback",
                            pkce=False, timeout=TIMEOUT, **kw)


@pytest.mark.parametrize("kind", ["drip", "slow_headers", "oversized", "timeout", "503", "html"])
def test_refresh_and_revoke_are_bounded(server, kind):
    """refresh_token / client_credentials / revoke go through the same capped reader."""
    limited = contextvars.copy_context()          # the caps for these calls only, not for later tests
    limited.run(gbc.use_limits, gbc.Limits(MAX_BODY, MAX_SECONDS))
    server.fail("token", kind)
    calls = {"refresh": lambda: gbc.refresh_token(_config(server), "r" * 20),
             "client_credentials": lambda: gbc.client_credentials(_config(server)),
             "revoke": lambda: gbc.revoke_token(_config(server), "t" * 20, "refresh_token")}
    for name, call in calls.items():
        start = time.monotonic()
        try:
            limited.run(call)
            outcome = None
        except gbc.CustodianError as exc:
            outcome = exc
        assert time.monotonic() - start < BOUND
        if name == "revoke" and kind in ("html", "drip"):
            continue        # revocation: a 200 is a 200 whatever its body (and an empty one drips nothing)
        assert outcome is not None, kind
        assert outcome.kind == {"drip": "timeout", "slow_headers": "timeout", "oversized": "too_large",
                                "timeout": "timeout", "503": "http", "html": "html"}[kind]
        if kind == "503":
            assert 100 <= outcome.retry_after <= faults.RETRY_DATE_SECONDS


def test_a_token_json_error_keeps_its_code_and_retry_after(server):
    """An OAuth error body names the error; the status and Retry-After still say when to retry."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            body = b'{"error": "temporarily_unavailable", "error_description": "down for upgrades"}'
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Retry-After", "30")
            self.end_headers()
            self.wfile.write(body)

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        cfg = gbc.ClientConfig(client_id="c", client_secret="s", authorize_url="http://x/a",
                               token_url=f"http://127.0.0.1:{srv.server_port}/oauth/token",
                               redirect_uri="http://x/cb", pkce=False, timeout=TIMEOUT)
        with pytest.raises(gbc.CustodianError) as info:
            gbc.exchange_code(cfg, "code", None)
    finally:
        srv.shutdown()
        srv.server_close()
    err = info.value
    assert err.kind == "temporarily_unavailable" and err.status == 503 and err.retry_after == 30
    assert err.description == "down for upgrades" and "It asks to wait 30 s" in err.message


# ---------------------------------------------------------------- the pieces, without servers


def test_retry_after_in_seconds_and_as_an_http_date():
    now = 1_800_000_000.0
    assert explain.parse_retry_after("7", now) == 7
    assert explain.parse_retry_after(" 120 ", now) == 120
    assert explain.parse_retry_after(formatdate(now + 90, usegmt=True), now) == 90
    assert explain.parse_retry_after(formatdate(now - 90, usegmt=True), now) == 0   # already past
    for bad in (None, "", "soon", "-5", "1.5", "Thu, 99 Foo 2026"):
        assert explain.parse_retry_after(bad, now) is None, bad
    phrase = explain.retry_phrase(90, now)
    assert "wait 90 s" in phrase and "2027-01-15 08:01:30 UTC" in phrase, phrase
    assert "wait 2 min 30 s" in explain.retry_phrase(150, now) and "wait 3 min before" in explain.retry_phrase(180)
    assert explain.retry_phrase(None) == ""


def test_an_html_excerpt_is_plain_text():
    assert explain.text_excerpt(faults.HTML_PAGE) == faults.HTML_TEXT
    assert explain.text_excerpt(b"<p>" + b"word " * 200 + b"</p>", limit=20).endswith("…")
    assert explain.text_excerpt("<!-- x --><b>a &lt;b&gt;</b>") == "a <b>"    # text, escaped by the template
    assert explain.text_excerpt(b"") == ""
    assert explain.looks_like_html("text/html; charset=utf-8", b"{}")
    assert explain.looks_like_html("application/json", b"\n  <!doctype HTML><html>")
    assert explain.looks_like_html(None, b"<!-- proxy --> <html>")
    assert not explain.looks_like_html("application/atom+xml", b'<?xml version="1.0"?><feed/>')


def test_status_explanations_say_when_to_retry():
    found = explain.explain_error({"error": "http", "status": 429, "retry_after": 7})
    assert found.title == "Too many requests" and found.retry_after == 7 and "Retry-After" in found.hint
    found = explain.explain_error({"error": "http", "status": 503})
    assert found.title == "Unavailable"
    assert explain.explain_error({"error": "html", "status": 200}).title == "HTML instead of data"
    assert explain.explain_error({"error": "truncated"}).title == "Answer cut short"


def test_a_refused_connection_is_named(server):
    with pytest.raises(gbc.CustodianError) as info:
        gbc.get_json(server.refused_url + "/api/v2/meters", "t", step="json", timeout=TIMEOUT, who="The JSON API")
    assert info.value.kind == "connection" and "connection refused" in info.value.message

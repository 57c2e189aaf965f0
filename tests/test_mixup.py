"""Mix-up protection (RFC 9700 §4.4, RFC 9207) with two custodians: the embedded sandbox and a
small fake authorization server on loopback that counts every request it gets.

The attack: a visitor starts a connection at custodian A; the response that comes back carries
A's state but was issued by custodian B (``iss=B``, B's code). The site must refuse it before any
token request: none reaches A (the fake's counter) and none reaches B (B's code still works for
B's own run afterwards, although the sandbox spends a code on any presentation). Also: a response
on another redirect path than the run's, a missing ``iss`` when it is required, the right ``iss``
and the default setup without ``iss``. Unit tests for the pure checks (demo/site/runs.py) at the end.
"""
from __future__ import annotations

import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from sandbox_steps import decide, exact_form, servers

from demo.config import CONFIG, load_config
from demo.sandbox import create_app as create_sandbox
from demo.sandbox.oauth import issuer as sandbox_issuer
from demo.site import runs
from demo.site.exchanges import exchanges_for
from demo.site.models import Run

from conftest import Visitor
from flow import connect, enter_otp

PHONE = "111-111-1111"


# ---- a second custodian: a fake authorization server that counts -----------------------------

class FakeCustodian:
    """``GET /oauth/authorize`` shows a page (the customer would consent there); ``POST /oauth/token``
    refuses every code with ``invalid_grant``. Every request is counted in ``requests``."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 - http.server's name
                fake.requests.append("GET " + urlsplit(self.path).path)
                self._answer(200, b"<html><body>Fake custodian A: consent here</body></html>", "text/html")

            def do_POST(self):  # noqa: N802
                fake.requests.append("POST " + urlsplit(self.path).path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._answer(400, b'{"error": "invalid_grant", "error_description": "Unknown code."}',
                             "application/json")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token_requests(self) -> int:
        return sum(1 for r in self.requests if r.startswith("POST "))


@pytest.fixture(scope="module")
def fake():
    custodian = FakeCustodian()
    yield custodian
    custodian.server.shutdown()


def _clients() -> list[dict]:
    """The preset's sandbox clients, PCE_ccccccccc also registered with a per-custodian redirect URI."""
    with (CONFIG / "pce.toml").open("rb") as fh:
        clients = tomllib.load(fh)["sandbox_clients"]
    for client in clients:
        client["redirect_uris"] = [*client["redirect_uris"], "{site_url}/callback/pce"]
    return clients


@pytest.fixture(scope="module")
def iss_on(tmp_path_factory):
    """The sandbox sends iss (sandbox_iss_parameter)."""
    with servers(tmp_path_factory.mktemp("mixup-on"), _clients(), sandbox_iss_parameter=True,
                 sandbox_webhooks=False) as live:
        yield live


@pytest.fixture(scope="module")
def iss_off(tmp_path_factory):
    """The default: the sandbox sends no iss, the site does not require one."""
    with servers(tmp_path_factory.mktemp("mixup-off"), _clients(), sandbox_webhooks=False) as live:
        yield live


# ---- steps -------------------------------------------------------------------------------------

def settings(visitor, live, **values) -> None:
    """Save the visitor's settings page with these fields changed (``require_iss=True`` ticks it)."""
    page = visitor.get(live.site_url + "/settings")
    form = exact_form(page, "/settings")
    for name, value in values.items():
        if value is True:
            form.set(name, "y")
        elif value is False:
            form.set(name)
        else:
            form.set(name, value)
    page = form.submit(visitor)
    assert page.status == 200 and "Settings saved" in page.body_text, page.body_text[:500]


def use_fake(visitor, live, fake) -> None:
    settings(visitor, live, authorize_url=fake.url + "/oauth/authorize", token_url=fake.url + "/oauth/token",
             client_secret="fake-secret-0001")


def reset_settings(visitor, live) -> None:
    page = visitor.get(live.site_url + "/settings")
    assert exact_form(page, "/settings/reset").submit(visitor).status == 200


def state_sent_to(visitor, authorize_url: str) -> str:
    """The state of the last authorization request the site sent the browser to at ``authorize_url``."""
    for location in reversed(visitor.history):
        if location.startswith(authorize_url + "?"):
            return parse_qs(urlsplit(location).query)["state"][0]
    raise AssertionError(f"no redirect to {authorize_url}")


def start_at_fake(visitor, live, fake) -> str:
    use_fake(visitor, live, fake)
    page = connect(visitor, live)
    assert page.url.startswith(fake.url) and "Fake custodian A" in page.text, page.url
    return state_sent_to(visitor, fake.url + "/oauth/authorize")


def sandbox_response(visitor, live, **connect_fields) -> dict:
    """A whole sandbox flow up to the customer's Authorize; the redirect back to the site, not followed:
    ``{"url": <callback URL>, "params": {code, state, [iss]}}``."""
    page = enter_otp(visitor, connect(visitor, live, "phone", PHONE, **connect_fields))
    response = decide(visitor, page)
    assert response.status_code in (302, 303), response.text[:300]
    location = response.headers["Location"]
    return {"url": location, "params": {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}}


def deliver(visitor, live, params: dict, path: str = "/callback"):
    return visitor.get(live.site_url + path + "?" + urlencode(params))


def my_runs(visitor, live) -> list[Run]:
    """This visitor's runs, newest first (ids from its Runs page, rows from the site's database)."""
    page = visitor.get(live.site_url + "/runs")
    ids = [a.get("href").rsplit("/", 1)[1] for a in page.doc.cssselect("#runs a")]
    db = live.site_app.extensions["gbc_site"].db
    with db.session() as s:
        rows = [s.get(Run, run_id) for run_id in ids]
        for row in rows:
            s.expunge(row)
    return rows


def kinds(live, run_id: str) -> list[str]:
    with live.site_app.extensions["gbc_site"].db.session() as s:
        return [x.kind for x in exchanges_for(s, run_id)]


def run_at(visitor, live, authorize_prefix: str) -> Run:
    return next(r for r in my_runs(visitor, live) if r.authorize_url.startswith(authorize_prefix))


# ---- the attack ---------------------------------------------------------------------------------

def test_a_response_issued_by_b_for_a_run_at_a_is_refused_before_any_token_request(iss_on, fake):
    live, visitor = iss_on, Visitor()
    state_a = start_at_fake(visitor, live, fake)                # the visitor's connection at A
    reset_settings(visitor, live)
    b = sandbox_response(visitor, live)                         # a code issued by B
    assert b["params"]["iss"] == live.sandbox_url
    before = list(fake.requests)

    page = deliver(visitor, live, {"code": b["params"]["code"], "state": state_a, "iss": b["params"]["iss"]})

    assert page.status == 400, page.body_text[:500]
    assert "came from the wrong place" in page.body_text
    assert repr(live.sandbox_url) in page.body_text and repr(fake.url) in page.body_text   # both issuers named
    # the page shows what arrived, masked: nowhere in it, hidden inputs included, are the code or the state
    assert b["params"]["code"] not in page.response.text and state_a not in page.response.text
    assert b["params"]["code"][-4:] in page.text_of("error-params")
    assert fake.requests == before and fake.token_requests() == 0   # nothing went to A
    run_a = run_at(visitor, live, fake.url)
    assert run_a.status == "error" and run_a.error["error"] == "issuer_mismatch"
    assert run_a.error["expected_issuer"] == fake.url and run_a.error["received_issuer"] == live.sandbox_url
    assert run_a.iss_check["result"] == "mismatch" and run_a.code_verifier_enc is None
    assert "token" not in kinds(live, run_a.id) and kinds(live, run_a.id)[-1] == "callback"
    # the run page explains it
    shown = visitor.get(live.site_url + f"/runs/{run_a.id}")
    assert "issued by" in shown.text_of("status") and fake.url in shown.text_of("status")
    check = " ".join(shown.doc.cssselect("[data-testid=iss-check]")[0].text_content().split())
    assert "another issuer: refused" in check and fake.url in check and live.sandbox_url in check
    assert b["params"]["code"] not in shown.response.text

    # nothing went to B either: B's code still works, once, for B's own run
    page = deliver(visitor, live, b["params"])
    assert page.status == 200 and "/runs/" in page.url, page.body_text[:500]
    run_b = run_at(visitor, live, live.sandbox_url)
    assert run_b.status == "authorized" and run_b.iss_check["result"] == "match", run_b.error
    assert fake.token_requests() == 0


def test_the_fake_counts_the_token_requests_a_right_response_causes(iss_on, fake):
    """The control: a response from A (iss=A) for a run at A does reach A's token endpoint."""
    live, visitor = iss_on, Visitor()
    state = start_at_fake(visitor, live, fake)
    before = fake.token_requests()
    page = deliver(visitor, live, {"code": "code-from-a-0001", "state": state, "iss": fake.url})
    assert page.status == 200 and "/runs/" in page.url
    assert fake.token_requests() == before + 1
    run = run_at(visitor, live, fake.url)
    assert run.iss_check["result"] == "match" and run.error["error"] == "invalid_grant"


def test_an_error_response_from_another_issuer_is_refused_too(iss_on, fake):
    """RFC 9207 covers error responses: a 'declined' from B does not end A's run as declined."""
    live, visitor = iss_on, Visitor()
    state = start_at_fake(visitor, live, fake)
    page = deliver(visitor, live, {"error": "access_denied", "state": state, "iss": live.sandbox_url})
    assert page.status == 400
    run = run_at(visitor, live, fake.url)
    assert run.status == "error" and run.error["error"] == "issuer_mismatch"


def test_iss_sent_twice_is_refused(iss_on, fake):
    live, visitor = iss_on, Visitor()
    state = start_at_fake(visitor, live, fake)
    before = fake.token_requests()
    page = visitor.get(live.site_url + "/callback?" + urlencode(
        [("code", "code-x-00001"), ("state", state), ("iss", fake.url), ("iss", live.sandbox_url)]))
    assert page.status == 400 and fake.token_requests() == before
    assert run_at(visitor, live, fake.url).error["error"] == "issuer_mismatch"


# ---- per-custodian redirect URIs ------------------------------------------------------------------

def test_a_response_on_another_redirect_path_is_refused(iss_on):
    live, visitor = iss_on, Visitor()
    settings(visitor, live, redirect_uri=live.site_url + "/callback/pce")
    b = sandbox_response(visitor, live)
    assert urlsplit(b["url"]).path == "/callback/pce"
    page = deliver(visitor, live, b["params"], path="/callback/other")
    assert page.status == 400 and "/callback/other" in page.body_text and "/callback/pce" in page.body_text
    run = my_runs(visitor, live)[0]
    assert run.status == "error" and run.error["error"] == "wrong_redirect_path"
    assert "token" not in kinds(live, run.id)
    # the code was never presented: the sandbox still holds it unspent
    from demo.sandbox.models import AuthorizationCodeRow
    from demo.tokens import digest
    with live.sandbox_app.extensions["gbc_sandbox"].db.session() as s:
        row = s.get(AuthorizationCodeRow, digest(b["params"]["code"]))
        assert row is not None and not getattr(row, "used", False)


def test_a_response_on_the_runs_own_named_path_works(iss_on):
    live, visitor = iss_on, Visitor()
    settings(visitor, live, redirect_uri=live.site_url + "/callback/pce")
    b = sandbox_response(visitor, live)
    page = visitor.get(b["url"])
    assert page.status == 200 and "/runs/" in page.url, page.body_text[:500]
    assert my_runs(visitor, live)[0].status == "authorized"


# ---- iss required, iss right, iss absent ----------------------------------------------------------

def test_no_iss_when_required_is_refused(iss_off):
    live, visitor = iss_off, Visitor()
    settings(visitor, live, require_iss=True)
    b = sandbox_response(visitor, live)
    assert "iss" not in b["params"]
    page = visitor.get(b["url"])
    assert page.status == 400 and "no iss parameter" in page.body_text
    run = my_runs(visitor, live)[0]
    assert run.status == "error" and run.error["error"] == "issuer_missing" and run.require_iss
    assert "token" not in kinds(live, run.id)


def test_no_iss_when_required_by_configuration_is_refused(tmp_path):
    with servers(tmp_path, _clients(), require_iss=True, sandbox_webhooks=False) as live:
        visitor = Visitor()
        page = visitor.get(sandbox_response(visitor, live)["url"])
        assert page.status == 400 and my_runs(visitor, live)[0].error["error"] == "issuer_missing"


def test_the_right_iss_works(iss_on):
    live, visitor = iss_on, Visitor()
    settings(visitor, live, require_iss=True)
    b = sandbox_response(visitor, live)
    page = visitor.get(b["url"])
    assert page.status == 200 and "/runs/" in page.url, page.body_text[:500]
    run = my_runs(visitor, live)[0]
    assert run.status == "authorized" and run.issuer == live.sandbox_url
    assert run.iss_check["result"] == "match" and run.iss_check["received_issuer"] == live.sandbox_url


def test_a_configured_issuer_is_the_one_expected(iss_on):
    live, visitor = iss_on, Visitor()
    settings(visitor, live, issuer="https://issuer.example")
    page = visitor.get(sandbox_response(visitor, live)["url"])
    assert page.status == 400 and "'https://issuer.example'" in page.body_text


def test_the_default_setup_without_iss_works(iss_off):
    live, visitor = iss_off, Visitor()
    b = sandbox_response(visitor, live)
    assert "iss" not in b["params"]
    page = visitor.get(b["url"])
    assert page.status == 200 and "/runs/" in page.url, page.body_text[:500]
    run = my_runs(visitor, live)[0]
    assert run.status == "authorized" and run.iss_check["result"] == "not_sent" and not run.require_iss
    assert run.issuer == live.sandbox_url                     # the authorize URL's origin
    shown = visitor.get(page.url)
    check = " ".join(shown.doc.cssselect("[data-testid=iss-check]")[0].text_content().split())
    assert "no iss sent" in check and live.sandbox_url in check
    data = visitor.get(page.url + ".json").response.json()
    assert data["issuer"] == live.sandbox_url and data["iss_check"]["result"] == "not_sent"


# ---- the sandbox's iss ------------------------------------------------------------------------------

def _authorize(visitor, live, **params):
    query = {"response_type": "code", "client_id": live.settings["client_id"],
             "redirect_uri": live.site_url + "/callback", "state": "st-123456", **params}
    return visitor.http.get(live.sandbox_url + "/oauth/authorize", params=query, allow_redirects=False, timeout=10)


def test_the_sandbox_sends_iss_on_error_responses_too(iss_on, iss_off):
    for live, expected in ((iss_on, [iss_on.sandbox_url]), (iss_off, None)):
        response = _authorize(Visitor(), live, scope="FB=99999")
        assert response.status_code == 302
        query = parse_qs(urlsplit(response.headers["Location"]).query)
        assert query["error"] == ["invalid_scope"] and query.get("iss") == expected
    visitor = Visitor()                                       # a declined request
    page = enter_otp(visitor, connect(visitor, iss_on, "phone", PHONE))
    query = parse_qs(urlsplit(decide(visitor, page, decline=True).headers["Location"]).query)
    assert query["error"] == ["access_denied"] and query["iss"] == [iss_on.sandbox_url]


def test_the_sandbox_issuer_is_its_public_url(tmp_path):
    settings_ = load_config({"instance_path": str(tmp_path), "secret_key": "k", "sandbox_url": "https://pce.example/",
                             "sandbox_webhooks": False}, env={})
    assert sandbox_issuer(settings_) == "https://pce.example"
    create_sandbox(settings_)                                 # starts with it


@pytest.mark.parametrize("sandbox_url", ["https://pce.example:443", "https://PCE.example", "https://demo.example/sandbox",
                                         "http://127.0.0.1:5001/"])
def test_the_sandbox_sends_the_issuer_the_site_expects_of_it(tmp_path, sandbox_url):
    """Behind a proxy with a path prefix, an upper-case host or an explicit default port, the
    sandbox's iss and the site's default expectation (the authorize URL's origin) still agree."""
    settings_ = load_config({"instance_path": str(tmp_path), "secret_key": "k", "sandbox_url": sandbox_url,
                             "sandbox_webhooks": False}, env={})
    assert sandbox_issuer(settings_) == runs.expected_issuer({"authorize_url": settings_["authorize_url"]})


# ---- the pure checks ---------------------------------------------------------------------------------

@pytest.mark.parametrize("eff, expected", [
    ({"issuer": "", "authorize_url": "http://127.0.0.1:5001/oauth/authorize"}, "http://127.0.0.1:5001"),
    ({"issuer": "", "authorize_url": "HTTPS://Auth.Example:443/oauth/authorize?x=1"}, "https://auth.example"),
    ({"issuer": "", "authorize_url": "https://auth.example:8443/a"}, "https://auth.example:8443"),
    ({"issuer": "", "authorize_url": "http://[::1]:5001/a"}, "http://[::1]:5001"),
    ({"issuer": " https://issuer.example/pce ", "authorize_url": "https://a.example/x"}, "https://issuer.example/pce"),
    ({"issuer": "", "authorize_url": "not a url"}, ""),
    ({"issuer": "", "authorize_url": "http://host:99999/"}, ""),
])
def test_expected_issuer(eff, expected):
    assert runs.expected_issuer(eff) == expected


def _run(issuer="https://a.example", require=False, redirect_uri="https://site.example/callback"):
    return Run(issuer=issuer, require_iss=require, redirect_uri=redirect_uri)


@pytest.mark.parametrize("run, iss, path, result", [
    (_run(), [], "/callback", "not_sent"),
    (_run(), ["https://a.example"], "/callback", "match"),
    (_run(), ["https://b.example"], "/callback", "mismatch"),
    (_run(), ["https://a.example/"], "/callback", "mismatch"),          # simple string comparison
    (_run(), [""], "/callback", "mismatch"),
    (_run(), ["https://a.example", "https://a.example"], "/callback", "mismatch"),
    (_run(require=True), [], "/callback", "missing"),
    (_run(require=True), ["https://a.example"], "/callback", "match"),
    (_run(), [], "/callback/b", "wrong_path"),
    (_run(), ["https://a.example"], "/callback/", "wrong_path"),
    (_run(redirect_uri="https://site.example/callback/a%20b"), [], "/callback/a b", "not_sent"),
    (_run(redirect_uri="https://site.example/callback/a"), [], "/callback", "wrong_path"),
])
def test_check_callback(run, iss, path, result):
    check = runs.check_callback(run, iss, path)
    assert check["result"] == result
    assert check["ok"] is (result in ("match", "not_sent"))
    assert ("not sent anywhere" in check["message"]) is (not check["ok"])


def test_a_refusal_names_both_issuers_and_drops_the_verifier():
    run = _run()
    run.code_verifier_enc = "encrypted"
    check = runs.check_callback(run, ["https://b.example"], "/callback")
    assert "'https://b.example'" in check["message"] and "'https://a.example'" in check["message"]
    runs.refuse_callback(run, {"code": "secret-code-123456", "state": "state-123456", "iss": "https://b.example"},
                         check, "https://site.example/callback?code=secret-code-123456")
    assert run.status == "error" and run.code_verifier_enc is None
    assert run.error["error"] == "issuer_mismatch" and run.error["step"] == "callback"
    assert run.callback["code"] != "secret-code-123456" and run.iss_check is check


def test_a_long_foreign_issuer_is_cut_in_the_message():
    check = runs.check_callback(_run(), ["https://b.example/" + "x" * 5000], "/callback")
    assert len(check["message"]) < 800

"""No secret leaks, proven on whole flows over real HTTP with every logger at DEBUG.

Both apps run on loopback. The root logger and the loggers of Authlib, urllib3, requests,
werkzeug (with the servers' access log), SQLAlchemy's engine and the demo itself are set to
DEBUG and captured. One visitor then does everything a person can: the sandbox dashboard
(sign in, rotate the client secret, create an API token, a webhook endpoint and a
registration_access_token, each shown once), the site's Settings (that client secret, API
token and webhook secret), a whole flow with PKCE, the run page and its JSON, meter pages,
every token tool, the JSON API view, webhook events, a shared preset link and the OTP test
page with a second flow. Every response (URL, headers, body) and every log record is kept.

The secrets actually issued are collected (from the token endpoint's answers to the site,
the site's database, the dashboard's reveal pages, the cookies) and looked for everywhere,
in plain, percent-encoded and base64 forms and as 12-character prefixes and suffixes.
They may appear only where the protocol puts them:

- the authorization code: in the sandbox's redirect to the callback (its Location) and in
  the URL of the callback request itself; the state also in the site's redirect to the
  authorization endpoint and that request's URL (both travel in the front channel by
  design, RFC 6749 §4.1);
- a new client secret, API token, webhook secret or registration_access_token: once, on
  the page after the POST that made it (and encrypted in the session cookie across that
  one redirect);
- a token: in the token endpoint's own JSON answer to the client that asked;
- a session cookie's value: in Set-Cookie and Cookie headers.

Log records of the test's own HTTP client (this thread: the "browser") are not the apps'
logs and are left out; records of the servers' threads and the webhook thread are all kept.
"""
from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import zlib
from dataclasses import dataclass, field
from urllib.parse import parse_qs, quote, quote_plus, urljoin, urlsplit

import pytest
import requests
from sandbox_steps import exact_form, outbox_code, passcode, sign_in

from demo import logsafe
from demo.site import client as gbc
from demo.tokens import mask

from conftest import Visitor, start_servers
from flow import decide, full_flow, token_of

LOGGERS = ("", "authlib", "urllib3", "requests", "werkzeug", "sqlalchemy.engine", "demo", "demo.site",
           "demo.sandbox", "flask.app")
OTP_CONTACT = "leaks-qa@example.com"
MASK = "•"
MAX_SHOWN = 4           # what demo.tokens.mask shows of a secret: its last 4 characters


# ---- what is recorded -----------------------------------------------------------------------

@dataclass
class Seen:
    """One place a secret could be: a request URL, a header, a body or a log line."""
    kind: str           # "url", "request header", "response header", "body", "log"
    where: str          # readable: method, URL, header name or logger
    text: str
    url: str = ""       # the request URL of the exchange it belongs to
    name: str = ""      # header name, or logger name
    seq: int = 0        # which response
    location: str = ""  # for the body of a redirect: where it points (the body only repeats it)


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.lock_ = threading.Lock()
        self.main = threading.get_ident()
        self.formatter_ = logging.Formatter()
        self.saved: dict[str, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.main:
            return      # the test's own HTTP client (the visitor's browser), not an app
        with self.lock_:
            self.records.append(record)

    def install(self) -> None:
        for name in LOGGERS:
            logger = logging.getLogger(name)
            self.saved[name] = logger.level
            logger.setLevel(logging.DEBUG)
        logging.getLogger().addHandler(self)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
        for name, level in self.saved.items():
            logging.getLogger(name).setLevel(level)

    def seen(self) -> list[Seen]:
        out = []
        with self.lock_:
            records = list(self.records)
        for record in records:
            try:
                text = record.getMessage()
            except Exception:   # a bad format string is still searched as written
                text = f"{record.msg!r} {record.args!r}"
            if record.exc_info:
                text += "\n" + self.formatter_.formatException(record.exc_info)
            if record.stack_info:
                text += "\n" + record.stack_info
            out.append(Seen("log", f"log {record.name} {record.levelname}", text, name=record.name))
        return out


class Browser(Visitor):
    """A visitor whose every response (each redirect hop too) is recorded."""

    def __init__(self, log: list) -> None:
        super().__init__()
        self.log = log
        self.http.hooks["response"].append(self._record)

    def _record(self, resp: requests.Response, *args, **kwargs) -> None:
        self.log.append(resp)


def _text(resp: requests.Response) -> str:
    ctype = resp.headers.get("Content-Type", "")
    if not resp.content or not any(t in ctype for t in ("text", "json", "xml", "javascript")):
        return ""
    return resp.content.decode("utf-8", "replace")


def observations(responses: list[requests.Response]) -> list[Seen]:
    out = []
    for seq, resp in enumerate(responses):
        req = resp.request
        label = f"#{seq} {req.method} {req.url} -> {resp.status_code}"
        out.append(Seen("url", label, req.url, url=req.url, seq=seq))
        for name, value in req.headers.items():
            out.append(Seen("request header", f"{label}: request {name}", value, url=req.url, name=name, seq=seq))
        for name, value in resp.raw.headers.items() if resp.raw is not None else resp.headers.items():
            out.append(Seen("response header", f"{label}: {name}", value, url=req.url, name=name, seq=seq))
        location = resp.headers.get("Location", "") if resp.is_redirect else ""
        out.append(Seen("body", f"{label}: body", _text(resp), url=req.url, seq=seq, location=location))
    return out


# ---- the forms a secret may take --------------------------------------------------------------

def _b64_cores(raw: bytes) -> set[str]:
    """The part of base64 (standard and URL-safe) that encodes ``raw`` at any of the 3 alignments
    it can have inside a longer base64 text."""
    cores = set()
    for shift in range(3):
        enc = base64.b64encode(b"\0" * shift + raw).decode()
        core = enc[4 if shift else 0:-4]
        if len(core) >= 12:
            cores |= {core, core.replace("+", "-").replace("/", "_")}
    return cores


def forms_of(value: str) -> set[str]:
    forms = {value, quote(value, safe=""), quote_plus(value)}
    forms |= _b64_cores(value.encode())
    if len(value) >= 24:
        forms |= {value[:12], value[-12:]}
    return {f for f in forms if len(f) >= 8}


def found(value: str, text: str) -> str | None:
    for form in forms_of(value):
        if form in text:
            return form
    return None


# ---- the session cookie ----------------------------------------------------------------------

def flask_session_payload(cookie: str) -> str:
    """The JSON inside a Flask session cookie (itsdangerous: [.]base64(payload).time.sig, zlib
    when it starts with a dot); signed, not encrypted, so anyone holding it can read it."""
    compressed = cookie.startswith(".")
    data = cookie.lstrip(".").split(".")[0]
    raw = base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    return (zlib.decompress(raw) if compressed else raw).decode("utf-8")


# ---- the flows ---------------------------------------------------------------------------------

@dataclass
class World:
    live: object
    responses: list
    capture: LogCapture
    secrets: dict = field(default_factory=dict)          # name -> value
    revealed: dict = field(default_factory=dict)         # name -> (response seq, the next GET's page)
    codes: list = field(default_factory=list)            # (code, state) of each flow
    token_answers: set = field(default_factory=set)      # seqs of direct token endpoint answers
    cookies: list = field(default_factory=list)          # (name, value) of every Set-Cookie
    run_urls: list = field(default_factory=list)


def _wrap(module, name: str, sink: list, undo: list) -> None:
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        value = original(*args, **kwargs)
        sink.append(value)
        return value

    setattr(module, name, wrapper)
    undo.append((module, name, original))


def _reveal(browser, world, page, element: str, name: str):
    """A secret shown once on ``page``: record it and check the next visit does not show it."""
    value = page.text_of(element)
    assert page.status == 200 and value and len(value) >= 32, (element, page.body_text[:400])
    seq = next(i for i in range(len(world.responses) - 1, -1, -1) if world.responses[i].url == page.url)
    again = browser.get(page.url)
    assert again.status == 200 and again.text_of(element) is None and value not in again.text, \
        f"the {name} is shown a second time"
    world.secrets[name] = value
    world.revealed[name] = seq
    return value


def _wait_for_events(browser, run_url: str, types: set, seconds: float = 15) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        data = browser.http.get(run_url + "/events.json", timeout=10).json()
        if types <= {e["type"] for e in data["events"]} or time.monotonic() > deadline:
            return data
        time.sleep(0.2)


def drive(live, world: World, issued: dict) -> None:
    site, sandbox = live.site_url, live.sandbox_url
    browser = Browser(world.responses)
    client_id, config_secret = live.settings["client_id"], live.settings["client_secret"]
    world.secrets["configured client secret"] = config_secret
    world.secrets["site secret_key"] = live.settings["secret_key"]

    # -- the sandbox dashboard: sign in, and every secret it shows once
    page = sign_in(browser, live, client_id, config_secret)
    assert page.url.endswith("/dashboard/authorizations"), page.body_text[:400]
    page = browser.get(sandbox + "/dashboard/settings/oauth").form("/dashboard/settings/oauth/secret").submit(browser)
    new_secret = _reveal(browser, world, page, "new-client-secret", "rotated client secret")
    page = browser.get(sandbox + "/dashboard/settings/api").form("/dashboard/settings/api")
    page = page.set("name", "leak check").submit(browser)
    api_token = _reveal(browser, world, page, "new-api-token", "API token")
    page = browser.get(sandbox + "/dashboard/settings/green-button")
    page = page.form("/dashboard/settings/green-button/token").submit(browser)
    _reveal(browser, world, page, "new-registration-token", "registration_access_token")

    # -- the site's settings: the new client secret and the API token; then the webhook endpoint
    settings = browser.get(site + "/settings")
    page = settings.form("/settings").set("client_secret", new_secret).set("api_token", api_token).submit(browser)
    assert "Settings saved" in page.body_text, page.body_text[:400]
    receiver_url = page.text_of("receiver-url")
    assert receiver_url and receiver_url.startswith(site + "/webhooks/"), receiver_url
    page = browser.get(sandbox + "/dashboard/settings/webhooks")
    page = exact_form(page, "/dashboard/settings/webhooks").set("url", receiver_url).submit(browser)
    webhook_secret = _reveal(browser, world, page, "new-webhook-secret", "webhook secret")
    page = browser.get(site + "/settings").form("/settings").set("webhook_secret", webhook_secret).submit(browser)
    assert "Settings saved" in page.body_text, page.body_text[:400]

    # -- a whole flow with PKCE, and everything the run offers
    page = full_flow(browser, live, "commercial", "phone")
    assert page.status == 200 and "/runs/" in page.url, page.body_text[:400]
    run_url = page.url
    world.run_urls.append(run_url)
    first = token_of(live, page)
    browser.get(run_url + ".json")
    meters = [a.get("href") for a in page.doc.cssselect("#meters tbody a")]
    assert meters, "no meter links on the run page"
    browser.get(urljoin(run_url, meters[0]))
    browser.get(urljoin(run_url, meters[0]) + "/data.xml")
    for tool in ("refresh", "client_credentials", "service_status"):
        page = browser.get(run_url).form(f"/tools/{tool}").submit(browser)
        assert page.status == 200, (tool, page.body_text[:400])
    after = token_of(live, browser.get(run_url))
    assert after["refresh_token"] != first["refresh_token"], "the refresh tool did not rotate the refresh token"
    page = browser.get(run_url).form("/json-api").submit(browser)
    assert page.status == 200 and page.doc.get_element_by_id("json-api-error", None) is None, page.body_text[:400]
    events = _wait_for_events(browser, run_url, {"authorization_created", "meter_created"})
    assert events["events"] and all(e["verified"] for e in events["events"]), events
    browser.get(run_url)

    # -- an integrator's script asks the token endpoint itself: the one place a token is shown
    direct = requests.post(sandbox + "/oauth/token", data={"grant_type": "client_credentials"},
                           auth=(client_id, new_secret), timeout=10,
                           hooks={"response": [lambda resp, **_: world.responses.append(resp)]})
    assert direct.status_code == 200, direct.text
    world.token_answers.add(len(world.responses) - 1)
    world.secrets["direct client_access_token"] = direct.json()["access_token"]

    # -- a shared preset link, opened
    page = browser.get(site + "/share").form("/share").set("lookup_type", "phone")
    page = page.set("lookup_value", "111-111-1111").submit(browser)
    link = page.text_of("preset-link")
    assert link and link.startswith(site + "/p/"), page.body_text[:400]
    assert browser.get(link).status == 200

    # -- the OTP test page: a second flow whose passcode goes to the outbox
    page = browser.get(site + "/otp-test").form("/otp-test").set("scenario", "residential")
    page = page.set("contact", OTP_CONTACT).submit(browser)
    assert page.url.endswith("/authorize/verify"), (page.url, page.body_text[:400])
    assert outbox_code(browser, live, OTP_CONTACT)
    page = decide(browser, passcode(browser, live, page, to=OTP_CONTACT))
    assert page.status == 200 and "/runs/" in page.url, page.body_text[:400]
    world.run_urls.append(page.url)
    browser.get(page.url + ".json")

    # -- pages that list what was saved or issued, then revoke
    for url in (site + "/", site + "/settings", site + "/runs", sandbox + "/", sandbox + "/outbox",
                sandbox + "/dashboard/authorizations", sandbox + "/dashboard/settings/oauth",
                sandbox + "/dashboard/settings/api", sandbox + "/dashboard/settings/webhooks",
                sandbox + "/dashboard/settings/green-button"):
        assert browser.get(url).status == 200, url
    for tool in ("revoke", "fetch"):    # revoke, then read again (a 401, explained)
        page = browser.get(run_url).form(f"/tools/{tool}").submit(browser)
        assert page.status == 200, (tool, page.body_text[:400])
    browser.get(run_url + ".json")

    # -- the secrets: what the token endpoint gave the site, the PKCE verifiers, codes and states
    for i, token in enumerate(issued["tokens"]):
        for key in ("access_token", "refresh_token"):
            if token.get(key):
                world.secrets[f"{key} #{i + 1}"] = token[key]
    assert len(issued["tokens"]) >= 4     # 2 codes exchanged, a refresh, client_credentials
    for key, label in (("access_token", "stored access token"), ("refresh_token", "stored refresh token")):
        world.secrets[label] = after[key]
    for i, verifier in enumerate(issued["verifiers"]):
        world.secrets[f"code_verifier #{i + 1}"] = verifier
    assert len(issued["verifiers"]) >= 2
    for resp in world.responses:
        location = resp.headers.get("Location", "")
        if location.startswith(site + "/callback?"):
            query = parse_qs(urlsplit(location).query)
            world.codes.append((query["code"][0], query["state"][0]))
    assert len(world.codes) == 2, world.codes
    for i, (code, state) in enumerate(world.codes):
        world.secrets[f"authorization code #{i + 1}"] = code
        world.secrets[f"state #{i + 1}"] = state
    for resp in world.responses:
        for cookie in resp.cookies:
            world.cookies.append((cookie.name, cookie.value))
    assert {"gbc_site_session", "gbc_sandbox_session"} <= {name for name, _ in world.cookies}, world.cookies
    browser.http.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    live, started = start_servers(tmp_path_factory.mktemp("leaks"))
    capture = LogCapture()
    capture.install()       # after the apps are made: they set Authlib's logger to INFO when made
    issued = {"tokens": [], "verifiers": []}
    undo: list = []
    _wrap(gbc, "_token_request", issued["tokens"], undo)
    _wrap(gbc, "new_code_verifier", issued["verifiers"], undo)
    world = World(live, [], capture)
    try:
        drive(live, world, issued)
        time.sleep(0.5)     # let the webhook thread log its last deliveries
        yield world
    finally:
        for module, name, original in undo:
            setattr(module, name, original)
        capture.uninstall()
        dispatcher = live.sandbox_app.extensions.get("gbc_webhooks")
        if dispatcher is not None:
            dispatcher.stop(timeout=2)
        for srv in started:
            srv.shutdown()


# ---- where each secret may be -------------------------------------------------------------------

def _front_channel(world: World, name: str, seen: Seen) -> bool:
    """A code in the sandbox's redirect to the callback and the callback's URL; a state also in the
    site's redirect to the authorization endpoint and that request's URL (RFC 6749 §4.1)."""
    callback = world.live.site_url + "/callback?"
    places = (callback,) if name.startswith("authorization code") else \
        (callback, world.live.settings["authorize_url"] + "?")
    if seen.kind == "url":
        return seen.url.startswith(places)
    if seen.kind == "response header" and seen.name.lower() == "location":
        return seen.text.startswith(places)
    # the little HTML body of that same redirect, which links where it points
    return seen.kind == "body" and seen.location.startswith(places)


def allowed(world: World, name: str, seen: Seen) -> bool:
    if seen.kind == "log":
        return False
    if name.startswith(("authorization code #", "state #")):
        return _front_channel(world, name, seen)
    if name in world.revealed:
        if seen.kind == "body" and seen.seq == world.revealed[name]:
            return True
    if "client secret" in name and seen.kind == "request header" and seen.name == "Authorization" \
            and urlsplit(seen.url).path == "/oauth/token":
        return True     # client authentication (HTTP Basic) at the token endpoint: RFC 6749 §2.3.1
    return seen.kind == "body" and seen.seq in world.token_answers


def _places(world: World) -> list[Seen]:
    return observations(world.responses) + world.capture.seen()


def _leaks(world: World, kinds: tuple[str, ...]) -> list[str]:
    leaks = []
    for seen in _places(world):
        if seen.kind not in kinds or not seen.text:
            continue
        for name, value in world.secrets.items():
            form = found(value, seen.text)
            if form and not allowed(world, name, seen):
                start = max(seen.text.find(form) - 60, 0)
                leaks.append(f"{name} ({'whole' if form == value else form!r}) in {seen.where}: "
                             f"...{seen.text[start:start + 180]!r}")
    return leaks


# ---- the tests ------------------------------------------------------------------------------------

def test_the_run_really_logged_at_debug(world):
    """The search below is only worth something if the loggers really spoke."""
    names = {s.name.split(".")[0] for s in world.capture.seen()}
    assert {"werkzeug", "urllib3", "sqlalchemy"} <= names, names
    access = [s.text for s in world.capture.seen() if s.name == "werkzeug"]
    assert any('"GET /callback HTTP/1.1" 303' in line for line in access), access[:5]
    assert len(world.secrets) >= 15, sorted(world.secrets)
    # Authlib did log the tokens it issued at DEBUG, and they reached the handler masked
    issued = [s.text for s in world.capture.seen() if s.name.startswith("authlib") and "Issue token" in s.text]
    assert issued and all("'access_token': '••••" in line for line in issued), issued[:2]


def test_every_part_was_visited(world):
    """The flows really went through every page the search relies on."""
    paths = {urlsplit(r.request.url).path for r in world.responses}
    for wanted in ("/callback", "/oauth/authorize", "/authorize/consent", "/settings", "/share", "/otp-test",
                   "/dashboard/settings/oauth", "/dashboard/settings/api", "/dashboard/settings/webhooks",
                   "/dashboard/settings/green-button", "/oauth/token", "/outbox"):
        assert wanted in paths, wanted
    for part in ("/tools/refresh", "/tools/client_credentials", "/tools/service_status", "/tools/revoke",
                 "/tools/fetch", "/json-api", "/events.json", "/meters/", "/data.xml", "/p/"):
        assert any(part in p for p in paths), part
    assert sum(p.startswith("/runs/") and p.endswith(".json") and "/events" not in p for p in paths) == 2


def test_no_secret_in_any_log_line(world):
    leaks = _leaks(world, ("log",))
    assert not leaks, "\n".join(leaks[:20])


def test_access_log_lines_have_no_query_string(world):
    for seen in world.capture.seen():
        if seen.name == "werkzeug" and '"' in seen.text:
            request_line = seen.text.split('"')[1]
            assert "?" not in request_line, seen.text


def test_no_secret_in_any_page_json_or_download(world):
    leaks = _leaks(world, ("body",))
    assert not leaks, "\n".join(leaks[:20])


def test_no_secret_in_any_url_or_header(world):
    """URLs of every request (each redirect hop), Location, Set-Cookie, Referer and the rest:
    the code and state only in the front channel, cookie values only in cookie headers."""
    leaks = _leaks(world, ("url", "request header", "response header"))
    assert not leaks, "\n".join(leaks[:20])
    cookie_values = {value for _, value in world.cookies if len(value) >= 16}
    for seen in _places(world):
        if seen.kind in ("request header", "response header") and seen.name.lower() in ("cookie", "set-cookie"):
            continue
        for value in cookie_values:
            assert value not in seen.text, f"a session cookie's value in {seen.where}"


def test_the_exceptions_are_real(world):
    """Each exception above is used: the code and state do travel where they must, the revealed
    secrets are on their reveal page, the token endpoint's answer holds its token."""
    places = observations(world.responses)
    for code, state in world.codes:
        assert any(s.kind == "url" and code in s.text and urlsplit(s.url).path == "/callback" for s in places)
        assert any(s.kind == "response header" and s.name.lower() == "location" and code in s.text
                   for s in places)
        assert any(s.kind == "url" and state in s.text and "/oauth/authorize" in s.url for s in places)
    for name, seq in world.revealed.items():
        bodies = [s for s in places if s.kind == "body" and world.secrets[name] in s.text]
        assert [s.seq for s in bodies] == [seq], f"the {name} is shown on {[s.where for s in bodies]}"
    token = world.secrets["direct client_access_token"]
    assert any(s.seq in world.token_answers and token in s.text for s in places)


def test_no_code_or_state_in_the_callbacks_answer(world):
    """The callback answers with a 303 to a clean URL and no-referrer, so neither a page, nor
    the address bar, nor a Referer it could cause carries the code."""
    callbacks = [r for r in world.responses if urlsplit(r.request.url).path == "/callback"
                 and r.request.url.startswith(world.live.site_url)]
    assert len(callbacks) == len(world.codes) == 2
    for resp in callbacks:
        assert resp.status_code == 303
        assert "?" not in resp.headers["Location"] and "code" not in resp.headers["Location"]
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["Cache-Control"] == "no-store"
    for resp in world.responses:
        ctype = resp.headers.get("Content-Type", "")
        if "html" in ctype:
            assert resp.headers.get("Referrer-Policy") in ("no-referrer", "strict-origin", "same-origin"), \
                resp.request.url


def test_cookies_hold_no_secret(world):
    """Both session cookies decoded (base64 and zlib): only ids and marks, never a secret."""
    decoded = []
    for name, value in world.cookies:
        if not value:
            continue
        payload = flask_session_payload(value)
        data = json.loads(payload)
        assert isinstance(data, dict)
        decoded.append((name, data, payload))
        for secret_name, secret in world.secrets.items():
            assert not found(secret, payload) and not found(secret, value), f"the {secret_name} in cookie {name}"
    keys = {key for _, data, _ in decoded for key in data}
    assert keys, "no session cookie was decoded"
    assert not any(re.search(r"token|secret|code|verifier|password", key, re.I) and key not in
                   ("csrf_token", "dashboard_secret", "dashboard_reveal") for key in keys), keys


def test_mask_shows_at_most_four_characters():
    for length in range(0, 200):
        value = "".join(chr(0x41 + i % 26) for i in range(length))
        masked = mask(value)
        shown = masked.replace(MASK, "")
        if not value:
            continue
        assert len(shown) <= MAX_SHOWN and (not shown or value.endswith(shown)), (length, masked)
        if length <= 2 * MAX_SHOWN:
            assert shown == "", "a short secret is shown in part"


def test_masked_values_on_pages_show_at_most_four_characters(world):
    masked = re.compile(rf"([A-Za-z0-9_\-]*){MASK}+([A-Za-z0-9_\-]*)")
    checked = 0
    for seen in observations(world.responses):
        if seen.kind != "body":
            continue
        for match in masked.finditer(seen.text):
            checked += 1
            shown = re.sub(r"[^A-Za-z0-9]", "", match.group(1) + match.group(2))
            assert len(shown) <= MAX_SHOWN, f"{match.group(0)!r} in {seen.where}"
    assert checked >= 10, "no masked value seen: is the run page still showing its secrets masked?"


# ---- the log filter on its own ------------------------------------------------------------------

TOKEN = "4eae6200826de0c7c9b2500d0ba2f07764b52f83ea6c69fe982ee7f186ee3bd9"


@pytest.mark.parametrize("line", [
    f"Issue token {{'token_type': 'Bearer', 'access_token': '{TOKEN}', 'expires_in': 3600}} to Client",  # Authlib
    f"Using code_verifier: '{TOKEN}'",                                                                   # Authlib
    f'{{"refresh_token": "{TOKEN}", "scope": "FB=4"}}',                                                  # JSON
    f'http://127.0.0.1:5000 "GET /callback?code={TOKEN}&state=abc HTTP/1.1" 302 0',                     # urllib3
    f"GET /api/v2/authorizations?access_token={TOKEN}",
    f"grant_type=refresh_token&refresh_token={TOKEN}&client_secret={TOKEN}",                            # a form
    f"Authorization: Bearer {TOKEN}",
    f"Authorization: Basic {TOKEN}",
    # shapes the first version missed (review): unquoted, spaced, percent-encoded, upper case, bytes, tuples
    f"refresh_token: {TOKEN}",
    f"access_token = '{TOKEN}'",
    f"url=/x%3Faccess_token%3D{TOKEN}",
    f"ACCESS_TOKEN={TOKEN}",
    f"authorization: bearer {TOKEN}",
    f"[('code', '{TOKEN}'), ('state', 'x')]",
    f"{{'code': b'{TOKEN}'}}",
])
def test_scrub_masks_every_shape_a_secret_is_logged_in(line):
    out = logsafe.scrub(line)
    assert TOKEN not in out and TOKEN[:12] not in out and "••••" + TOKEN[-4:] in out, out


def test_scrub_leaves_ordinary_lines_alone():
    for line in ('127.0.0.1 - - [06/Dec/2026 04:04:15] "GET /runs/yWAGFYUi05Us HTTP/1.1" 200 -',
                 "passcode sms: sent (to +1•••1111)", "token_type=Bearer; scope=FB=4_16_51",
                 "webhook event 1 (ping) to endpoint 2, attempt 1: 200", "state: authorized since yesterday"):
        assert logsafe.scrub(line) == line


def _record(name: str, msg: str, *args, level=logging.DEBUG, exc_info=None) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, exc_info)


def test_the_filter_masks_messages_args_and_tracebacks():
    f = logsafe.SecretFilter()
    record = _record("authlib.oauth2.rfc6749.grants.refresh_token", "Issue token %r to %r",
                     {"access_token": TOKEN, "refresh_token": TOKEN[::-1]}, "client")
    assert f.filter(record) and TOKEN not in record.getMessage() and TOKEN[::-1] not in record.getMessage()
    try:
        raise ValueError(f"bad answer: {{'access_token': '{TOKEN}'}}")
    except ValueError:
        import sys

        record = _record("demo.site", "unhandled error on %s %s", "GET", "/runs/x", exc_info=sys.exc_info())
    assert f.filter(record)
    text = logging.Formatter().format(record)
    assert "unhandled error on GET /runs/x" in text and "ValueError" in text and TOKEN not in text


def test_the_filter_hides_sql_parameters_and_rows():
    f = logsafe.SecretFilter()
    assert not f.filter(_record("sqlalchemy.engine.Engine", "Row %r", ("state", TOKEN)))
    params = _record("sqlalchemy.engine.Engine", "[%s] %r", "generated in 0.001s", ("uq6k0AcEzRHAA7YW", TOKEN),
                     level=logging.INFO)
    assert f.filter(params) and TOKEN not in params.getMessage() and "generated in" in params.getMessage()
    statement = _record("sqlalchemy.engine.Engine", "SELECT clients.client_id FROM clients WHERE x = ?",
                        level=logging.INFO)
    assert f.filter(statement) and statement.getMessage().startswith("SELECT clients.client_id")


def test_records_of_loggers_made_after_install_are_scrubbed_too():
    """Flask makes app.logger (demo.site) on first use, gunicorn its access log at start: both after
    install(). The record factory scrubs them anyway, tracebacks included."""
    import io

    logsafe.install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    late = logging.getLogger(f"gbc.made.later.{TOKEN[:6]}")
    late.addHandler(handler)
    late.propagate = False
    try:
        late.warning("token response %s", {"access_token": TOKEN})
        try:
            raise RuntimeError(f"upstream said access_token={TOKEN}")
        except RuntimeError:
            late.exception("unhandled error on GET /callback?code=%s", TOKEN)
        access = logging.getLogger("gunicorn.access")
        level, access.level = access.level, logging.INFO
        access.addHandler(handler)
        access.info('"GET /callback?code=%s&state=abc HTTP/1.1" 302', TOKEN)
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    text = stream.getvalue()
    assert text.count("••••" + TOKEN[-4:]) >= 4 and TOKEN not in text and TOKEN[:12] not in text, text
    assert "RuntimeError" in text


def test_a_view_that_crashes_logs_its_traceback_scrubbed(tmp_path, caplog):
    """The site's 500 handler logs the exception through app.logger (demo.site), made after install."""
    from demo.config import load_config
    from demo.site import create_app

    app = create_app(load_config({"instance_path": str(tmp_path), "secret_key": "k" * 32, "sandbox": False},
                                 env={}))

    @app.get("/boom-for-test")
    def boom():
        raise RuntimeError(f"upstream said access_token={TOKEN}")

    with caplog.at_level(logging.ERROR):
        resp = app.test_client().get("/boom-for-test")
    assert resp.status_code == 500
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "RuntimeError" in logged and TOKEN not in logged and TOKEN[:12] not in logged, logged


def test_install_reaches_child_loggers_made_before_it():
    child = logging.getLogger("authlib.leak_check.child")
    logsafe.install()
    assert any(isinstance(x, logsafe.SecretFilter) for x in child.filters)
    assert any(isinstance(x, logsafe.SecretFilter) for x in logging.getLogger("urllib3.connectionpool").filters)
    logsafe.install()
    assert len([x for x in child.filters if isinstance(x, logsafe.SecretFilter)]) == 1


# ---- Referer in a real browser -----------------------------------------------------------------------

@pytest.mark.browser
def test_a_browser_never_sends_the_code_or_state_as_referer(live, browser):
    """The residential flow clicked in Chromium: every request it makes is kept, and none but the
    callback itself carries the code or state, in its URL or its Referer; the run page's
    document.referrer is empty."""
    import re as re_

    from browsing import open_page

    page = open_page(browser)
    seen = []
    page.context.on("request", lambda request: seen.append(request))
    try:
        page.goto(live.site_url + "/")
        page.get_by_role("link", name="residential by phone: 111-111-1111").click()
        page.locator("button#connect").click()
        page.wait_for_url(re_.compile(r".*/authorize/verify$"))
        page.get_by_label("Passcode").fill(page.locator("#test-passcode").inner_text().strip())
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(re_.compile(r".*/authorize/consent$"))
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(re_.compile(re_.escape(live.site_url) + r"/runs/[\w-]+$"))
        page.wait_for_load_state("networkidle")
        callbacks = [r for r in seen if r.url.startswith(live.site_url + "/callback?")]
        assert len(callbacks) == 1, [r.url for r in seen]
        query = parse_qs(urlsplit(callbacks[0].url).query)
        code, state = query["code"][0], query["state"][0]
        response = callbacks[0].response()
        assert response.status == 303 and response.header_value("referrer-policy") == "no-referrer"
        for request in seen:
            referer = request.header_value("referer") or ""
            assert code not in referer and state not in referer, (request.url, referer)
            if request is not callbacks[0]:
                assert code not in request.url, request.url
        assert page.evaluate("document.referrer") == ""
        assert code not in page.url and state not in page.url
    finally:
        page.context.close()

"""Per-IP rate limits (demo/ratelimit.py, Flask-Limiter) on the sandbox's passcode, lookup,
resend and dashboard sign-in forms and on prefilled authorization requests, over real HTTP on
loopback, plus the rules that hold per pending authorization: the lockout after
``sandbox_otp_max_attempts`` wrong passcodes (demo/sandbox/portal.py ``verify_otp``) and the
constant-time comparison (demo/tokens.py ``same``).

A second client address is a second loopback address (127.0.0.2): Linux answers the whole
127.0.0.0/8 on ``lo``, so a client socket bound to it reaches the servers on 127.0.0.1.
"""
from __future__ import annotations

import hmac
import time

import pytest
from requests.adapters import HTTPAdapter
from sandbox_steps import RESIDENTIAL_PHONE, authorize, lookup, servers, sign_in

from demo import ratelimit, tokens
from demo.config import DEFAULTS, ConfigError, load_config
from demo.sandbox import create_app as create_sandbox
from demo.sandbox import portal
from demo.sandbox.models import PendingAuthorization

from conftest import Page, Visitor

CLIENT = {"client_id": "PCE_limits001", "client_secret": "limits-secret-000001", "company_name": "Limits Co",
          "redirect_uris": ["{site_url}/callback"]}
OTHER_ADDRESS = "127.0.0.2"


class _FromAddress(HTTPAdapter):
    """Connections from a chosen local address."""

    def __init__(self, address: str) -> None:
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        return super().init_poolmanager(*args, **kwargs)


def from_address(visitor: Visitor, address: str) -> Visitor:
    visitor.http.mount("http://", _FromAddress(address))
    return visitor


@pytest.fixture
def make_live(tmp_path):
    """Fresh servers (so fresh counters) with the given limits; generous ones for the rest."""
    started = []

    def make(**overrides):
        settings = {"ratelimit_otp": "50 per minute", "ratelimit_lookup": "50 per minute",
                    "ratelimit_signin": "50 per minute", "sandbox_webhooks": False, **overrides}
        cm = servers(tmp_path / f"i{len(started)}", [CLIENT], **settings)
        started.append(cm)
        return cm.__enter__()

    yield make
    for cm in started:
        cm.__exit__(None, None, None)


def _verify_page(visitor, live) -> Page:
    page = lookup(visitor, authorize(visitor, live, CLIENT["client_id"]), "phone", RESIDENTIAL_PHONE)
    assert page.status == 200 and page.url.endswith("/authorize/verify"), page.body_text[:300]
    return page


def _wrong(page: Page) -> str:
    right = page.text_of("test-passcode")
    return "000000" if right != "000000" else "111111"


def _pending(live, visitor) -> PendingAuthorization:
    """The visitor's pending authorization, read from the sandbox database."""
    db = live.sandbox_app.extensions["gbc_sandbox"].db
    with db.session() as s:
        rows = s.query(PendingAuthorization).all()
        assert len(rows) == 1
        s.expunge(rows[0])
        return rows[0]


def _assert_too_many(page: Page) -> int:
    """The 429 page: clear words on the sandbox's layout, with Retry-After; returns the seconds."""
    assert page.status == 429, page.body_text[:300]
    assert "Too many attempts from your network. Try again in 1 minute." in page.text_of("too-many-message")
    assert "SANDBOX" in page.body_text and "Nothing you already did is lost" in page.body_text
    assert page.response.headers["Cache-Control"] == "no-store"
    assert "default-src 'self'" in page.response.headers["Content-Security-Policy"]
    seconds = int(page.response.headers["Retry-After"])
    assert 1 <= seconds <= 60
    return seconds


# ---- passcode attempts --------------------------------------------------------------------------

def test_wrong_passcodes_are_capped_per_ip_and_the_pending_authorization_survives(make_live):
    live = make_live(ratelimit_otp="3 per minute")
    visitor = Visitor()
    page = _verify_page(visitor, live)
    right, wrong = page.text_of("test-passcode"), _wrong(page)
    for left in (4, 3, 2):                                     # per pending authorization: 5 tries
        page = page.form("/authorize/verify").set("code", wrong).submit(visitor)
        assert page.status == 422 and f"{left} tries left" in page.text_of("otp-error")
    form_page = page
    page = form_page.form("/authorize/verify").set("code", wrong).submit(visitor)
    _assert_too_many(page)
    # the refused attempt never reached the view: the pending authorization is as it was
    pending = _pending(live, visitor)
    assert pending.stage == "otp" and pending.otp_attempts == 3
    # GETs don't count: the passcode page still shows, any number of times
    for _ in range(5):
        again = visitor.get(live.sandbox_url + "/authorize/verify")
        assert again.status == 200 and again.text_of("test-passcode") == right
    # the same customer on another network (another address) carries on with the right passcode
    from_address(visitor, OTHER_ADDRESS)
    page = form_page.form("/authorize/verify").set("code", right).submit(visitor)
    assert page.status == 200 and page.url.endswith("/authorize/consent"), page.body_text[:300]


def test_right_passcodes_do_not_count(make_live):
    live = make_live(ratelimit_otp="2 per minute")
    for _ in range(4):                                         # twice the limit, all successes
        visitor = Visitor()
        page = _verify_page(visitor, live)
        page = page.form("/authorize/verify").set("code", page.text_of("test-passcode")).submit(visitor)
        assert page.url.endswith("/authorize/consent"), page.body_text[:300]
    visitor = Visitor()
    page = _verify_page(visitor, live)
    wrong = _wrong(page)
    for _ in range(2):
        page = page.form("/authorize/verify").set("code", wrong).submit(visitor)
        assert page.status == 422
    _assert_too_many(page.form("/authorize/verify").set("code", wrong).submit(visitor))


def test_both_passcode_forms_share_one_allowance(make_live):
    live = make_live(ratelimit_otp="2 per minute")
    visitor = Visitor()
    page = _verify_page(visitor, live)
    page = page.form("/authorize/verify").set("code", _wrong(page)).submit(visitor)
    assert page.status == 422
    mine = Visitor()
    page = lookup(mine, mine.get(live.sandbox_url + "/my-authorizations"), "phone", RESIDENTIAL_PHONE,
                  action="/my-authorizations")
    assert page.url.endswith("/my-authorizations/verify")
    wrong = _wrong(page)
    page = page.form("/my-authorizations/verify").set("code", wrong).submit(mine)
    assert page.status == 422
    _assert_too_many(page.form("/my-authorizations/verify").set("code", wrong).submit(mine))
    # another address is not affected
    other = from_address(Visitor(), OTHER_ADDRESS)
    page = _verify_page(other, live)
    assert page.form("/authorize/verify").set("code", _wrong(page)).submit(other).status == 422


def test_five_wrong_passcodes_end_the_pending_authorization(make_live):
    """The per-authorization rule (portal.verify_otp, sandbox_otp_max_attempts) still holds
    under generous per-IP limits."""
    live = make_live()
    visitor = Visitor()
    page = _verify_page(visitor, live)
    wrong = _wrong(page)
    for _ in range(4):
        page = page.form("/authorize/verify").set("code", wrong).submit(visitor)
        assert page.status == 422
    page = page.form("/authorize/verify").set("code", wrong).submit(visitor)
    assert page.url.endswith("/authorize/lookup") and "Too many wrong passcodes" in page.body_text
    assert _pending(live, visitor).otp_hash is None            # the passcode is gone for good


def test_passcodes_are_compared_in_constant_time(monkeypatch):
    """portal.verify_otp compares hashes with tokens.same, which is hmac.compare_digest."""
    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(tokens.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    pending = PendingAuthorization(id="p1", stage="otp", otp_hash=tokens.digest("p1:123456"), otp_attempts=0,
                                   otp_expires=portal.utcnow().replace(year=2999))
    outcome = portal.verify_otp(pending, "654321", directory=None, max_attempts=5)
    assert not outcome.ok and pending.otp_attempts == 1
    assert calls == [(tokens.digest("p1:654321").encode(), tokens.digest("p1:123456").encode())]


# ---- lookups and resends -----------------------------------------------------------------------

def test_lookups_and_resends_share_a_per_ip_cap_and_gets_do_not_count(make_live):
    live = make_live(ratelimit_lookup="3 per minute", sandbox_resend_interval=0)
    visitor = Visitor()
    page = authorize(visitor, live, CLIENT["client_id"])
    for _ in range(5):                                         # page views are free
        assert visitor.get(live.sandbox_url + "/authorize/lookup").status == 200
        assert visitor.get(live.sandbox_url + "/my-authorizations").status == 200
    page = lookup(visitor, page, "phone", RESIDENTIAL_PHONE)                          # 1: a lookup
    assert page.url.endswith("/authorize/verify")
    page = page.form("/authorize/resend").submit(visitor)                             # 2: a resend
    assert page.status == 200 and "New passcode issued" in page.body_text
    mine = Visitor()
    page = lookup(mine, mine.get(live.sandbox_url + "/my-authorizations"), "phone", "333-333-3333",
                  action="/my-authorizations")                                        # 3: not found counts too
    assert page.status == 422
    _assert_too_many(lookup(mine, page, "phone", RESIDENTIAL_PHONE, action="/my-authorizations"))
    other = from_address(Visitor(), OTHER_ADDRESS)
    page = lookup(other, authorize(other, live, CLIENT["client_id"]), "phone", RESIDENTIAL_PHONE)
    assert page.url.endswith("/authorize/verify")


# ---- prefilled authorization requests -----------------------------------------------------------

PREFILLED = f"FB=4_16_51;AdditionalScope=auth-phone-{RESIDENTIAL_PHONE}"


def test_prefilled_authorize_requests_are_capped_per_ip_and_plain_ones_are_free(make_live):
    """GET /oauth/authorize with auth-<type>-<value> looks the customer up at once (and may send a
    passcode): it counts, per address; a request without a prefilled value does not."""
    live = make_live(ratelimit_authorize="3 per minute")
    visitor = Visitor()
    for scope in ("FB=4_16_51", None, "FB=4_16_51;AdditionalScope=auth-phone", "FB=4_x", "FB=4_16_51") * 2:
        page = authorize(visitor, live, CLIENT["client_id"], scope=scope)      # free, any number of times
        assert page.status in (200, 400) and "Too many" not in page.body_text, page.body_text[:300]
    for _ in range(3):
        page = authorize(Visitor(), live, CLIENT["client_id"], scope=PREFILLED)
        assert page.status == 200 and page.url.endswith("/authorize/verify"), page.body_text[:300]
    _assert_too_many(authorize(Visitor(), live, CLIENT["client_id"], scope=PREFILLED))
    head = visitor.http.head(live.sandbox_url + "/oauth/authorize", timeout=10, allow_redirects=False,
                             params={"response_type": "code", "client_id": CLIENT["client_id"], "scope": PREFILLED})
    assert head.status_code == 429                                   # HEAD runs the view too: it counts
    page = authorize(visitor, live, CLIENT["client_id"])             # plain requests still go through
    assert page.status == 200 and page.url.endswith("/authorize/lookup")
    other = from_address(Visitor(), OTHER_ADDRESS)
    page = authorize(other, live, CLIENT["client_id"], scope=PREFILLED)
    assert page.url.endswith("/authorize/verify")


def test_prefilled_authorize_requests_and_lookup_forms_have_their_own_allowances(make_live):
    live = make_live(ratelimit_authorize="1 per minute", ratelimit_lookup="1 per minute")
    page = authorize(Visitor(), live, CLIENT["client_id"], scope=PREFILLED)
    assert page.url.endswith("/authorize/verify")
    visitor = Visitor()
    page = lookup(visitor, authorize(visitor, live, CLIENT["client_id"]), "phone", RESIDENTIAL_PHONE)
    assert page.url.endswith("/authorize/verify")
    _assert_too_many(authorize(Visitor(), live, CLIENT["client_id"], scope=PREFILLED))


@pytest.mark.parametrize("scope, counted", [
    (PREFILLED, True),
    ("FB=4_16_51;AdditionalScope=auth-email-uapi-test-residential%40example.com", True),
    ("FB=4_16_51;AdditionalScope=auth-account-111111111-1", True),
    ("FB=4_16_51;AdditionalScope=auth-email", False),                # the lookup type only: no lookup
    ("FB=4_16_51;AdditionalScope=noedit", False),
    ("FB=4_16_51", False),
    ("", False),
    ("FB=;;AdditionalScope=auth-phone-1", False),                     # refused as invalid_scope first
])
def test_which_authorize_requests_count(tmp_path, scope, counted):
    app = create_sandbox(_settings(tmp_path))
    with app.test_request_context("/oauth/authorize", query_string={"scope": scope}):
        assert ratelimit.prefilled_lookup() is counted


# ---- dashboard sign-in -------------------------------------------------------------------------

def test_dashboard_sign_in_counts_failures_per_ip(make_live):
    live = make_live(ratelimit_signin="2 per minute")
    for _ in range(3):                                         # good sign-ins don't count
        page = sign_in(Visitor(), live, CLIENT["client_id"], CLIENT["client_secret"])
        assert page.url.endswith("/dashboard/authorizations")
    visitor = Visitor()
    for _ in range(2):
        assert sign_in(visitor, live, CLIENT["client_id"], "wrong-secret").status == 401
    _assert_too_many(sign_in(visitor, live, CLIENT["client_id"], "wrong-secret"))
    # from this address even the right secret waits: guessing must not go on
    assert sign_in(Visitor(), live, CLIENT["client_id"], CLIENT["client_secret"]).status == 429
    other = from_address(Visitor(), OTHER_ADDRESS)
    assert sign_in(other, live, CLIENT["client_id"], CLIENT["client_secret"]).url.endswith("/authorizations")


def test_the_limit_lifts_when_the_window_has_passed(make_live):
    live = make_live(ratelimit_signin="2 per 2 seconds")
    visitor = Visitor()
    for _ in range(2):
        assert sign_in(visitor, live, CLIENT["client_id"], "wrong-secret").status == 401
    page = sign_in(visitor, live, CLIENT["client_id"], "wrong-secret")
    assert page.status == 429
    seconds = int(page.response.headers["Retry-After"])
    assert 1 <= seconds <= 3
    time.sleep(seconds + 0.2)
    assert sign_in(visitor, live, CLIENT["client_id"], "wrong-secret").status == 401


def test_limits_can_be_switched_off(make_live):
    live = make_live(ratelimit_signin="1 per minute", ratelimit_enabled=False)
    visitor = Visitor()
    for _ in range(3):
        assert sign_in(visitor, live, CLIENT["client_id"], "wrong-secret").status == 401


# ---- configuration, key and JSON ---------------------------------------------------------------

def _settings(tmp_path, **overrides):
    return load_config({"instance_path": str(tmp_path), "secret_key": "k", "sandbox_webhooks": False,
                        **overrides}, env={})


@pytest.mark.parametrize("key", ["ratelimit_otp", "ratelimit_lookup", "ratelimit_signin", "ratelimit_authorize"])
def test_a_bad_limit_stops_the_start(tmp_path, key):
    with pytest.raises(ConfigError, match=key):
        create_sandbox(_settings(tmp_path, **{key: "lots per minute"}))


def test_an_unusable_storage_url_stops_the_start(tmp_path):
    with pytest.raises(ConfigError, match="ratelimit_storage_url"):
        create_sandbox(_settings(tmp_path, ratelimit_storage_url="nosuch://127.0.0.1/0"))
    try:
        import redis  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install redis") as err:
            create_sandbox(_settings(tmp_path, ratelimit_storage_url="redis://:hunter2@127.0.0.1:6379/0"))
        assert "hunter2" not in str(err.value)                 # a password in the URL is not repeated


def test_defaults_are_on_parse_and_leave_room_for_the_test_suites():
    assert DEFAULTS["ratelimit_enabled"] is True and DEFAULTS["ratelimit_storage_url"] == "memory://"
    from limits import parse_many
    for rule in ratelimit.RULES:
        limits = parse_many(ratelimit.limit_value(DEFAULTS, rule))
        # browser and flow suites run dozens of flows a minute from 127.0.0.1 against one sandbox
        assert min(lim.amount for lim in limits) >= 10, rule


def test_an_empty_limit_switches_that_rule_off(tmp_path):
    app = create_sandbox(_settings(tmp_path, ratelimit_signin="", ratelimit_authorize=""))
    assert not hasattr(app.view_functions["dashboard.sign_in"], "__wrapped__")
    assert not hasattr(app.view_functions["sandbox.authorize"], "__wrapped__")
    assert hasattr(app.view_functions["sandbox.verify"], "__wrapped__")
    assert hasattr(create_sandbox(_settings(tmp_path)).view_functions["sandbox.authorize"], "__wrapped__")


@pytest.mark.parametrize("remote, key", [
    ("127.0.0.1", "127.0.0.1"),
    ("127.0.0.2", "127.0.0.2"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),    # one subscriber's /64 is one client
    ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:192.0.2.7", "192.0.2.7"),
    ("", "unknown"),                                   # never empty: an empty key skips the limit
])
def test_client_key(tmp_path, remote, key):
    app = create_sandbox(_settings(tmp_path))
    with app.test_request_context("/", environ_base={"REMOTE_ADDR": remote}):
        assert ratelimit.client_key() == key


def test_api_paths_get_json_429(tmp_path):
    app = create_sandbox(_settings(tmp_path))
    limiter = app.extensions[ratelimit.EXTENSION]
    app.add_url_rule("/probe.json", "probe", limiter.limit("1 per minute")(lambda: {"ok": True}))
    client = app.test_client()
    assert client.get("/probe.json").status_code == 200
    response = client.get("/probe.json")
    assert response.status_code == 429 and response.is_json
    assert response.json["error"] == "too_many_requests" and "from your network" in response.json["error_description"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60

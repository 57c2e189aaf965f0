"""The outbox (every passcode message, filterable with GET parameters, each row tied to
the browser that caused it, "Clear this browser's messages") and the per-pending-
authorization resend limits (interval, hourly cap; 429 with how long to wait)."""
from __future__ import annotations

import threading
import time

import pytest
from sandbox_steps import REAL_RESIDENTIAL_PHONE, authorize, ctx, lookup, outbox_code, outbox_rows, servers

from demo.sandbox import delivery, portal
from demo.sandbox.models import Base, OutboxMessage, PendingAuthorization
from demo.storage import Database
from demo.tokens import new_uid

from conftest import Visitor

CLIENTS = [
    {"client_id": "PCE_outbox001", "client_secret": "outbox-secret-0000001", "company_name": "Outbox Co",
     "redirect_uris": ["{site_url}/callback"]},
    {"client_id": "PCE_outboxlv1", "client_secret": "outbox-secret-live001", "company_name": "Outbox Live Co",
     "redirect_uris": ["{site_url}/callback"], "mode": "live"},
]
INTERVAL = 1
MAX = 3


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with servers(tmp_path_factory.mktemp("outbox"), CLIENTS, sandbox_resend_interval=INTERVAL,
                 sandbox_resend_max=MAX) as live:
        yield live


class Clock:
    """The sandbox portal's clock, stopped: time passes only when the test says so (no
    sleeping, and a slow machine can't let an interval run out between two requests)."""

    def __init__(self) -> None:
        self.now = time.time()

    def time(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch):
    stopped = Clock()
    monkeypatch.setattr(portal, "time", stopped)
    return stopped


def _verify(visitor, live, method: str, value: str, client_id: str = "PCE_outbox001"):
    page = lookup(visitor, authorize(visitor, live, client_id), method, value)
    assert page.url.endswith("/authorize/verify"), page.body_text[:400]
    return page


# ---- resend limits, without HTTP --------------------------------------------------------------

SETTINGS = {"sandbox_resend_interval": 30, "sandbox_resend_max": 3}


def test_resend_wait_interval_then_hourly_cap():
    pending = PendingAuthorization(id=new_uid(), client_id="x", request_args={}, otp_sent=[1000.0])
    wait = portal.resend_wait(pending, SETTINGS, now=1010)
    assert wait.seconds == 20 and "in 20 seconds" in wait.message
    assert not portal.resend_wait(pending, SETTINGS, now=1030)
    assert not portal.resend_wait(pending, SETTINGS, now=1010, interval=False)   # a new lookup
    pending.otp_sent = [1000.0, 1040.0, 1080.0]
    wait = portal.resend_wait(pending, SETTINGS, now=1200)
    assert wait.seconds == 3400 and "3 passcodes in the last hour" in wait.message and "57 minutes" in wait.message
    assert portal.resend_wait(pending, SETTINGS, now=1200, interval=False).seconds == 3400
    assert not portal.resend_wait(pending, SETTINGS, now=4601)        # the first one is over an hour old
    assert not portal.resend_wait(pending, {"sandbox_resend_interval": 0, "sandbox_resend_max": 0}, now=1081)


# ---- resend limits, over HTTP ---------------------------------------------------------------------

def test_resend_is_rate_limited_per_pending_authorization(live, visitor, clock):
    page = _verify(visitor, live, "email", "TEST_residential_resend@example.com")
    first = outbox_code(visitor, live, "resend@example.com")
    assert "You can ask for a new one in 1 second" in page.text_of("resend-wait")
    refused = page.form("/authorize/resend").submit(visitor)
    assert refused.status == 429 and refused.response.headers["Retry-After"] == "1"
    assert "You can ask for a new one in 1 second" in refused.text_of("otp-error")
    assert len(outbox_rows(visitor, live, to="resend@example.com")) == 1     # nothing was sent
    clock.advance(INTERVAL + 0.1)
    page = refused.form("/authorize/resend").submit(visitor)
    assert page.status == 200 and page.url.endswith("/authorize/verify")
    assert "New passcode issued" in page.body_text
    second = outbox_code(visitor, live, "resend@example.com")
    clock.advance(INTERVAL + 0.1)
    page = page.form("/authorize/resend").submit(visitor)
    assert page.status == 200 and len(outbox_rows(visitor, live, to="resend@example.com")) == MAX
    clock.advance(INTERVAL + 0.1)
    # the hourly cap: MAX passcodes, then about an hour to wait
    refused = page.form("/authorize/resend").submit(visitor)
    assert refused.status == 429 and int(refused.response.headers["Retry-After"]) > 3500
    assert f"You've asked for {MAX} passcodes in the last hour" in refused.text_of("otp-error")
    assert "in 60 minutes" in refused.text_of("otp-error")
    # a new lookup in the same request does not get around it
    again = lookup(visitor, visitor.get(live.sandbox_url + "/authorize/lookup"), "email",
                   "TEST_residential_resend@example.com")
    assert again.status == 429 and "passcodes in the last hour" in again.text_of("lookup-error")
    assert len(outbox_rows(visitor, live, to="resend@example.com")) == MAX
    # only the newest passcode works
    latest = outbox_code(visitor, live, "resend@example.com")
    for old in {first, second} - {latest}:
        wrong = refused.form("/authorize/verify").set("code", old).submit(visitor)
        assert wrong.status == 422
    page = refused.form("/authorize/verify").set("code", latest).submit(visitor)
    assert page.url.endswith("/authorize/consent")


def test_my_authorizations_resend_is_rate_limited(live, visitor, clock):
    page = visitor.get(live.sandbox_url + "/my-authorizations")
    page = lookup(visitor, page, "phone", "TEST_residential_650-555-0111", action="/my-authorizations")
    assert page.url.endswith("/my-authorizations/verify")
    refused = page.form("/my-authorizations/resend").submit(visitor)
    assert refused.status == 429 and "You can ask for a new one in" in refused.text_of("otp-error")
    assert refused.doc.cssselect("form[action='/my-authorizations/resend']")    # still My authorizations' page
    clock.advance(INTERVAL + 0.1)
    page = refused.form("/my-authorizations/resend").submit(visitor)
    assert page.status == 200 and page.url.endswith("/my-authorizations/verify")
    assert len(outbox_rows(visitor, live, to="6505550111")) == 2
    # typing the lookup again continues the same sign-in, with its count
    again = lookup(visitor, visitor.get(live.sandbox_url + "/my-authorizations"), "phone",
                   "TEST_residential_650-555-0111", action="/my-authorizations")
    assert again.url.endswith("/my-authorizations/verify")
    refused = lookup(visitor, visitor.get(live.sandbox_url + "/my-authorizations"), "phone",
                     "TEST_residential_650-555-0111", action="/my-authorizations")
    assert refused.status == 429 and "passcodes in the last hour" in refused.text_of("lookup-error")


# ---- the outbox ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browsers(live):
    """Two browsers, each with messages: A by email and SMS, plus a fictional customer's; B by email."""
    a, b = Visitor(), Visitor()
    _verify(a, live, "email", "TEST_residential_Alice.Filter@Example.com")
    _verify(a, live, "phone", "TEST_commercial_(650) 555-0123")
    _verify(a, live, "phone", REAL_RESIDENTIAL_PHONE, client_id="PCE_outboxlv1")
    _verify(b, live, "email", "TEST_badlogin_bob.filter@example.com")
    yield a, b
    a.http.close()
    b.http.close()


def _tos(rows) -> list[str]:
    return [r[1] for r in rows]


def test_outbox_filters(live, browsers):
    a, b = browsers
    viewer = Visitor()
    every = outbox_rows(viewer, live)
    assert {"alice.filter@example.com", "+16505550123", "bob.filter@example.com"} <= set(_tos(every))
    # ?to= is a direct link: substring, any case; phones however they are typed
    assert _tos(outbox_rows(viewer, live, to="ALICE.FILTER")) == ["alice.filter@example.com"]
    for typed in ("650-555-0123", "(650) 555-0123", "+1 650 555 0123", "5550123"):
        assert _tos(outbox_rows(viewer, live, to=typed)) == ["+16505550123"], typed
    sms = outbox_rows(viewer, live, channel="sms")
    assert sms and all(r[2] == "SMS" for r in sms) and "+16505550123" in _tos(sms)
    assert all(r[2] == "Email" for r in outbox_rows(viewer, live, channel="email"))
    assert _tos(outbox_rows(viewer, live, scenario="badlogin", to="filter")) == ["bob.filter@example.com"]
    recorded = outbox_rows(viewer, live, result="recorded")        # no SMTP / Twilio configured here
    assert recorded and all(r[5].startswith("recorded only") for r in recorded)
    fictional = outbox_rows(viewer, live, result="not_sent", to=REAL_RESIDENTIAL_PHONE)
    assert len(fictional) == 1 and fictional[0][5] == "not sent not sent: fictional customer"
    assert outbox_rows(viewer, live, channel="sms", to="alice") == []
    # only this browser
    mine_a = _tos(outbox_rows(a, live, mine="y"))
    assert set(mine_a) == {"alice.filter@example.com", "+16505550123", "+16505550142"}
    assert _tos(outbox_rows(b, live, mine="y")) == ["bob.filter@example.com"]
    assert outbox_rows(viewer, live, mine="y") == []                 # a browser that caused nothing


def test_only_this_browser_is_empty_for_a_browser_that_caused_nothing(live):
    with ctx(live).db.session() as s:    # a message no browser caused (none of the fixtures' rows is one)
        s.add(OutboxMessage(channel="email", to="nobody@mine.example", scenario="residential",
                            text="123456 is your passcode", delivery="recorded"))
    viewer = Visitor()
    assert _tos(outbox_rows(viewer, live, to="@mine.example")) == ["nobody@mine.example"]
    page = viewer.get(live.sandbox_url + "/outbox", params={"mine": "y"})
    assert page.status == 200 and page.text_of("outbox-count") == "No messages match these filters."


def test_outbox_page_form_count_and_bad_filters(live, browsers):
    viewer = Visitor()
    page = viewer.get(live.sandbox_url + "/outbox", params={"to": "alice.filter"})
    form = page.doc.get_element_by_id("outbox-filters")
    assert form.get("method") == "get" and not form.cssselect("input[name=csrf_token]")
    assert form.cssselect("input[name=to]")[0].get("value") == "alice.filter"
    assert page.text_of("outbox-count") == "1 message matches these filters."
    # the form submits as a GET and gives the same result
    again = page.form("/outbox").set("channel", "email").submit(viewer)
    assert "channel=email" in again.url and _tos(outbox_rows(viewer, live, to="alice.filter")) == \
        [r.findall("td")[1].text_content().strip() for r in again.doc.cssselect("table.outbox tbody tr")]
    bad = viewer.get(live.sandbox_url + "/outbox", params={"channel": "fax"})
    assert bad.status == 400 and "Channel" in bad.text_of("outbox-error")
    assert viewer.get(live.sandbox_url + "/outbox", params={"to": "x" * 400}).status == 400


def test_outbox_is_capped_newest_first_with_a_count(live):
    with ctx(live).db.session() as s:
        s.add_all(OutboxMessage(channel="email", to=f"bulk{i}@cap.example", scenario="residential",
                                text=f"{100000 + i} is your passcode", delivery="recorded")
                  for i in range(portal.OUTBOX_LIMIT + 5))
    viewer = Visitor()
    page = viewer.get(live.sandbox_url + "/outbox", params={"to": "@cap.example"})
    rows = page.doc.cssselect("table.outbox tbody tr")
    assert len(rows) == portal.OUTBOX_LIMIT
    assert rows[0].findall("td")[1].text_content() == f"bulk{portal.OUTBOX_LIMIT + 4}@cap.example"
    assert page.text_of("outbox-count") == (f"Showing the newest {portal.OUTBOX_LIMIT} of "
                                            f"{portal.OUTBOX_LIMIT + 5} messages that match.")


def test_clear_this_browsers_messages(live):
    a, b = Visitor(), Visitor()
    _verify(a, live, "email", "TEST_residential_clear.a@example.com")
    _verify(a, live, "phone", "TEST_residential_650-555-0131")
    _verify(b, live, "email", "TEST_residential_clear.b@example.com")
    page = a.get(live.sandbox_url + "/outbox")
    assert "This browser caused 2 messages" in page.body_text
    # CSRF: a bare POST is refused and deletes nothing
    assert a.request("POST", live.sandbox_url + "/outbox/clear", data={}).status == 400
    assert len(outbox_rows(a, live, mine="y")) == 2
    page = page.form("/outbox/clear").submit(a)
    assert page.url.endswith("/outbox") and "Cleared 2 messages of this browser." in page.body_text
    assert outbox_rows(a, live, mine="y") == [] and outbox_rows(a, live, to="clear.a@example.com") == []
    assert outbox_rows(a, live, to="6505550131") == []
    # the other browser's messages stay
    assert _tos(outbox_rows(b, live, mine="y")) == ["clear.b@example.com"]
    assert _tos(outbox_rows(a, live, to="clear.b@example.com")) == ["clear.b@example.com"]
    # nothing left to clear
    page = a.get(live.sandbox_url + "/outbox")
    assert "This browser has no messages in the outbox." in page.body_text
    assert not page.doc.cssselect("form[action='/outbox/clear']")
    with ctx(live).db.session() as s:   # the browser id is stored hashed, never as it is in the session
        assert all(len(h) == 64 for (h,) in s.query(OutboxMessage.browser_hash)
                   .filter(OutboxMessage.browser_hash.isnot(None)))


# ---- two requests at once ----------------------------------------------------------------------

RACE_SETTINGS = {"sandbox_resend_interval": 30, "sandbox_resend_max": 5, "sandbox_otp_ttl": 600,
                 "utility_name": "Peninsula Clean Energy", "sandbox_show_test_otp": False}


def test_two_resends_at_once_issue_one_passcode(tmp_path):
    """The limits are checked under the pending authorization's write lock: a second request
    that read the row before the first one committed waits, then sees the new passcode."""
    db = Database(f"sqlite:///{tmp_path / 'race.sqlite3'}", Base.metadata)
    pending_id = new_uid()
    with db.session() as s:
        s.add(PendingAuthorization(id=pending_id, client_id="x", request_args={}, stage="otp", test_contact=True,
                                   deliver=True, contact_channel="email", contact_address="race@example.com",
                                   scenario="residential", otp_sent=[time.time() - 60]))
    second: dict = {}
    reading = threading.Event()

    def other_request():
        with db.session() as s:
            pending = s.get(PendingAuthorization, pending_id)      # read before the first commits
            reading.set()
            second["wait"] = portal.resend(s, pending, RACE_SETTINGS, None)

    with db.session() as s:
        assert not portal.resend(s, s.get(PendingAuthorization, pending_id), RACE_SETTINGS, None)
        thread = threading.Thread(target=other_request)
        thread.start()
        assert reading.wait(5)
        time.sleep(0.1)                       # let it reach the lock (if it doesn't, it reads after the commit)
    thread.join(10)
    assert second["wait"] and "A passcode was just issued" in second["wait"].message
    with db.session() as s:
        assert s.query(OutboxMessage).filter_by(pending_id=pending_id).count() == 1
        assert len(s.get(PendingAuthorization, pending_id).otp_sent) == 2
    db.dispose()


def test_a_delivery_result_reaches_the_page_even_if_the_outbox_was_cleared_meanwhile(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'clear.sqlite3'}", Base.metadata)
    with db.session() as s:
        pending = PendingAuthorization(id=new_uid(), client_id="x", request_args={}, test_contact=True,
                                       deliver=True, contact_channel="email", contact_address="c@example.com",
                                       scenario="residential", browser_hash="b" * 64)
        s.add(pending)
        portal.issue_otp(s, pending, RACE_SETTINGS, None)
    with db.session() as s:
        [(first, _)] = portal.claim_queued(s, pending.id)
        assert portal.clear_outbox(s, "b" * 64) == 1           # "Clear this browser's messages" while sending
    failed = delivery.Result(delivery.FAILED, "connection refused by smtp.example:587")
    with db.session() as s:
        portal.record_delivery(s, first, pending.id, failed)
        assert s.get(PendingAuthorization, pending.id).otp_delivery == delivery.FAILED   # not "sending" for ever
    with db.session() as s:                                    # a newer passcode's status is not overwritten
        pending = s.get(PendingAuthorization, pending.id)
        portal.issue_otp(s, pending, RACE_SETTINGS, None)
    with db.session() as s:
        [(second, _)] = portal.claim_queued(s, pending.id)
        portal.record_delivery(s, first, pending.id, failed)
        assert s.get(PendingAuthorization, pending.id).otp_delivery == delivery.QUEUED
        portal.record_delivery(s, second, pending.id, delivery.Result(delivery.DELIVERED, "accepted"))
        assert s.get(PendingAuthorization, pending.id).otp_delivery == delivery.DELIVERED
    db.dispose()

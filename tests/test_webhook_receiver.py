"""The site's webhook receiver: the signature of reference §5.9 (test vector, raw body first,
then the 4-space re-serialization), and a real delivery from the sandbox to the URL shown on a
visitor's settings page, with the events appearing on the run they belong to; unsigned, badly
signed, oversized and unknown deliveries are refused and never shown as events; secrets stay masked."""
from __future__ import annotations

import json
import time
from urllib.parse import urlsplit

import pytest
import requests

from demo.sandbox import webhooks as sandbox_webhooks
from demo.sandbox.models import WebhookEndpointRow
from demo.site import integrator
from demo.site import webhook_receiver as receiver
from demo.storage import Database, Vault
from demo.tokens import new_token

from conftest import Visitor
from flow import full_flow

VECTOR = "6cd59ee8461872a3e0deea0d6428b5cdad5049452b4914ad66ed1cc1081b5e7d"
CLIENT = "PCE_ccccccccc"
FLOW_EVENTS = {"authorization_created", "authorization_update_started", "meter_created",
               "authorization_update_finished_successful"}


# --- the signature ------------------------------------------------------------------------------

def test_signature_test_vector():
    body = b'{\n    "json": "object"\n}'
    assert receiver.sign("secret", "salt", body) == VECTOR
    assert receiver.verify("secret", "salt", VECTOR, body)
    assert receiver.verify("secret", "salt", VECTOR.upper() + "\n", body)
    assert receiver.verify("secret", "salt", VECTOR, b'{"json":"object"}')       # re-serialized
    assert receiver.verify("secret", "salt", VECTOR, b'{"json": "object"}')
    assert not receiver.verify("secret", "pepper", VECTOR, body)
    assert not receiver.verify("other", "salt", VECTOR, body)
    assert not receiver.verify("secret", "salt", VECTOR, b"not json")
    assert not receiver.verify("", "salt", VECTOR, body) and not receiver.verify("secret", "", VECTOR, body)
    assert not receiver.verify("secret", "salt", "", body)


def test_the_site_and_the_sandbox_agree():
    payload = sandbox_webhooks.body([{"uid": "1", "type": "ping"}])
    assert receiver.sign("k", "s", payload) == sandbox_webhooks.sign("k", "s", payload)


# --- receive() on its own database ----------------------------------------------------------------

@pytest.fixture
def local(tmp_path):
    db = Database(f"sqlite:///{tmp_path}/site.sqlite3", integrator.Base.metadata)
    vault = Vault("test")
    with db.session() as s:
        row = integrator.ensure_settings(s, "visitor-1")
        row.webhook_secret_enc = vault.encrypt("whsec")
        rid = row.receiver_id
    return db, vault, rid


def signed(secret: str, payload: dict, salt: str = "salt-1") -> tuple[dict, bytes]:
    body = json.dumps(payload, indent=4).encode()
    return {receiver.SALT_HEADER: salt, receiver.SIGNATURE_HEADER: receiver.sign(secret, salt, body)}, body


def test_receive_verifies_stores_and_deduplicates(local):
    db, vault, rid = local
    payload = {"events": [{"uid": "9", "type": "authorization_created", "ts": "2026-01-01T00:00:00+00:00",
                           "authorization_uid": "77"}], "next": None}
    headers, body = signed("whsec", payload)
    with db.session() as s:
        first = receiver.receive(s, rid, headers, body, vault)
        again = receiver.receive(s, rid, headers, body, vault)
    assert (first.status, first.stored, again.status, again.stored) == (200, 1, 200, 0)
    with db.session() as s:
        events = integrator.events_for_authorization(s, "visitor-1", "77")
    assert [(e["uid"], e["type"], e["verified"]) for e in events] == [("9", "authorization_created", True)]


@pytest.mark.parametrize("headers, body, status, error", [
    ({}, b'{"events": []}', 400, "unsigned"),
    ({receiver.SALT_HEADER: "s"}, b'{"events": []}', 400, "unsigned"),
    ({receiver.SALT_HEADER: "s", receiver.SIGNATURE_HEADER: "00" * 32}, b'{"events": [{"authorization_uid": "77"}]}',
     401, "bad_signature"),
])
def test_receive_rejects_and_records(local, headers, body, status, error):
    db, vault, rid = local
    with db.session() as s:
        outcome = receiver.receive(s, rid, headers, body, vault)
    assert (outcome.status, outcome.error) == (status, error)
    with db.session() as s:
        rows = integrator.recent_deliveries(s, "visitor-1")
    assert rows and not any(r["verified"] for r in rows) and rows[0]["reason"].startswith(error)


def test_receive_refuses_bodies_that_are_not_events(local):
    db, vault, rid = local
    body = b"[1, 2, 3]"
    headers = {receiver.SALT_HEADER: "s", receiver.SIGNATURE_HEADER: receiver.sign("whsec", "s", body)}
    with db.session() as s:
        outcome = receiver.receive(s, rid, headers, body, vault)
    assert (outcome.status, outcome.error) == (400, "invalid_body")


def test_receive_without_a_secret_or_receiver(local):
    db, vault, rid = local
    headers, body = signed("whsec", {"events": []})
    with db.session() as s:
        integrator.reset(s, "visitor-1")
    with db.session() as s:
        assert receiver.receive(s, rid, headers, body, vault).error == "no_secret"
        assert receiver.receive(s, rid, headers, body, vault, default_secret="whsec").status == 200
        assert receiver.receive(s, "x" * 22, headers, body, vault).status == 404
        assert receiver.receive(s, "../etc", headers, body, vault).status == 404


def test_rows_are_capped_per_visitor(local, monkeypatch):
    db, vault, rid = local
    monkeypatch.setattr(receiver, "KEEP_PER_VISITOR", 5)
    with db.session() as s:
        for _ in range(8):
            receiver.receive(s, rid, {}, b"{}", vault)
    with db.session() as s:
        assert len(integrator.recent_deliveries(s, "visitor-1", limit=100)) == 5


# --- a real delivery from the sandbox ---------------------------------------------------------------

def sandbox_db(live):
    return live.sandbox_app.extensions["gbc_sandbox"].db


@pytest.fixture(scope="module")
def delivered(live):
    """A visitor with a webhook secret, the sandbox client's endpoint pointing at their receiver
    URL, and one residential flow; the endpoint is disabled afterwards."""
    visitor = Visitor()
    secret = "whsec-" + new_token(16)
    form = visitor.get(live.site_url + "/settings").form("/settings")
    page = form.set("webhook_secret", secret).submit(visitor)
    assert "Settings saved" in page.body_text
    url = page.text_of("receiver-url")
    assert url.startswith(live.site_url + "/webhooks/") and len(url.rsplit("/", 1)[1]) >= 20
    with sandbox_db(live).session() as s:
        endpoint = WebhookEndpointRow(client_id=CLIENT, url=url, event_types=[],
                                      secret_encrypted=sandbox_webhooks.endpoint_vault(live.settings).encrypt(secret))
        s.add(endpoint)
        s.flush()
        endpoint_id = endpoint.id
    try:
        run_page = full_flow(visitor, live, "residential", "phone")
        run_url = run_page.url
        deadline = time.monotonic() + 10
        while True:
            data = visitor.http.get(run_url + "/events.json", timeout=10).json()
            if FLOW_EVENTS <= {e["type"] for e in data["events"]} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        yield {"visitor": visitor, "secret": secret, "url": url, "run_url": run_url, "events": data}
    finally:
        with sandbox_db(live).session() as s:
            s.get(WebhookEndpointRow, endpoint_id).disabled = True
        visitor.http.close()


def test_flow_events_arrive_on_the_run(live, delivered):
    data = delivered["events"]
    assert FLOW_EVENTS <= {e["type"] for e in data["events"]}, data
    assert data["authorization_uid"] and all(e["authorization_uid"] == data["authorization_uid"]
                                             for e in data["events"])
    assert all(e["verified"] for e in data["events"]) and data["rejected"] == []
    meter_events = [e for e in data["events"] if e["type"] == "meter_created"]
    assert len(meter_events) == 1 and meter_events[0]["meter_uid"]
    page = delivered["visitor"].get(delivered["run_url"])
    shown = [tr.findall("td")[0].text_content() for tr in page.doc.cssselect("#events-body tr[data-uid]")]
    assert FLOW_EVENTS <= set(shown)
    assert page.doc.get_element_by_id("webhook-events").get("data-live") == "true"
    assert "js/events.js" in page.text and "<script>" not in page.text


def test_settings_page_lists_the_deliveries(live, delivered):
    page = delivered["visitor"].get(live.site_url + "/settings")
    rows = page.doc.cssselect("#deliveries tbody tr")
    assert rows and "verified" in rows[0].text_content()


def post(url: str, body: bytes, headers: dict) -> requests.Response:
    return requests.post(url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=10)


def test_bad_deliveries_are_refused_and_shown_as_rejected(live, delivered):
    url = delivered["url"]
    authorization_uid = delivered["events"]["authorization_uid"]
    forged = json.dumps({"events": [{"uid": "forged-1", "type": "authorization_revoked",
                                     "authorization_uid": authorization_uid}], "next": None}, indent=4).encode()
    resp = post(url, forged, {receiver.SALT_HEADER: "salt", receiver.SIGNATURE_HEADER: "ab" * 32})
    assert resp.status_code == 401 and resp.json()["error"] == "bad_signature"
    resp = post(url, forged, {})
    assert resp.status_code == 400 and resp.json()["error"] == "unsigned"
    resp = post(url, forged, {receiver.SALT_HEADER: "salt",
                              receiver.SIGNATURE_HEADER: receiver.sign("wrong-secret", "salt", forged)})
    assert resp.status_code == 401
    resp = post(url + "x", forged, {})
    assert resp.status_code == 404
    resp = post(url, b"{" + b" " * (receiver.MAX_BODY + 10) + b"}", {})
    assert resp.status_code == 413
    data = delivered["visitor"].http.get(delivered["run_url"] + "/events.json", timeout=10).json()
    assert "authorization_revoked" not in {e["type"] for e in data["events"]}
    assert len([e for e in data["rejected"] if e["type"] == "authorization_revoked"]) == 3
    page = delivered["visitor"].get(delivered["run_url"])
    assert "rejected" in page.text_of("events-rejected")
    assert "authorization_revoked" not in page.text_of("events-table")


def test_a_compact_body_signed_over_the_pretty_one_is_accepted(live, delivered):
    url, secret = delivered["url"], delivered["secret"]
    authorization_uid = delivered["events"]["authorization_uid"]
    payload = {"events": [{"uid": "site-test-1", "type": "authorization_update_progress",
                           "authorization_uid": authorization_uid}], "next": None}
    pretty = json.dumps(payload, indent=4).encode()
    compact = json.dumps(payload, separators=(",", ":")).encode()
    headers = {receiver.SALT_HEADER: "s2", receiver.SIGNATURE_HEADER: receiver.sign(secret, "s2", pretty)}
    assert post(url, compact, headers).json() == {"success": True, "stored": 1}
    assert post(url, compact, headers).json() == {"success": True, "stored": 0}      # a re-delivery
    data = delivered["visitor"].http.get(delivered["run_url"] + "/events.json", timeout=10).json()
    assert "authorization_update_progress" in {e["type"] for e in data["events"]}


def test_secrets_never_leave_unmasked(live, delivered):
    visitor, secret = delivered["visitor"], delivered["secret"]
    for url in (delivered["run_url"], delivered["run_url"] + ".json", delivered["run_url"] + "/events.json",
                live.site_url + "/settings", live.site_url + "/"):
        resp = visitor.http.get(url, timeout=10)
        assert resp.status_code == 200 and secret not in resp.text, url
    assert "••••" + secret[-4:] in visitor.get(live.site_url + "/settings").body_text
    for cookie in visitor.http.cookies:
        assert secret not in cookie.value


def test_events_belong_to_their_visitor(live, delivered):
    other = Visitor()
    assert other.http.get(delivered["run_url"] + "/events.json", timeout=10).status_code == 404
    other_url = other.get(live.site_url + "/settings").text_of("receiver-url")
    assert urlsplit(other_url).path != urlsplit(delivered["url"]).path


def test_a_non_hex_signature_is_refused_not_a_crash():
    from demo.site.webhook_receiver import verify

    assert verify("secret", "salt", "é" * 64, b"{}") is False
    assert verify("secret", "salt", "zz", b"{}") is False

"""Webhooks: the signature of reference §5.9, and delivery to a real HTTP receiver
on loopback (salt and signature headers, the 4-space body, retries with back-off,
failures recorded, no double sends, a clean stop)."""
from __future__ import annotations

import json
import socket
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from demo.sandbox import lifecycle, webhooks
from demo.sandbox.models import ApiTokenRow, AuthorizationRow, EventRow, WebhookEndpointRow
from demo.storage import utcnow
from demo.tokens import digest, new_token

CLIENT = "PCE_ccccccccc"
VECTOR = "6cd59ee8461872a3e0deea0d6428b5cdad5049452b4914ad66ed1cc1081b5e7d"


# ---------------------------------------------------------------- signing


def test_signature_test_vector():
    body = b'{\n    "json": "object"\n}'
    assert webhooks.sign("secret", "salt", body) == VECTOR
    assert webhooks.verify("secret", "salt", VECTOR, body)
    # a receiver that got the compact form still verifies through the re-serialized body
    assert webhooks.verify("secret", "salt", VECTOR, b'{"json":"object"}')
    assert not webhooks.verify("secret", "pepper", VECTOR, body)
    assert not webhooks.verify("other", "salt", VECTOR, body)
    assert not webhooks.verify("secret", "salt", VECTOR, b"not json")


def test_body_is_pretty_printed_with_four_spaces():
    events = [{"uid": "1", "type": "ping"}]
    assert webhooks.body(events) == json.dumps({"events": events, "next": None}, indent=4).encode()
    assert b'\n    "events": [\n        {\n            "uid": "1"' in webhooks.body(events)


def test_backoff_doubles_up_to_the_maximum():
    settings = {"sandbox_webhook_retry_base": 60, "sandbox_webhook_retry_max": 3600}
    assert [webhooks.backoff(settings, n) for n in range(1, 9)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]


# ---------------------------------------------------------------- a real receiver


class Receiver:
    """An HTTP server on 127.0.0.1:0 recording every POST; answers ``statuses`` in turn, then 200."""

    def __init__(self, statuses=(), delay: float = 0.0) -> None:
        self.requests: list[dict] = []
        self.statuses = list(statuses)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with receiver.lock:
                    receiver.requests.append({"headers": dict(self.headers), "body": raw, "at": time.monotonic()})
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                if delay:
                    time.sleep(delay)
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/gbc"

    def wait(self, count: int, timeout: float = 8.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.05)
        raise AssertionError(f"expected {count} webhook requests, got {len(self.requests)}")

    def events(self) -> list[dict]:
        return [e for r in self.requests for e in json.loads(r["body"])["events"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def sandbox(live):
    """The shared servers, with an API token; endpoints are made (and disabled) per test."""
    token = new_token()
    with db_of(live).session() as s:
        s.add(ApiTokenRow(client_id=CLIENT, token_hash=digest(token), last4=token[-4:],
                          expires=utcnow() + timedelta(days=3650)))
    live.api = live.sandbox_url + "/api/v2"
    live.headers = {"Authorization": f"Bearer {token}"}
    return live


def db_of(live):
    return live.sandbox_app.extensions["gbc_sandbox"].db


@pytest.fixture
def endpoint(sandbox):
    """Make webhook endpoints for this test; all are disabled afterwards."""
    made: list[int] = []

    def make(url: str, secret: str = "s3cret-for-tests", event_types=()) -> int:
        with db_of(sandbox).session() as s:
            row = WebhookEndpointRow(client_id=CLIENT, url=url, event_types=list(event_types),
                                     secret_encrypted=webhooks.endpoint_vault(sandbox.settings).encrypt(secret))
            s.add(row)
            s.flush()
            made.append(row.id)
            return row.id

    yield make
    with db_of(sandbox).session() as s:
        s.query(WebhookEndpointRow).filter(WebhookEndpointRow.id.in_(made)).update({"disabled": True})
        s.query(EventRow).filter(EventRow.endpoint_id.in_(made)).update({"next_attempt": None})


def test_submit(sandbox, scenario="residential") -> dict:
    form = requests.get(sandbox.api + "/forms", headers=sandbox.headers, timeout=10).json()["forms"][0]["uid"]
    response = requests.post(f"{sandbox.api}/forms/{form}/test-submit", headers=sandbox.headers, timeout=10,
                             json={"utility": "PCE", "scenario": scenario})
    assert response.status_code == 200, response.text
    return response.json()


test_submit.__test__ = False   # a helper, not a test


def event_rows(sandbox, authorization_uid: str, **filters) -> list[EventRow]:
    with db_of(sandbox).session() as s:
        return s.query(EventRow).filter_by(authorization_uid=authorization_uid, **filters).all()


def test_events_are_signed_and_delivered_in_order(sandbox, endpoint):
    receiver = Receiver()
    secret = "whsec-" + new_token(8)
    endpoint_id = endpoint(receiver.url, secret)
    try:
        authorization = test_submit(sandbox)
        got = receiver.wait(4)
        time.sleep(0.2)   # the first GET /forms also made the default form (form_created)
        got = [r for r in receiver.requests if b"authorization_uid" in r["body"]]
        salts = set()
        for request in got:
            headers, raw = request["headers"], request["body"]
            assert headers["Content-Type"] == "application/json"
            salt = headers["X-UtilityAPI-Webhook-Salt"]
            salts.add(salt)
            assert webhooks.sign(secret, salt, raw) == headers["X-UtilityAPI-Webhook-Signature"]
            assert webhooks.verify(secret, salt, headers["X-UtilityAPI-Webhook-Signature"], raw)
            assert raw == json.dumps(json.loads(raw), indent=4).encode()
            assert json.loads(raw)["next"] is None
        assert len(salts) == len(got)   # a fresh salt per request
        events = [e for e in receiver.events() if e["type"] != "form_created"]
        assert [e["type"] for e in events] == ["authorization_created", "authorization_update_started",
                                               "meter_created", "authorization_update_finished_successful"]
        assert all(e["authorization_uid"] == authorization["uid"] and e["delivery_method"] == "webhook"
                   and e["delivery_target"] == receiver.url for e in events)
        assert events[2]["meter_uid"]
        time.sleep(0.1)
        listed = requests.get(f"{sandbox.api}/events?authorizations={authorization['uid']}",
                              headers=sandbox.headers, timeout=10).json()["events"]
        listed = [e for e in listed if e["delivery_target"] == receiver.url]
        assert len(listed) == 4 and all(e["is_delivered"] for e in listed)
        rows = event_rows(sandbox, authorization["uid"], endpoint_id=endpoint_id)
        assert all(r.last_result == "200 OK" and r.attempts == 1 and r.next_attempt is None for r in rows)
    finally:
        receiver.close()


def test_failed_delivery_is_retried_with_back_off(sandbox, endpoint):
    receiver = Receiver(statuses=[500])
    endpoint_id = endpoint(receiver.url, event_types=["authorization_created"])
    try:
        authorization = test_submit(sandbox)
        first = receiver.wait(1)[0]
        time.sleep(0.1)
        (row,) = event_rows(sandbox, authorization["uid"], type="authorization_created", endpoint_id=endpoint_id)
        assert row.last_result == "500 Internal Server Error" and row.attempts == 1 and not row.is_delivered
        assert row.next_attempt > row.ts
        second = receiver.wait(2)[1]
        assert second["at"] - first["at"] >= 0.9    # sandbox_webhook_retry_base = 1 s in tests
        assert second["headers"]["X-UtilityAPI-Webhook-Salt"] != first["headers"]["X-UtilityAPI-Webhook-Salt"]
        time.sleep(0.1)
        (row,) = event_rows(sandbox, authorization["uid"], type="authorization_created", endpoint_id=endpoint_id)
        assert row.is_delivered and row.attempts == 2 and row.last_result == "200 OK"
    finally:
        receiver.close()


def test_connection_refused_is_recorded(sandbox, endpoint):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint_id = endpoint(f"http://127.0.0.1:{port}/nobody-listens", event_types=["authorization_created"])
    authorization = test_submit(sandbox)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        (row,) = event_rows(sandbox, authorization["uid"], type="authorization_created", endpoint_id=endpoint_id)
        if row.attempts:
            break
        time.sleep(0.05)
    assert row.last_result == "connection refused" and not row.is_delivered and row.next_attempt is not None


def test_timeout_is_recorded_and_ping_is_sent_at_once(sandbox, endpoint):
    slow = Receiver(delay=0.6)
    fast = Receiver()
    try:
        slow_id = endpoint(slow.url, event_types=["ping"])
        quick = webhooks.Dispatcher(db_of(sandbox), {**sandbox.settings, "sandbox_webhook_timeout": 0.3})
        result = webhooks.send_ping(db_of(sandbox), sandbox.settings, CLIENT, slow_id, dispatcher=quick)
        assert result["type"] == "ping" and result["last_result"] == "timeout after 0.3 s"
        fast_id = endpoint(fast.url, event_types=["ping"])
        result = webhooks.send_ping(db_of(sandbox), sandbox.settings, CLIENT, fast_id)
        assert result["last_result"] == "200 OK" and result["is_delivered"] is True
        assert json.loads(fast.wait(1)[0]["body"])["events"][0]["type"] == "ping"
        with pytest.raises(LookupError):
            webhooks.send_ping(db_of(sandbox), sandbox.settings, "SOMEONE_ELSE", fast_id)
    finally:
        slow.close()
        fast.close()


def test_two_dispatchers_never_send_an_event_twice(sandbox, endpoint):
    running = sandbox.sandbox_app.extensions["gbc_webhooks"]
    running.stop()
    receiver = Receiver()
    try:
        endpoint(receiver.url, event_types=["ping"])
        with db_of(sandbox).session() as s:
            for _ in range(12):
                lifecycle.emit(s, CLIENT, "ping")
        a, b = (webhooks.Dispatcher(db_of(sandbox), sandbox.settings) for _ in range(2))
        threads = [threading.Thread(target=d.run_once) for d in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        uids = [e["uid"] for e in receiver.events()]
        assert len(uids) == 12 and len(set(uids)) == 12
    finally:
        receiver.close()
        running.start()
    assert running.running


def test_dispatcher_stops_cleanly(sandbox):
    dispatcher = webhooks.Dispatcher(db_of(sandbox), sandbox.settings).start()
    assert dispatcher.running
    dispatcher.stop(timeout=5)
    assert not dispatcher.running
    dispatcher.stop()   # twice is fine


def test_the_dispatcher_loop_expires_authorizations(sandbox):
    authorization = test_submit(sandbox)
    with db_of(sandbox).session() as s:
        s.get(AuthorizationRow, authorization["uid"]).authorized_end = int(datetime.now().timestamp()) - 1
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not event_rows(sandbox, authorization["uid"], type="authorization_expired"):
        time.sleep(0.1)
    assert event_rows(sandbox, authorization["uid"], type="authorization_expired")
    got = requests.get(f"{sandbox.api}/authorizations/{authorization['uid']}", headers=sandbox.headers, timeout=10)
    assert got.json()["is_expired"] is True

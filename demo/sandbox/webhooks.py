"""Webhooks as UtilityAPI sends them (reference §5.9), free of Flask.

Each event row with a delivery target is POSTed as ``{"events": [Event], "next": null}``
pretty-printed with 4-space indentation, with a random salt per request and the
signature ``hex(sha256("<secret>.<salt>.<body>"))`` (EDDIE's ``WebhookVerifier``; the
test vector of §5.9 holds). A 200 marks it delivered; anything else is retried
with exponential back-off (``sandbox_webhook_retry_base`` doubling up to
``sandbox_webhook_retry_max``) until ``sandbox_webhook_retry_window`` seconds
after the event, as the platform retries hourly for 72 hours.

The :class:`Dispatcher` is one daemon thread per process. It claims a due row
with a conditional UPDATE (moving ``next_attempt`` forward) before sending, so
several workers or threads never send the same attempt twice, and it holds no
database transaction while waiting on the network. It also expires
authorizations past their end (:func:`.lifecycle.expire_due`) on each pass.
Secrets and URLs are never logged: endpoints are named by id.
"""
from __future__ import annotations

import atexit
import hashlib
import hmac
import json
import logging
import secrets
import threading
import weakref
from datetime import datetime, timedelta

import requests

from ..storage import Database, Vault, utcnow
from . import lifecycle
from .jsonapi import event_object, event_sort_key
from .models import EventRow, WebhookEndpointRow

log = logging.getLogger(__name__)

SALT_HEADER = "X-UtilityAPI-Webhook-Salt"
SIGNATURE_HEADER = "X-UtilityAPI-Webhook-Signature"
LEASE = 30          # seconds a claimed attempt is reserved beyond the request timeout
BATCH = 100         # due events looked at per pass


def sign(secret: str, salt: str, body: bytes) -> str:
    """``hex(sha256("<secret>.<salt>." + body))``, over the exact bytes sent."""
    return hashlib.sha256(f"{secret}.{salt}.".encode() + body).hexdigest()


def verify(secret: str, salt: str, signature: str, body: bytes) -> bool:
    """What a receiver does: check the raw body first, then the body re-serialized with
    4-space indentation (EDDIE re-serializes before hashing, so both must be accepted)."""
    if not (secret and salt and signature):
        return False
    candidates = [body]
    try:
        candidates.append(json.dumps(json.loads(body), indent=4).encode())
    except (ValueError, UnicodeDecodeError):
        pass
    return any(hmac.compare_digest(sign(secret, salt, c), signature.strip().lower()) for c in candidates)


def body(events: list[dict]) -> bytes:
    """The request body, pretty-printed as in UtilityAPI's documentation example."""
    return json.dumps({"events": events, "next": None}, indent=4).encode()


def new_secret() -> str:
    """A webhook secret for a new endpoint (shown to the third party, stored encrypted)."""
    return secrets.token_hex(24)


def endpoint_vault(settings: dict) -> Vault:
    """The vault that encrypts ``WebhookEndpointRow.secret_encrypted`` (the master secret key,
    and its fallbacks while ``gbc-demo rotate-keys`` re-encrypts)."""
    return Vault.from_settings(settings)


def backoff(settings: dict, attempts: int) -> int:
    """Seconds until the next try after ``attempts`` failed ones: base, 2 x base, ... up to max."""
    base = max(1, int(settings.get("sandbox_webhook_retry_base", 60)))
    return min(base * 2 ** max(0, attempts - 1), max(base, int(settings.get("sandbox_webhook_retry_max", 3600))))


def _describe_failure(exc: requests.RequestException, timeout: float) -> str:
    if isinstance(exc, requests.Timeout):
        return f"timeout after {timeout:g} s"
    if isinstance(exc, requests.ConnectionError):
        return "connection refused" if "refused" in str(exc).lower() else "connection failed"
    if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema
                  | requests.exceptions.InvalidSchema):
        return "invalid URL"
    return f"error: {type(exc).__name__}"


class Dispatcher:
    """Delivers due webhook events from a daemon thread (``start``/``stop``), or one event
    at once (``deliver_now``, for the dashboard's "send ping")."""

    def __init__(self, db: Database, settings: dict, *, vault: Vault | None = None) -> None:
        self.db = db
        self.settings = settings
        self.vault = vault or endpoint_vault(settings)
        self.timeout = float(settings.get("sandbox_webhook_timeout", 5.0))
        self.poll = max(0.05, float(settings.get("sandbox_webhook_poll", 1.0)))
        self.window = int(settings.get("sandbox_webhook_retry_window", 259200))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ the thread

    def start(self) -> Dispatcher:
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="gbc-webhooks", daemon=True)
            self._thread.start()
            ref = weakref.ref(self)
            atexit.register(lambda: (d := ref()) and d.stop(timeout=2))
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the attempt in flight (if any); safe to call twice."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def stopped(self) -> bool:
        """``stop()`` was called (a stopped dispatcher is not restarted after a fork)."""
        return self._stop.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # never let the thread die; the next pass tries again
                log.exception("webhook dispatcher pass failed")
            self._stop.wait(self.poll)

    def run_once(self, now: datetime | None = None) -> int:
        """One pass: expire due authorizations, then attempt every due event. Returns attempts made."""
        now = now or utcnow()
        with self.db.session() as s:
            lifecycle.expire_due(s, now)
        with self.db.session() as s:
            due = (s.query(EventRow.uid, EventRow.ts, EventRow.type, EventRow.next_attempt)
                   .filter(EventRow.endpoint_id.is_not(None), EventRow.is_delivered.is_(False),
                           EventRow.ts <= now, EventRow.next_attempt.is_not(None), EventRow.next_attempt <= now)
                   .order_by(EventRow.ts).limit(BATCH).all())
        attempts = 0
        for row in sorted(due, key=event_sort_key):
            if self._stop.is_set():
                break
            if self._claim(row.uid, row.next_attempt, now):
                self._attempt(row.uid)
                attempts += 1
        return attempts

    # ------------------------------------------------------------ one attempt

    def _claim(self, uid: str, expected: datetime | None, now: datetime) -> bool:
        """Reserve the attempt: only the one whose UPDATE matched the old next_attempt sends."""
        # from the clock now, not the pass's start: after slow attempts a lease computed from
        # the start would already be over and another worker could send the same event
        lease = utcnow() + timedelta(seconds=self.timeout + LEASE)
        with self.db.session() as s:
            query = s.query(EventRow).filter(EventRow.uid == uid, EventRow.is_delivered.is_(False))
            query = (query.filter(EventRow.next_attempt.is_(None)) if expected is None
                     else query.filter(EventRow.next_attempt == expected))
            return query.update({"next_attempt": lease}, synchronize_session=False) == 1

    def deliver_now(self, uid: str) -> str | None:
        """Attempt one undelivered event now, whatever its schedule; returns its ``last_result``
        (None when it is delivered already, has no endpoint, or another worker holds it)."""
        with self.db.session() as s:
            row = s.get(EventRow, uid)
            if row is None or row.is_delivered or row.endpoint_id is None:
                return None
            expected = row.next_attempt
        if not self._claim(uid, expected, utcnow()):
            return None
        return self._attempt(uid)

    def _attempt(self, uid: str) -> str:
        with self.db.session() as s:
            row = s.get(EventRow, uid)
            endpoint = s.get(WebhookEndpointRow, row.endpoint_id) if row and row.endpoint_id else None
            if row is None:
                return "gone"
            if endpoint is None or endpoint.disabled:
                row.next_attempt = None
                row.last_result = "not sent: the endpoint was removed or disabled"
                return row.last_result
            payload = body([event_object(row)])
            url, secret, endpoint_id, type_ = endpoint.url, self.vault.decrypt(endpoint.secret_encrypted), \
                endpoint.id, row.type
        if secret is None:
            result, ok = "not sent: the endpoint's secret cannot be decrypted (secret key changed?)", False
        else:
            salt = secrets.token_hex(16)
            headers = {"Content-Type": "application/json", SALT_HEADER: salt,
                       SIGNATURE_HEADER: sign(secret, salt, payload), "User-Agent": "gbc-demo-sandbox-webhooks"}
            try:
                with requests.post(url, data=payload, headers=headers, timeout=self.timeout,
                                   allow_redirects=False, stream=True) as response:
                    ok = response.status_code == 200
                    result = f"{response.status_code} {response.reason or ''}".strip()
            except requests.RequestException as exc:
                ok, result = False, _describe_failure(exc, self.timeout)
            except Exception as exc:  # a malformed URL can raise outside RequestException
                ok, result = False, f"error: {type(exc).__name__}"
        return self._record(uid, ok, result, endpoint_id, type_)

    def _record(self, uid: str, ok: bool, result: str, endpoint_id: int, type_: str) -> str:
        now = utcnow()
        with self.db.session() as s:
            row = s.get(EventRow, uid)
            if row is None:
                return result
            row.attempts = (row.attempts or 0) + 1
            if ok:
                row.is_delivered = True
                row.next_attempt = None
            elif (now - row.ts).total_seconds() >= self.window:
                row.next_attempt = None
                result = f"{result}; gave up after {row.attempts} attempts"
            else:
                row.next_attempt = now + timedelta(seconds=backoff(self.settings, row.attempts))
            row.last_result = result
        log.info("webhook event %s (%s) to endpoint %s, attempt %s: %s", uid, type_, endpoint_id,
                 row.attempts, result)
        return result


def send_ping(db: Database, settings: dict, client_id: str, endpoint_id: int,
              dispatcher: Dispatcher | None = None) -> dict:
    """The dashboard's "send ping": a ``ping`` event for one endpoint, delivered at once
    (retried like any other if it fails). Returns the Event object and ``last_result``."""
    with db.session() as s:
        endpoint = s.get(WebhookEndpointRow, endpoint_id)
        if endpoint is None or endpoint.client_id != client_id:
            raise LookupError("no such webhook endpoint")
        row = EventRow(uid=lifecycle.numeric_uid(s, EventRow, 9), client_id=client_id, type="ping", ts=utcnow(),
                       endpoint_id=endpoint.id, delivery_target=endpoint.url, next_attempt=None)
        s.add(row)
        uid = row.uid
    result = (dispatcher or Dispatcher(db, settings)).deliver_now(uid)
    with db.session() as s:
        row = s.get(EventRow, uid)
        return {**event_object(row), "last_result": result or row.last_result}

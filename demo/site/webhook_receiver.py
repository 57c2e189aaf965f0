"""The site's webhook receiver, free of Flask: verify UtilityAPI's signature and keep the events.

Reference §5.9: the platform POSTs ``{"events": [...], "next": null}`` with the headers
``X-UtilityAPI-Webhook-Salt`` and ``X-UtilityAPI-Webhook-Signature`` =
``hex(sha256("<secret>.<salt>.<body>"))``. A receiver checks the raw body first, then the
body re-serialized with 4-space indentation (what EDDIE hashes), comparing in constant time.

This is the third party's side, written on its own rather than borrowed from
:mod:`demo.sandbox.webhooks`: the site must work against the real platform with the sandbox
switched off, and the two sides agreeing on the test vector is the point of the tests.

Each delivery is judged once: verified events are stored (a re-delivered event uid is not
stored twice), a rejected delivery is stored as rejected with its reason so the integrator can
see why (a wrong secret looks like nothing arriving otherwise), and the answer is immediate.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from ..storage import Vault, utcnow
from .integrator import WebhookEvent, visitor_for_receiver

SALT_HEADER = "X-UtilityAPI-Webhook-Salt"
SIGNATURE_HEADER = "X-UtilityAPI-Webhook-Signature"
MAX_BODY = 64 * 1024          # a delivery carries one event on UtilityAPI; leave room for batches
MAX_EVENTS = 100              # events read from one delivery
KEEP_PER_VISITOR = 500        # newest rows kept per visitor
MAX_EVENT_JSON = 4096         # bytes of one Event object kept for display
_RECEIVER_ID = re.compile(r"[A-Za-z0-9_-]{16,64}")


def sign(secret: str, salt: str, body: bytes) -> str:
    """``hex(sha256("<secret>.<salt>." + body))``."""
    return hashlib.sha256(f"{secret}.{salt}.".encode() + body).hexdigest()


def verify(secret: str, salt: str, signature: str, body: bytes) -> bool:
    """True when ``signature`` matches the raw body or its 4-space re-serialization."""
    if not (secret and salt and signature):
        return False
    given = signature.strip().lower()
    if not _HEX64.fullmatch(given):      # also keeps non-ASCII text away from compare_digest
        return False
    if hmac.compare_digest(sign(secret, salt, body), given):
        return True
    try:
        again = json.dumps(json.loads(body), indent=4).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):
        return False
    return hmac.compare_digest(sign(secret, salt, again), given)


_HEX64 = re.compile(r"[0-9a-f]{64}")


def valid_receiver_id(receiver_id: str) -> bool:
    return bool(_RECEIVER_ID.fullmatch(receiver_id or ""))


@dataclass(frozen=True)
class Outcome:
    """What the route answers: ``status`` (200, 400, 401, 404, 413) and why."""

    status: int
    error: str | None = None
    description: str = ""
    stored: int = 0

    def body(self) -> dict:
        if self.status == 200:
            return {"success": True, "stored": self.stored}
        return {"error": self.error, "error_description": self.description}


def too_large() -> Outcome:
    return Outcome(413, "too_large", f"A webhook body may be at most {MAX_BODY:,} bytes.")


def receive(s: Session, receiver_id: str, headers: Mapping[str, str], body: bytes, vault: Vault, *,
            default_secret: str = "", now: datetime | None = None) -> Outcome:
    """Judge one delivery to ``/webhooks/<receiver_id>`` and store it.

    ``default_secret`` is the configured ``webhook_secret`` (used when the visitor set none).
    Unknown receiver ids are answered 404 and not stored: only a visitor's own URL fills
    their list.
    """
    if not valid_receiver_id(receiver_id):
        return Outcome(404, "not_found", "There is no webhook receiver at this URL.")
    owner = visitor_for_receiver(s, receiver_id)
    if owner is None:
        return Outcome(404, "not_found", "There is no webhook receiver at this URL.")
    if len(body) > MAX_BODY:
        return too_large()
    now = now or utcnow()
    secret = vault.decrypt(owner.webhook_secret_enc) or default_secret
    salt, signature = _header(headers, SALT_HEADER), _header(headers, SIGNATURE_HEADER)
    if not secret:
        outcome = Outcome(401, "no_secret", "No webhook secret is set on the demo site's Settings page, "
                                            "so no delivery can be verified.")
    elif not salt or not signature:
        outcome = Outcome(400, "unsigned", f"The request lacks {SALT_HEADER} or {SIGNATURE_HEADER}.")
    elif not verify(secret, salt, signature, body):
        outcome = Outcome(401, "bad_signature", "The signature does not match this body with the webhook "
                                                "secret set on the Settings page.")
    else:
        outcome = Outcome(200)
    events, problem = _events(body)
    if outcome.status == 200 and problem:
        outcome = Outcome(400, "invalid_body", problem)
    verified = outcome.status == 200
    reason = "" if verified else f"{outcome.error}: {outcome.description}"
    stored = 0
    if verified:
        known = {uid for (uid,) in s.query(WebhookEvent.event_uid).filter(
            WebhookEvent.visitor_id == owner.visitor_id, WebhookEvent.verified.is_(True),
            WebhookEvent.event_uid.in_([_text(e.get("uid"), 64) for e in events if e.get("uid") is not None]))}
        for event in events:
            uid = _text(event.get("uid"), 64)
            if uid is not None and uid in known:
                continue        # a re-delivery: the platform retries until it gets a 200
            known.add(uid)
            s.add(_row(owner.visitor_id, event, True, "", now))
            stored += 1
    else:
        # one row per rejected delivery, however many events it claims: rejected posts are
        # kept (to show what went wrong) but must not crowd out verified events
        s.add(_row(owner.visitor_id, events[0] if events else {}, False, reason, now))
    s.flush()
    _prune(s, owner.visitor_id, verified)
    return Outcome(200, stored=stored) if verified else outcome


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:   # plain dicts in tests; werkzeug's Headers are case-insensitive already
        value = next((v for k, v in headers.items() if k.lower() == name.lower()), None)
    return (value or "").strip()


def _events(body: bytes) -> tuple[list[dict], str | None]:
    """The Event objects of a body, or a problem description (and no events)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return [], "The body is not JSON."
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        return [], 'The body is not {"events": [...]}.'
    events = [e for e in data["events"][:MAX_EVENTS] if isinstance(e, dict)]
    return events, None


def _text(value: Any, limit: int) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    return str(value)[:limit]


def _row(visitor_id: str, event: dict, verified: bool, reason: str, now: datetime) -> WebhookEvent:
    kept = event if len(json.dumps(event, default=str)) <= MAX_EVENT_JSON else \
        {k: event.get(k) for k in ("uid", "type", "ts", "authorization_uid", "meter_uid")}
    return WebhookEvent(
        visitor_id=visitor_id, received=now, verified=verified, reason=reason[:300],
        event_uid=_text(event.get("uid"), 64), type=_text(event.get("type"), 64), ts=_text(event.get("ts"), 64),
        authorization_uid=_text(event.get("authorization_uid"), 64), meter_uid=_text(event.get("meter_uid"), 64),
        event=json.loads(json.dumps(kept, default=str)) if event else None)


def _prune(s: Session, visitor_id: str, verified: bool) -> None:
    """Keep the newest :data:`KEEP_PER_VISITOR` verified rows and as many rejected ones, each
    kind on its own: a misconfigured or hostile sender can neither fill the disk nor evict
    the verified events."""
    rows = s.query(WebhookEvent.id).filter_by(visitor_id=visitor_id, verified=verified)
    cutoff = rows.order_by(WebhookEvent.id.desc()).offset(KEEP_PER_VISITOR).limit(1).scalar()
    if cutoff is not None:
        s.query(WebhookEvent).filter(WebhookEvent.visitor_id == visitor_id, WebhookEvent.verified.is_(verified),
                                     WebhookEvent.id <= cutoff).delete(synchronize_session=False)

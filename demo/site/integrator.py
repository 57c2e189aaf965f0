"""The integrator's view of a run, free of Flask.

* **Settings** a visitor adds for it: a JSON API token and a webhook secret (both stored
  encrypted, here rather than in ``visitor_settings`` so the OAuth settings stay as they are),
  and a random *receiver id* that names their webhook URL: unguessable, so a webhook tells whose
  it is without a cookie, and stable across "reset to defaults" so a URL pasted into the
  utility's dashboard keeps working.
* **The JSON API view** (UtilityAPI API v2, reference §5) of a run's authorization, read beside
  the ESPI one: the authorization, its meters, a few bills and one day of intervals, and a
  table that checks both APIs name the same meters (reference §5.10: meter uid = UsagePoint id).
* **Webhook events** the site received (written by :mod:`.webhook_receiver`).

The tables join :class:`.models.Base`; the site's migrations (``demo/migrations/site``) create them,
and a change to them needs a new revision (``python -m demo.migrations revision site -m "…"``).
"""
from __future__ import annotations

import secrets as pysecrets
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests
from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, UniqueConstraint, bindparam, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from ..storage import Vault, utcnow
from ..tokens import mask
from . import client as gbc
from .exchanges import Masker
from .explain import combine
from .models import Base, VisitorSettings

BILLS_SHOWN = 6              # "a few bills": the latest across the authorization's meters
MAX_JSON_BYTES = 4 * 1024 * 1024
RAW_READINGS = 4             # readings kept in the raw interval example


class IntegratorSettings(Base):
    """A visitor's JSON API token and webhook secret (encrypted) and their receiver id."""

    __tablename__ = "integrator_settings"
    visitor_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    receiver_id: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    api_token_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_secret_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class IntegratorData(Base):
    """What the integrator panels fetched for a run (``kind`` = ``json_api``); no secrets."""

    __tablename__ = "integrator_data"
    __table_args__ = (UniqueConstraint("run_id", "kind", name="uq_integrator_data_run_kind"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    data: Mapped[dict] = mapped_column(JSON)
    fetched: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class WebhookEvent(Base):
    """One event received on a visitor's webhook URL, or one rejected delivery.

    Rejected deliveries (unsigned, bad signature, no secret set, not JSON) are kept with
    ``verified=False`` and ``reason`` so the integrator can see *why*; they are never shown
    as events that happened.
    """

    __tablename__ = "webhook_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    visitor_id: Mapped[str] = mapped_column(String(32), index=True)
    received: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    verified: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(String(300), default="")
    event_uid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    type: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ts: Mapped[str | None] = mapped_column(String(64), nullable=True)           # as sent (ISO 8601)
    authorization_uid: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    meter_uid: Mapped[str | None] = mapped_column(String(64), nullable=True)
    event: Mapped[dict | None] = mapped_column(JSON, nullable=True)            # the Event object, capped


# --- settings ------------------------------------------------------------------------------

def new_receiver_id() -> str:
    """128 random bits, URL-safe: the only thing that names a visitor's webhook URL."""
    return pysecrets.token_urlsafe(16)


def receiver_url(site_url: str, receiver_id: str) -> str:
    return f"{site_url.rstrip('/')}/webhooks/{receiver_id}"


def ensure_settings(s: Session, visitor_id: str) -> IntegratorSettings:
    """The visitor's row, made (with a fresh receiver id) on first use."""
    row = s.get(IntegratorSettings, visitor_id)
    if row is None:
        row = IntegratorSettings(visitor_id=visitor_id, receiver_id=new_receiver_id())
        s.add(row)
        s.flush()
    return row


_UNREAD: Any = object()


def overlay(s: Session, visitor_id: str, eff: dict, vault: Vault, row: IntegratorSettings | None = _UNREAD) -> dict:
    """``eff`` (configuration + the visitor's OAuth settings) with the visitor's API token,
    webhook secret and receiver id on top (``row``: the visitor's row when the caller has read
    it already, see :func:`visitor_rows`). Reads only: nothing is created here."""
    if row is _UNREAD:
        row = s.get(IntegratorSettings, visitor_id)
    out = {**eff, "receiver_id": row.receiver_id if row else None}
    if row is not None:
        for key, enc in (("api_token", row.api_token_enc), ("webhook_secret", row.webhook_secret_enc)):
            value = vault.decrypt(enc)
            if value:
                out[key] = value
        out["customised"] = bool(eff.get("customised")) or bool(row.api_token_enc or row.webhook_secret_enc)
    return out


def visitor_rows(s: Session, visitor_id: str) -> tuple[VisitorSettings | None, IntegratorSettings | None]:
    """The visitor's settings row and integrator row (each None when absent) in one query
    instead of two lookups by key: what every page's settings are made of."""
    found = s.execute(_VISITOR_ROWS, {"visitor_id": visitor_id}).first()
    return (found[0], found[1]) if found is not None else (None, None)


_VISITOR_ID = select(bindparam("visitor_id", type_=String).label("vid")).subquery()
_VISITOR_ROWS = (select(VisitorSettings, IntegratorSettings).select_from(_VISITOR_ID)
                 .outerjoin(VisitorSettings, VisitorSettings.visitor_id == _VISITOR_ID.c.vid)
                 .outerjoin(IntegratorSettings, IntegratorSettings.visitor_id == _VISITOR_ID.c.vid))


def save_secrets(s: Session, visitor_id: str, vault: Vault, *, api_token: str | None,
                 webhook_secret: str | None) -> None:
    """Store the non-empty ones, encrypted (an empty field keeps the current value)."""
    if not (api_token or webhook_secret):
        return
    row = ensure_settings(s, visitor_id)
    if api_token:
        row.api_token_enc = vault.encrypt(api_token.strip())
    if webhook_secret:
        row.webhook_secret_enc = vault.encrypt(webhook_secret.strip())
    row.updated = utcnow()


def reset(s: Session, visitor_id: str) -> None:
    """Forget the secrets; the receiver id stays (a URL registered at the utility keeps working)."""
    row = s.get(IntegratorSettings, visitor_id)
    if row is not None:
        row.api_token_enc = None
        row.webhook_secret_enc = None


def visitor_for_receiver(s: Session, receiver_id: str) -> IntegratorSettings | None:
    return s.query(IntegratorSettings).filter_by(receiver_id=receiver_id).one_or_none()


# --- the JSON API view ----------------------------------------------------------------------

class JsonApiError(Exception):
    """A JSON API call that failed, explained for a person."""

    def __init__(self, code: str, message: str, *, path: str, status: int | None = None,
                 description: str | None = None, hint: str | None = None, retry_after: int | None = None,
                 excerpt: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.path, self.status, self.description = code, message, path, status, description
        self.hint, self.retry_after, self.excerpt = hint, retry_after, excerpt

    def as_dict(self) -> dict:
        return {"error": self.code, "message": self.message, "path": self.path, "status": self.status,
                "error_description": self.description, "hint": self.hint, "retry_after": self.retry_after,
                "excerpt": self.excerpt}


def fetch_json_view(http: requests.Session, api_url: str, api_token: str, authorization_uid: str,
                    espi_meters: list[dict], *, timeout: float, now: datetime | None = None) -> dict:
    """Read the authorization through the JSON API and summarise it next to the ESPI meters.

    Four calls, as an integrator would make them: ``GET /authorizations/{uid}?include=meters``,
    ``GET /meters?authorizations={uid}``, ``GET /bills?meters=…&limit=6`` and
    ``GET /intervals?meters={first}&limit=1`` (one Interval object = one meter, one local day).
    A failure keeps what was read before it, plus ``error``. The token is only ever sent.
    """
    base = api_url.rstrip("/")
    out: dict[str, Any] = {"api_url": base, "authorization_uid": authorization_uid,
                           "fetched": (now or utcnow()).isoformat(timespec="seconds") + "Z",
                           "calls": [], "error": None, "authorization": None, "meters": [],
                           "included_meter_uids": [], "bills": [], "interval_day": None, "raw": {}}

    def get(path: str, **params: Any) -> dict:
        shown = path + ("?" + "&".join(f"{k}={v}" for k, v in params.items()) if params else "")
        call: dict[str, Any] = {"method": "GET", "path": shown, "status": None}
        out["calls"].append(call)
        try:   # capped in size (MAX_JSON_BYTES) and total time like every call to the custodian
            data = gbc.get_json(base + path, api_token, step="json", timeout=timeout, params=params, http=http,
                                max_body=MAX_JSON_BYTES, who="The JSON API")
        except gbc.CustodianError as exc:
            call["status"] = exc.status
            raise _api_error(exc, shown) from None
        call["status"] = 200
        return data

    try:
        auth = get(f"/authorizations/{quote(authorization_uid, safe='')}", include="meters")
        out["authorization"] = authorization_summary(auth)
        out["included_meter_uids"] = [str(m.get("uid")) for m in _listing(auth.get("meters"), "meters")]
        out["raw"]["authorization"] = {k: v for k, v in auth.items() if k != "meters"}
        meters = _listing(get("/meters", authorizations=authorization_uid), "meters")
        out["meters"] = [meter_summary(m) for m in meters]
        if meters:
            out["raw"]["meter"] = meters[0]
        uids = [str(m.get("uid")) for m in meters if m.get("uid") is not None]
        if uids:
            bills = _listing(get("/bills", meters=",".join(uids), limit=BILLS_SHOWN), "bills")
            out["bills"] = [bill_summary(b) for b in bills[:BILLS_SHOWN]]
            if bills:
                out["raw"]["bill"] = bills[0]
            intervals = _listing(get("/intervals", meters=uids[0], limit=1), "intervals")
            if intervals:
                out["interval_day"] = interval_summary(intervals[0])
                first = dict(intervals[0])
                readings = first.get("readings") or []
                first["readings"] = readings[:RAW_READINGS]
                first["readings_omitted"] = max(0, len(readings) - RAW_READINGS)
                out["raw"]["interval"] = first
    except JsonApiError as exc:
        # stored and shown: an error page may echo the token back
        out["error"] = Masker([api_token]).json_value(exc.as_dict())
    out["comparison"] = compare_meters(espi_meters, out["meters"])
    out["same_meters"] = bool(out["meters"]) and all(row["match"] for row in out["comparison"])
    return out


def _api_error(exc: gbc.CustodianError, path: str) -> JsonApiError:
    """A failed JSON API call, explained (the same words as the run page's errors)."""
    found = combine(exc.kind, exc.status, detail=exc.description, retry_after=exc.retry_after)
    message = exc.message
    if exc.status == 401:
        message = "The JSON API did not accept the API token: check it on the Settings page."
    code = exc.kind if exc.kind != "http" or exc.status is None else f"http_{exc.status}"
    return JsonApiError(code, message, path=path, status=exc.status, description=exc.description,
                        hint=found.hint if found else None, retry_after=exc.retry_after, excerpt=exc.excerpt)


def _listing(value: Any, key: str) -> list[dict]:
    """``{"<key>": [...], "next": …}`` (or a bare list) as a list of objects."""
    items = value.get(key) if isinstance(value, dict) else value
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def _base(obj: dict) -> dict:
    base = obj.get("base")
    return base if isinstance(base, dict) else {}


def authorization_summary(a: dict) -> dict:
    return {key: a.get(key) for key in (
        "uid", "status", "status_message", "status_ts", "created", "expires", "customer_email", "utility",
        "is_test", "is_revoked", "is_expired", "is_declined", "is_archived", "scope")} | {
        "notes": [{"type": n.get("type"), "msg": n.get("msg")} for n in a.get("notes") or [] if isinstance(n, dict)]}


def meter_summary(m: dict) -> dict:
    base = _base(m)
    return {
        "uid": str(m.get("uid")), "authorization_uid": m.get("authorization_uid"), "status": m.get("status"),
        "status_message": m.get("status_message"), "bill_count": m.get("bill_count"),
        "interval_count": m.get("interval_count"), "interval_coverage": m.get("interval_coverage"),
        "service_identifier": base.get("service_identifier"), "service_tariff": base.get("service_tariff"),
        "service_class": base.get("service_class"), "service_address": base.get("service_address"),
        "meter_numbers": base.get("meter_numbers") or [], "billing_account": base.get("billing_account"),
    }


def bill_summary(b: dict) -> dict:
    base = _base(b)
    return {"uid": b.get("uid"), "meter_uid": b.get("meter_uid"), "start": _day(base.get("bill_start_date")),
            "end": _day(base.get("bill_end_date")), "statement": _day(base.get("bill_statement_date")),
            "kwh": base.get("bill_total_kwh"), "unit": base.get("bill_total_unit"),
            "cost": base.get("bill_total_cost"), "tariff": base.get("service_tariff")}


def interval_summary(i: dict) -> dict:
    readings = [r for r in i.get("readings") or [] if isinstance(r, dict)]
    values = [(r.get("start"), r.get("end"), r.get("kwh")) for r in readings]
    numbers = [kwh for _s, _e, kwh in values if isinstance(kwh, int | float)]
    peak = max(values, key=lambda v: v[2] if isinstance(v[2], int | float) else float("-inf"), default=None)
    return {"uid": i.get("uid"), "meter_uid": i.get("meter_uid"),
            "date": _day(values[0][0]) if values else None, "count": len(values),
            "total_kwh": round(sum(numbers), 3) if numbers else None,
            "peak": {"start": _time(peak[0]), "kwh": peak[2]} if peak and numbers else None,
            "readings": [{"start": _time(s), "end": _time(e), "kwh": kwh} for s, e, kwh in values]}


def _day(value: Any) -> str | None:
    return value[:10] if isinstance(value, str) else None


def _time(value: Any) -> str | None:
    """``2026-04-30T00:15:00.000000-07:00`` -> ``00:15 -07:00`` (local wall clock and offset)."""
    if not isinstance(value, str) or len(value) < 16:
        return value if isinstance(value, str) else None
    offset = value[-6:] if value[-6] in "+-" else ""
    return f"{value[11:16]} {offset}".strip()


def compare_meters(espi_meters: list[dict], json_meters: list[dict]) -> list[dict]:
    """One row per meter either API names: the ESPI UsagePoint id beside the JSON meter uid.

    Reference §5.10: they are the same identifier, so every row should match. ``tariff_agrees``
    compares the UsagePoint's tariffProfile with the meter's ``base.service_tariff`` when both
    are known (None otherwise).
    """
    espi = {str(m.get("usage_point_id")): m for m in espi_meters or [] if m.get("usage_point_id") is not None}
    json_ = {str(m.get("uid")): m for m in json_meters or [] if m.get("uid") is not None}
    order = list(espi) + [uid for uid in json_ if uid not in espi]
    rows = []
    for uid in order:
        e, j = espi.get(uid), json_.get(uid)
        tariffs = ((e or {}).get("tariff"), (j or {}).get("service_tariff"))
        rows.append({
            "id": uid, "in_espi": e is not None, "in_json": j is not None, "match": e is not None and j is not None,
            "espi_title": (e or {}).get("title"), "espi_tariff": tariffs[0],
            "json_address": (j or {}).get("service_address"), "json_tariff": tariffs[1],
            "tariff_agrees": (tariffs[0] == tariffs[1]) if all(tariffs) else None,
        })
    return rows


def save_data(s: Session, run_id: str, kind: str, data: dict) -> None:
    row = s.query(IntegratorData).filter_by(run_id=run_id, kind=kind).one_or_none()
    if row is None:
        s.add(IntegratorData(run_id=run_id, kind=kind, data=data, fetched=utcnow()))
    else:
        row.data, row.fetched = data, utcnow()


def load_data(s: Session, run_id: str, kind: str) -> dict | None:
    row = s.execute(_DATA, {"run_id": run_id, "kind": kind}).one_or_none()
    return row.data if row else None


# --- events received -----------------------------------------------------------------------

# hot reads, built once (the run page and events.json ask them on every view)
_DATA = select(IntegratorData.data).where(IntegratorData.run_id == bindparam("run_id"),
                                          IntegratorData.kind == bindparam("kind"))
_EVENTS = (select(WebhookEvent).where(WebhookEvent.visitor_id == bindparam("visitor_id"),
                                      WebhookEvent.authorization_uid == bindparam("authorization_uid"))
           .order_by(WebhookEvent.received, WebhookEvent.id).limit(bindparam("limit")))


def event_dict(row: WebhookEvent) -> dict:
    """An event for the run page and ``events.json`` (no secrets are ever stored here);
    ``*_shown`` are the times for people, in UTC."""
    return {"uid": row.event_uid, "type": row.type, "ts": row.ts, "ts_shown": shown_time(row.ts),
            "authorization_uid": row.authorization_uid, "meter_uid": row.meter_uid,
            "verified": bool(row.verified), "reason": row.reason or "",
            "received": row.received.isoformat(timespec="seconds") + "Z",
            "received_shown": row.received.strftime("%Y-%m-%d %H:%M:%S UTC")}


def shown_time(value: str | None) -> str | None:
    """An ISO 8601 timestamp as ``YYYY-MM-DD HH:MM:SS UTC``; anything else as it came."""
    if not value:
        return value
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return value
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d %H:%M:%S UTC")


def events_for_authorization(s: Session, visitor_id: str, authorization_uid: str | None,
                             limit: int = 200) -> list[dict]:
    """This visitor's received events about one authorization, oldest first (rejected ones too,
    flagged ``verified: false``)."""
    if not authorization_uid:
        return []
    rows = s.scalars(_EVENTS, {"visitor_id": visitor_id, "authorization_uid": authorization_uid,
                               "limit": int(limit)}).all()    # a number: the statement has a LIMIT
    return [event_dict(r) for r in rows]


def recent_deliveries(s: Session, visitor_id: str, limit: int = 15) -> list[dict]:
    """The newest rows received on the visitor's URL, any authorization (the settings page)."""
    rows = (s.query(WebhookEvent).filter_by(visitor_id=visitor_id)
            .order_by(WebhookEvent.received.desc(), WebhookEvent.id.desc()).limit(limit).all())
    return [event_dict(r) for r in rows]


def settings_context(s: Session, visitor_id: str, eff: dict, site_url: str) -> dict:
    """What the settings page shows about the integrator settings (secrets masked); makes the
    visitor's receiver id on first view, since the page shows the URL to register."""
    row = ensure_settings(s, visitor_id)
    return {"api_token_masked": mask(eff.get("api_token")), "webhook_secret_masked": mask(eff.get("webhook_secret")),
            "receiver_url": receiver_url(site_url, row.receiver_id),
            "deliveries": recent_deliveries(s, visitor_id)}

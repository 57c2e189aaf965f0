"""UtilityAPI's JSON API v2 as the sandbox serves it (reference §5), free of Flask.

Builders for the Authorization, Meter, Bill, Interval, Event and Form objects,
the error envelope, query-parameter parsing, list filtering and paging. The
Flask blueprint (:mod:`.api_v2`) only authenticates and calls in here.

Numbers come from :mod:`.meterdata`, the same functions the ESPI feeds use, so
a third party sees identical kWh and dollars in both APIs: an authorization's
data window is ``meterdata.data_window(history_start, now)``; an interval's
``kwh`` is ``value / 1e6``; a bill's ``bill_total_kwh`` is
``consumption / 1e6`` and ``bill_total_cost`` is ``cost / 1e5``.

Timestamps follow reference §5.1: system timestamps (created, ts, ...) in UTC
with microseconds (``2026-05-01T17:02:11.123456+00:00``); bill and interval
dates in the utility's local time (``2026-04-30T00:00:00.000000-07:00``).

**Interval objects.** UtilityAPI's ``limit`` on ``GET /intervals`` counts
Interval objects, not readings (§5.6). Here each Interval object holds **one
meter's readings of one Pacific local day** (96 readings; 92 or 100 on DST
days), uid ``<meter_uid>-<YYYYMMDD>``, so paging is stateless and a full
two-year walk is ~730 objects per meter. ``start``/``end`` clip the first and
last day. Bill uids are ``<meter_uid>-<meterdata bill uid>`` (the meterdata uid
is the ESPI UsageSummary's; the prefix keeps JSON uids unique when two
authorizations share a directory meter).

**When data is visible.** Bills and intervals exist once the authorization's
data is collected (``ready_at`` passed, as the ESPI side answers 202 before),
never for declined or revoked authorizations ("revoke deletes all meters and
data"), never for test behaviours whose collection fails, and intervals never
for ``nointervals``. An expired authorization keeps the data collected up to
its end.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.orm import Session

from ..lookup import Customer, CustomerDirectory
from ..lookup import Meter as DirectoryMeter
from ..scope import parse_relative
from . import lifecycle, meterdata
from .models import AuthorizationRow, ClientRow, EventRow, FormRow, MeterRow
from .resources import RESOURCE_PATH, authorization_window, service_meter

API_PATH = "/api/v2"
DOCS = "https://utilityapi.com/docs"
MAX_LIMIT = 1000            # "over 1000 results, next links to the next page" (reference §5.1)
INTERVAL_LIMIT = 100        # Interval objects (days) per page by default ...
MAX_INTERVAL_LIMIT = 366    # ... and at most: a year of one meter's days per response
DEFAULT_FORM_SCOPE = {"expires": "3y", "ongoing_end": None}
SOURCE = "greenbutton_cmd"  # the documented interval source type for Green Button utilities

FAILURES, FAILS_AT_LOGIN, EVENT_ORDER = lifecycle.FAILURES, lifecycle.FAILS_AT_LOGIN, lifecycle.EVENT_ORDER


class ApiError(Exception):
    """A 4xx answer in UtilityAPI's envelope ``{"error", "error_description", "url"}`` (§5.1)."""

    def __init__(self, status: int, error: str, description: str, url: str | None = None, **extra: Any) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description
        self.url = url
        self.extra = extra

    def body(self) -> dict:
        return error_body(self.error, self.description, self.url, **self.extra)


def error_body(error: str, description: str, url: str | None = None, **extra: Any) -> dict:
    return {"error": error, "error_description": description, "url": url, **extra}


def not_found(what: str = "Resource") -> ApiError:
    return ApiError(404, "not_found", f"{what} not found.")


# ---------------------------------------------------------------- time


def system_ts(value: datetime | None) -> str | None:
    """A stored naive-UTC datetime as ``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC).isoformat(timespec="microseconds")


def epoch_ts(epoch: int | None) -> str | None:
    """An epoch second as a UTC system timestamp (authorization ends)."""
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="microseconds")


def local_ts(epoch: int) -> str:
    """An epoch second in the utility's local time, as bills and intervals are dated."""
    return datetime.fromtimestamp(epoch, meterdata.TZ).isoformat(timespec="microseconds")


def to_epoch(value: datetime) -> int:
    return int(value.replace(tzinfo=UTC).timestamp())


_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse_when(value: str | None, name: str) -> int | None:
    """``start``/``end``: ISO8601, or ``YYYY-MM-DD`` meaning that local midnight (§5.5).
    A time without an offset is local time too; a ``+`` decoded as a space is accepted."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        if _DATE.match(text):
            return meterdata.midnight(date.fromisoformat(text))
        text = re.sub(r" (\d{2}:?\d{2})$", r"+\1", text)
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "invalid_param", f"{name} must be an ISO8601 timestamp or a date (YYYY-MM-DD), "
                                             f"like 2026-01-31 or 2026-01-31T00:00:00-08:00.") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=meterdata.TZ)
    return int(when.timestamp())


# ---------------------------------------------------------------- query parameters


def parse_bool(params: Mapping[str, str], name: str) -> bool | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ApiError(400, "invalid_param", f"{name} must be true or false.")


def parse_list(params: Mapping[str, str], name: str) -> list[str] | None:
    """A comma-separated filter (``uids=1,2``); None when absent."""
    value = params.get(name)
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise ApiError(400, "invalid_param", f"{name} must be a comma-separated list of values.")
    if len(items) > 1000:
        raise ApiError(400, "invalid_param", f"{name} may list at most 1000 values.")
    return items


def parse_limit(params: Mapping[str, str], default: int = MAX_LIMIT, maximum: int = MAX_LIMIT) -> int:
    value = params.get("limit")
    if value is None or value == "":
        return default
    if not value.strip().isdigit() or not 1 <= int(value) <= maximum:
        raise ApiError(400, "invalid_param", f"limit must be a whole number from 1 to {maximum}.")
    return int(value)


def parse_order(params: Mapping[str, str]) -> bool:
    """True for ``latest_first`` (the default), False for ``earliest_first``."""
    value = params.get("order") or "latest_first"
    if value not in ("latest_first", "earliest_first"):
        raise ApiError(400, "invalid_param", "order must be latest_first or earliest_first.")
    return value == "latest_first"


def parse_include(params: Mapping[str, str]) -> set[str]:
    include = set(parse_list(params, "include") or ())
    unknown = include - {"meters"}
    if unknown:
        raise ApiError(400, "invalid_param", "include can only be meters.")
    return include


def paginate(items: Sequence, uid_of: Callable[[Any], str], after: str | None, limit: int) -> tuple[list, str | None]:
    """One page of ``items`` (already filtered and ordered) after the item whose uid is
    ``after``; returns the page and the uid to continue after (None on the last page)."""
    start = 0
    if after:
        for i, item in enumerate(items):
            if uid_of(item) == after:
                start = i + 1
                break
        else:
            raise ApiError(400, "invalid_param", f"after: {after!r} is not an object of this listing.")
    page = list(items[start:start + limit])
    more = start + limit < len(items)
    return page, (uid_of(page[-1]) if more and page else None)


# ---------------------------------------------------------------- the caller's view


@dataclass
class View:
    """Who asks and when: the client (third party) and what the builders need."""

    settings: dict
    directory: CustomerDirectory
    client: ClientRow
    now: datetime                 # naive UTC, as stored

    @property
    def epoch(self) -> int:
        return to_epoch(self.now)

    @property
    def utility(self) -> str:
        return self.settings["utility"]

    @property
    def api_base(self) -> str:
        return self.settings["sandbox_url"].rstrip("/") + API_PATH

    @property
    def espi_base(self) -> str:
        return self.settings["sandbox_url"].rstrip("/") + RESOURCE_PATH

    def next_url(self, path: str, params: Mapping[str, str], after: str | None) -> str | None:
        """The ``next`` link: the same query with ``after`` moved on (never the access_token)."""
        if after is None:
            return None
        query = {k: v for k, v in params.items() if k not in ("after", "access_token")}
        query["after"] = after
        return f"{self.api_base}{path}?{urlencode(query)}"


def is_ready(authorization: AuthorizationRow, now: datetime) -> bool:
    return lifecycle.seconds_until_ready(authorization, now) == 0


EXPORT_NAMES = (("bills_combined_csv", "Bills: all bills [csv]"), ("meters_csv", "Meters: all meters [csv]"))


def is_revoked(authorization: AuthorizationRow) -> bool:
    return authorization.status == 0 or authorization.revoked_at is not None


def is_declined(authorization: AuthorizationRow) -> bool:
    return authorization.status == 2 or authorization.declined_at is not None


def is_expired(authorization: AuthorizationRow, now: datetime) -> bool:
    if is_declined(authorization):
        return False
    end = authorization.authorized_end
    return bool(authorization.expired_notified) or (bool(end) and end <= to_epoch(now))


@dataclass
class MeterData:
    """One meter of one authorization, resolved against the directory and meterdata."""

    authorization: AuthorizationRow
    meter: MeterRow
    customer: Customer | None
    service: DirectoryMeter | None
    profile: meterdata.MeterProfile | None
    window: tuple[int, int] | None   # [start, end) of collected data; None: no data (yet)
    intervals: bool                  # False for nointervals (bills only)

    def bills(self) -> list[meterdata.Bill]:
        if self.window is None or self.profile is None:
            return []
        return meterdata.bills(self.profile, *self.window)

    def interval_count(self) -> int:
        if not self.intervals or self.window is None:
            return 0
        return (self.window[1] - self.window[0]) // meterdata.INTERVAL


def data_window(authorization: AuthorizationRow, now: datetime) -> tuple[int, int] | None:
    """The authorization's collected data, or None while none is visible (see the module doc)."""
    if is_declined(authorization) or is_revoked(authorization) or not is_ready(authorization, now):
        return None
    return authorization_window(authorization, to_epoch(now))   # the same window ESPI serves


def meter_data(view: View, authorization: AuthorizationRow, meter: MeterRow) -> MeterData:
    customer = view.directory.by_account(authorization.account_number)
    service = service_meter(customer, meter)
    prof = meterdata.profile(customer, service) if customer and service else None
    window = data_window(authorization, view.now) if prof else None
    return MeterData(authorization, meter, customer, service, prof, window,
                     intervals=authorization.behaviour != "nointervals")


# ---------------------------------------------------------------- Authorization


def _note(type_: str, msg: str, ts: datetime | None) -> dict:
    return {"type": type_, "msg": msg, "ts": system_ts(ts)}


def authorization_status(authorization: AuthorizationRow, now: datetime) -> tuple[str, str, datetime, list[dict]]:
    """(status, status_message, status_ts, notes): ``pending`` while collecting, then
    ``updated``, or ``errored`` for the failing test behaviours (reference §5.3)."""
    created, ready_at = authorization.created, authorization.ready_at or authorization.created
    if is_declined(authorization):
        return "updated", "The customer declined to share their data.", authorization.declined_at or created, []
    behaviour = authorization.behaviour
    ready = is_ready(authorization, now)
    notes: list[dict] = []
    if behaviour not in FAILS_AT_LOGIN:
        notes.append(_note("access_valid", "Successfully verified account.", created))
        notes.append(_note("meters_full", "Found all meters available.", created))
    if not ready:
        message = "Logging in to the utility..." if behaviour in FAILS_AT_LOGIN else "Collecting data..."
        return "pending", message, created, notes
    if behaviour in FAILURES:
        note_type, message = FAILURES[behaviour]
        notes.append(_note(note_type, message, ready_at))
        return "errored", message, ready_at, notes
    message = "Meters found!" if authorization.meter_uids else "No meters found."
    return "updated", message, ready_at, notes


def authorization_scope(authorization: AuthorizationRow) -> dict:
    """The JSON scope object (§2.7): when it expires and when ongoing collection ends."""
    end = epoch_ts(authorization.authorized_end)
    return {"expires": end, "ongoing_end": end}


def authorization_object(view: View, authorization: AuthorizationRow, *, form: FormRow | None = None,
                         meters: dict | None = None) -> dict:
    """The Authorization object, field for field as EDDIE's fixture (§5.3); ``meters`` is the
    nested MeterListing of ``include=meters``."""
    status, message, status_ts, notes = authorization_status(authorization, view.now)
    uid = authorization.uid
    meter_list = ",".join(authorization.meter_uids or [])
    exports = {"meters_csv": f"{view.api_base}/files/meters_csv?authorizations={uid}"}
    if meter_list:   # no meters, no bills: no link that would only answer 400
        exports = {"bills_combined_csv": f"{view.api_base}/files/meters_bills_csv?meters={meter_list}", **exports}
    created = system_ts(authorization.created)
    signature = ({"type": "confirmation", "ts": created} if authorization.source == "oauth"
                 and not is_declined(authorization) else None)
    expired = is_expired(authorization, view.now)
    obj = {
        "uid": uid,
        "created": created,
        "customer_signature": signature,
        "customer_email": authorization.customer_email,
        "declined": system_ts(authorization.declined_at),
        "is_declined": is_declined(authorization),
        "expires": epoch_ts(authorization.authorized_end),
        "is_expired": expired,
        "exports": exports,
        "exports_list": [{"name": name, "link": exports[key]} for key, name in EXPORT_NAMES if key in exports],
        "template_uid": form.template_uid if form else None,
        "form_uid": authorization.form_uid,
        "referrals": list(authorization.referrals or []),
        "is_archived": bool(authorization.is_archived),
        "is_test": bool(authorization.is_test),
        "scope": authorization_scope(authorization),
        "nickname": authorization.nickname,
        "notes": notes,
        "revoked": system_ts(authorization.revoked_at),
        "is_revoked": is_revoked(authorization),
        "status": status,
        "status_message": message,
        "status_ts": system_ts(status_ts),
        "user_uid": view.client.user_uid or None,
        "user_email": view.client.user_email or None,
        "user_status": "active",
        "utility": view.utility,
    }
    if meters is not None:
        obj["meters"] = meters
    return obj


# ---------------------------------------------------------------- Meter


def meter_base(data: MeterData) -> dict | None:
    """The ``base`` block from the customer directory (§5.4); None if the meter is unknown."""
    if data.service is None or data.customer is None:
        return None
    m, c = data.service, data.customer
    return {
        "service_identifier": m.service_identifier,
        "service_tariff": m.service_tariff,
        "service_class": m.service_class,
        "service_address": m.service_address,
        "meter_numbers": [m.meter_number],
        "billing_contact": c.name,
        "billing_address": c.billing_address,
        "billing_account": c.account_number,
    }


def meter_suppliers(data: MeterData) -> list[dict]:
    """PCE supplies generation while PG&E delivers (reference §3.4): the CCA as supplier."""
    m = data.service
    if m is None or not m.supplier:
        return []
    return [{"supplier_name": m.supplier, "supplier_service_id": None, "supplier_tariff": m.supplier_tariff,
             "third_party": None}]


def meter_status(data: MeterData, now: datetime) -> tuple[str, str, datetime, list[dict]]:
    authorization, meter = data.authorization, data.meter
    since = max(filter(None, (meter.created, meter.collection_started)))
    ready_at = authorization.ready_at or authorization.created
    if not is_ready(authorization, now):
        return "pending", "Collecting data...", since, []
    if authorization.behaviour in FAILURES:
        note_type, message = FAILURES[authorization.behaviour]
        return "errored", message, ready_at, [_note(note_type, message, ready_at)]
    notes = [_note("bills_full", "Found all bills.", ready_at)]
    if not data.intervals:
        notes.append(_note("intervals_empty", "Found no intervals for this meter.", ready_at))
    return "updated", "Finished collecting data.", ready_at, notes


def meter_object(view: View, data: MeterData) -> dict:
    authorization, meter = data.authorization, data.meter
    status, message, status_ts, notes = meter_status(data, view.now)
    bills = data.bills()
    count = data.interval_count()
    base = meter_base(data)
    files = f"{view.api_base}/files"
    return {
        "uid": meter.uid,
        "authorization_uid": meter.authorization_uid,
        "created": system_ts(meter.created),
        "user_email": view.client.user_email or None,
        "user_uid": view.client.user_uid or None,
        "is_archived": bool(meter.is_archived),
        "is_activated": is_ready(authorization, view.now) or meter.collection_started is not None,
        "is_expanded": is_ready(authorization, view.now),
        "notes": notes,
        "status": status,
        "status_message": message,
        "status_ts": system_ts(status_ts),
        "ongoing_monitoring": {"frequency": "off", "prepay": None, "next_prepay": None, "next_refresh": None,
                               "fixed_refresh_day": None},
        "utility": view.utility,
        "bill_count": len(bills),
        "bill_coverage": [[local_ts(bills[0].start), local_ts(bills[-1].end)]] if bills else [],
        "bill_sources": [SOURCE] if bills else [],
        "interval_count": count,
        "interval_coverage": [[local_ts(data.window[0]), local_ts(data.window[1])]] if count else [],
        "interval_sources": [SOURCE] if count else [],
        "exports": {
            "bills_csv": f"{files}/meters_bills_csv?meters={meter.uid}",
            "intervals_csv": f"{files}/intervals_csv?meters={meter.uid}",
        },
        "exports_list": [
            {"name": "Bills [csv]", "link": f"{files}/meters_bills_csv?meters={meter.uid}"},
            {"name": "Intervals [csv]", "link": f"{files}/intervals_csv?meters={meter.uid}"},
        ],
        "blocks": ["base", "suppliers"] if base else [],
        "base": base,
        "suppliers": meter_suppliers(data) if base else None,
    }


# ---------------------------------------------------------------- Bill


def _base_or_empty(data: MeterData) -> dict:
    return meter_base(data) or {}


def bill_uid(meter_uid: str, bill: meterdata.Bill) -> str:
    return f"{meter_uid}-{bill.uid}"


def bill_object(view: View, data: MeterData, bill: meterdata.Bill) -> dict:
    """A Bill (§5.5) from a meterdata bill: totals and line items exactly as ESPI's UsageSummary."""
    start, end = local_ts(bill.start), local_ts(bill.end)
    ready = system_ts(data.authorization.ready_at or data.authorization.created)
    espi = (f"{view.espi_base}/Subscription/{data.authorization.uid}/UsagePoint/{data.meter.uid}"
            f"/UsageSummary/{bill.uid}")
    items = []
    for item in bill.line_items:
        items.append({
            "name": item.name,
            "start": start,
            "end": end,
            "cost": item.cost / 1e5,
            "volume": item.demand_kw if item.kind == "demand" else item.volume_kwh,
            "unit": "kw" if item.kind == "demand" else ("kwh" if item.volume_kwh is not None else None),
            "rate": item.rate,
            "kind": item.kind,
        })
    return {
        "uid": bill_uid(data.meter.uid, bill),
        "meter_uid": data.meter.uid,
        "authorization_uid": data.authorization.uid,
        "created": ready,
        "updated": ready,
        "notes": [],
        "utility": view.utility,
        "blocks": ["base", "sources", "line_items"],
        "base": {
            **_base_or_empty(data),
            "bill_start_date": start,
            "bill_end_date": end,
            "bill_statement_date": local_ts(bill.statement),
            "bill_total_kwh": bill.consumption / 1e6,
            "bill_total_unit": "kwh",
            "bill_total_volume": bill.consumption / 1e6,
            "bill_total_cost": bill.cost / 1e5,
        },
        "sources": [{"type": SOURCE, "raw_url": espi}],
        "line_items": items,
    }


# ---------------------------------------------------------------- Interval


def interval_uid(meter_uid: str, day_start: int) -> str:
    return f"{meter_uid}-{meterdata.local_date(day_start):%Y%m%d}"


@lru_cache(maxsize=2048)
def _day_stamps(day_start: int) -> tuple[str, ...] | None:
    """The 97 local timestamps bounding a 24-hour local day's intervals, formatted once
    (formatting dominates a two-year walk); None on DST days, which take the slow path."""
    first = datetime.fromtimestamp(day_start, meterdata.TZ)
    last = datetime.fromtimestamp(day_start + 86400, meterdata.TZ)
    if first.utcoffset() != last.utcoffset() or last.hour or first.hour:
        return None
    day, offset = first.strftime("%Y-%m-%d"), first.isoformat()[-6:]
    return tuple(f"{day}T{i // 4:02d}:{i % 4 * 15:02d}:00.000000{offset}" for i in range(96)) + (local_ts(
        day_start + 86400),)


def _stamper(day_start: int | None) -> Callable[[int], str]:
    stamps = _day_stamps(day_start) if day_start is not None else None
    if stamps is None:
        return local_ts
    return lambda t: stamps[(t - day_start) // meterdata.INTERVAL]


def interval_readings(data: MeterData, start: int, end: int, day_start: int | None = None) -> list[dict]:
    """Readings of ``[start, end)``: ``kwh`` is the net usage. Datapoints give the delivered
    energy (``fwd``, ESPI flow 1) and ``net``; a solar meter's add the received (``rev``, flow 19).
    ``day_start``: the local midnight of the day these readings lie in (faster formatting)."""
    p = data.profile
    stamps = _day_stamps(day_start) if day_start is not None else None
    if stamps is not None and meterdata.REVERSE not in p.flows and start == day_start and end == day_start + 86400:
        # the common case, a whole 96-interval day of a meter without export, in one comprehension
        return [{"start": stamps[i], "end": stamps[i + 1], "kwh": (kwh := value / 1e6),
                 "datapoints": [{"type": "fwd", "unit": "kwh", "value": kwh},
                                {"type": "net", "unit": "kwh", "value": kwh}]}
                for i, value in enumerate(meterdata.day_values(p, meterdata.FORWARD, start, end))]
    stamp = _stamper(day_start)
    step = meterdata.INTERVAL
    out = []
    forward = meterdata.readings(p, meterdata.FORWARD, start, end)
    if meterdata.REVERSE in p.flows:
        reverse = dict(meterdata.readings(p, meterdata.REVERSE, start, end))
        for t, fwd in forward:
            rev = reverse.get(t, 0)
            net = (fwd - rev) / 1e6
            out.append({"start": stamp(t), "end": stamp(t + step), "kwh": net,
                        "datapoints": [{"type": "fwd", "unit": "kwh", "value": fwd / 1e6},
                                       {"type": "rev", "unit": "kwh", "value": rev / 1e6},
                                       {"type": "net", "unit": "kwh", "value": net}]})
    else:
        for t, fwd in forward:
            kwh = fwd / 1e6
            out.append({"start": stamp(t), "end": stamp(t + step), "kwh": kwh,
                        "datapoints": [{"type": "fwd", "unit": "kwh", "value": kwh},
                                       {"type": "net", "unit": "kwh", "value": kwh}]})
    return out


def interval_object(view: View, data: MeterData, day_start: int, start: int, end: int) -> dict:
    """One meter's readings of one local day (clipped to ``[start, end)``), as an Interval (§5.6)."""
    ready = system_ts(data.authorization.ready_at or data.authorization.created)
    base = _base_or_empty(data)
    base.pop("service_class", None)
    for key in ("billing_contact", "billing_address", "billing_account"):
        base.pop(key, None)
    base["qualities"] = ["revenue"]
    espi = f"{view.espi_base}/Batch/Subscription/{data.authorization.uid}/UsagePoint/{data.meter.uid}"
    return {
        "uid": interval_uid(data.meter.uid, day_start),
        "meter_uid": data.meter.uid,
        "authorization_uid": data.authorization.uid,
        "created": ready,
        "updated": ready,
        "notes": [],
        "utility": view.utility,
        "blocks": ["base", "sources", "readings"],
        "base": base,
        "sources": [{"type": SOURCE, "raw_url": espi}],
        "readings": interval_readings(data, start, end, day_start),
    }


# ---------------------------------------------------------------- Event and Form


def event_object(row: EventRow) -> dict:
    """An Event (§5.9): only the type-specific keys that apply are present."""
    obj = {
        "uid": row.uid,
        "type": row.type,
        "ts": system_ts(row.ts),
        "delivery_method": "webhook" if row.endpoint_id is not None else None,
        "delivery_target": row.delivery_target,
        "is_delivered": bool(row.is_delivered),
    }
    for key in ("authorization_uid", "meter_uid", "form_uid"):
        value = getattr(row, key)
        if value is not None:
            obj[key] = value
    return obj


def event_sort_key(row: EventRow) -> tuple:
    return (row.ts, EVENT_ORDER.get(row.type, 99), row.uid)


def form_object(view: View, form: FormRow) -> dict:
    """A Form (§5.8). For a Green Button utility the customer-facing form is the custodian's
    authorize page, so ``url`` points there for this client."""
    url = (f"{view.settings['sandbox_url'].rstrip('/')}/oauth/authorize?"
           + urlencode({"response_type": "code", "client_id": form.client_id}))
    return {
        "uid": form.uid,
        "created": system_ts(form.created),
        "updated": system_ts(form.updated),
        "template_uid": form.template_uid,
        "authorization_uid": None,
        "is_archived": bool(form.is_archived),
        "disabled": bool(form.disabled),
        "user_email": view.client.user_email or None,
        "user_uid": view.client.user_uid or None,
        "url": url,
        "customer_email": form.customer_email,
        "utility": form.utility,
        "scope": dict(form.scope or {}),
    }


# ---------------------------------------------------------------- queries


def own_authorization(s: Session, view: View, uid: str) -> AuthorizationRow:
    row = s.get(AuthorizationRow, uid)
    if row is None or row.client_id != view.client.client_id:
        raise not_found("Authorization")
    return row


def own_meter(s: Session, view: View, uid: str) -> tuple[AuthorizationRow, MeterRow]:
    meter = s.get(MeterRow, uid)
    authorization = s.get(AuthorizationRow, meter.authorization_uid) if meter else None
    if authorization is None or authorization.client_id != view.client.client_id:
        raise not_found("Meter")
    return authorization, meter


def own_form(s: Session, view: View, uid: str) -> FormRow:
    row = s.get(FormRow, uid)
    if row is None or row.client_id != view.client.client_id:
        raise not_found("Form")
    return row


def own_event(s: Session, view: View, uid: str) -> EventRow:
    row = s.get(EventRow, uid)
    if row is None or row.client_id != view.client.client_id or row.ts > view.now:
        raise not_found("Event")
    return row


def _forms_of(s: Session, view: View) -> dict[str, FormRow]:
    return {f.uid: f for f in s.query(FormRow).filter_by(client_id=view.client.client_id)}


def _in(values: list[str] | None, value: str | None) -> bool:
    return values is None or (value is not None and value in values)


def _matches(flag: bool | None, value: bool) -> bool:
    return flag is None or flag == value


def meter_listing(s: Session, view: View, authorization: AuthorizationRow) -> dict:
    """The nested MeterListing of ``include=meters`` (§3.1: ``authorization.meters.meters``)."""
    return {"meters": [meter_object(view, meter_data(view, authorization, m))
                       for m in lifecycle.meters_of(s, authorization.uid)], "next": None}


def list_authorizations(s: Session, view: View, params: Mapping[str, str]) -> dict:
    """``GET /authorizations`` with every documented filter, newest first (§5.3)."""
    uids, forms, templates = parse_list(params, "uids"), parse_list(params, "forms"), parse_list(params, "templates")
    users, referrals, utility = parse_list(params, "users"), parse_list(params, "referrals"), parse_list(params,
                                                                                                      "utility")
    flags = {name: parse_bool(params, name) for name in
             ("is_archived", "is_declined", "is_test", "is_revoked", "is_expired")}
    parse_bool(params, "expand_meter_blocks")
    include = parse_include(params)
    limit = parse_limit(params)
    form_rows = _forms_of(s, view)
    rows = []
    for a in s.query(AuthorizationRow).filter_by(client_id=view.client.client_id):
        form = form_rows.get(a.form_uid) if a.form_uid else None
        if not (_in(uids, a.uid) and _in(forms, a.form_uid) and _in(templates, form.template_uid if form else None)
                and _in(users, view.client.user_uid or None) and _in(utility, view.utility)):
            continue
        if referrals is not None and not set(referrals) & set(a.referrals or []):
            continue
        values = {"is_archived": bool(a.is_archived), "is_declined": is_declined(a), "is_test": bool(a.is_test),
                  "is_revoked": is_revoked(a), "is_expired": is_expired(a, view.now)}
        if all(_matches(flags[k], v) for k, v in values.items()):
            rows.append(a)
    rows.sort(key=lambda a: (a.created, a.uid), reverse=True)
    page, after = paginate(rows, lambda a: a.uid, params.get("after"), limit)
    objects = []
    for a in page:
        meters = meter_listing(s, view, a) if "meters" in include else None
        objects.append(authorization_object(view, a, form=form_rows.get(a.form_uid or ""), meters=meters))
    return {"authorizations": objects, "next": view.next_url("/authorizations", params, after)}


def get_authorization(s: Session, view: View, uid: str, params: Mapping[str, str]) -> dict:
    include = parse_include(params)
    parse_bool(params, "expand_meter_blocks")
    row = own_authorization(s, view, uid)
    form = s.get(FormRow, row.form_uid) if row.form_uid else None
    return authorization_object(view, row, form=form, meters=meter_listing(s, view, row) if "meters" in include
                                else None)


def _client_meters(s: Session, view: View) -> list[tuple[AuthorizationRow, MeterRow]]:
    rows = (s.query(AuthorizationRow, MeterRow)
            .join(MeterRow, MeterRow.authorization_uid == AuthorizationRow.uid)
            .filter(AuthorizationRow.client_id == view.client.client_id).all())
    rows.sort(key=lambda am: (am[1].created, am[1].authorization_uid, -am[1].position), reverse=True)
    return rows


def list_meters(s: Session, view: View, params: Mapping[str, str]) -> dict:
    """``GET /meters`` (§5.4), newest first; a customer's meters in their order."""
    uids, authorizations = parse_list(params, "uids"), parse_list(params, "authorizations")
    users, utility = parse_list(params, "users"), parse_list(params, "utility")
    flags = {name: parse_bool(params, name) for name in ("is_archived", "is_activated", "is_monitored")}
    parse_bool(params, "expand_meter_blocks")
    limit = parse_limit(params)
    rows = []
    for a, m in _client_meters(s, view):
        if not (_in(uids, m.uid) and _in(authorizations, a.uid) and _in(users, view.client.user_uid or None)
                and _in(utility, view.utility)):
            continue
        activated = is_ready(a, view.now) or m.collection_started is not None
        if (_matches(flags["is_archived"], bool(m.is_archived)) and _matches(flags["is_activated"], activated)
                and _matches(flags["is_monitored"], False)):
            rows.append((a, m))
    page, after = paginate(rows, lambda am: am[1].uid, params.get("after"), limit)
    return {"meters": [meter_object(view, meter_data(view, a, m)) for a, m in page],
            "next": view.next_url("/meters", params, after)}


def get_meter(s: Session, view: View, uid: str, params: Mapping[str, str]) -> dict:
    parse_bool(params, "expand_meter_blocks")
    authorization, meter = own_meter(s, view, uid)
    return meter_object(view, meter_data(view, authorization, meter))


def selected_meters(s: Session, view: View, params: Mapping[str, str]) -> list[tuple[AuthorizationRow, MeterRow]]:
    """The meters a bills/intervals query names through ``authorizations`` and/or ``meters``
    (one is required, §5.5), oldest authorization first, a customer's meters in order."""
    authorizations, meters = parse_list(params, "authorizations"), parse_list(params, "meters")
    if authorizations is None and meters is None:
        raise ApiError(400, "required_param_missing", "Filter by authorizations or meters (a comma-separated "
                                                      "list of uids).", f"{DOCS}/api/bills/list")
    found = False
    rows = [(a, m) for a, m in _client_meters(s, view) if _in(authorizations, a.uid) and _in(meters, m.uid)]
    rows.sort(key=lambda am: (am[1].created, am[1].authorization_uid, am[1].position))
    if rows:
        found = True
    elif authorizations is not None:
        found = s.query(AuthorizationRow).filter(AuthorizationRow.uid.in_(authorizations),
                                                 AuthorizationRow.client_id == view.client.client_id).count() > 0
    if not found:
        raise ApiError(404, "not_found", "No meters or authorizations found matching the given filter parameters.")
    return rows


def _time_filter(params: Mapping[str, str]) -> tuple[int | None, int | None]:
    start, end = parse_when(params.get("start"), "start"), parse_when(params.get("end"), "end")
    if start is not None and end is not None and start >= end:
        raise ApiError(400, "invalid_param", "start must be before end.")
    return start, end


def list_bills(s: Session, view: View, params: Mapping[str, str]) -> dict:
    """``GET /bills``: bills overlapping ``[start, end)``, latest first by default (§5.5)."""
    meters = selected_meters(s, view, params)
    start, end = _time_filter(params)
    latest = parse_order(params)
    limit = parse_limit(params)
    found = []
    for index, (a, m) in enumerate(meters):
        data = meter_data(view, a, m)
        for bill in data.bills():
            if (start is None or bill.end > start) and (end is None or bill.start < end):
                found.append((bill.start if not latest else -bill.start, index, data, bill))
    found.sort(key=lambda item: (item[0], item[1]))
    page, after = paginate(found, lambda item: bill_uid(item[2].meter.uid, item[3]), params.get("after"), limit)
    return {"bills": [bill_object(view, data, bill) for _k, _i, data, bill in page],
            "next": view.next_url("/bills", params, after)}


def list_intervals(s: Session, view: View, params: Mapping[str, str]) -> dict:
    """``GET /intervals``: one Interval object per meter per local day (see the module doc);
    ``limit`` counts those objects (default 100, at most 366)."""
    meters = selected_meters(s, view, params)
    start, end = _time_filter(params)
    latest = parse_order(params)
    limit = parse_limit(params, INTERVAL_LIMIT, MAX_INTERVAL_LIMIT)
    candidates = []
    for index, (a, m) in enumerate(meters):
        data = meter_data(view, a, m)
        if not data.intervals or data.window is None or data.profile is None:
            continue
        lo = max(data.window[0], start) if start is not None else data.window[0]
        hi = min(data.window[1], end) if end is not None else data.window[1]
        for day in meterdata.day_starts(meterdata.midnight(meterdata.local_date(lo)), hi):
            nxt = meterdata.midnight(date.fromordinal(meterdata.local_date(day).toordinal() + 1))
            clip = (max(day, lo), min(nxt, hi))
            if clip[0] < clip[1]:
                candidates.append((-day if latest else day, index, data, day, clip))
    candidates.sort(key=lambda c: (c[0], c[1]))
    page, after = paginate(candidates, lambda c: interval_uid(c[2].meter.uid, c[3]), params.get("after"), limit)
    objects = []
    for _k, _i, data, day, (lo, hi) in page:
        obj = interval_object(view, data, day, lo, hi)
        if obj["readings"]:
            objects.append(obj)
    return {"intervals": objects, "next": view.next_url("/intervals", params, after)}


def list_events(s: Session, view: View, params: Mapping[str, str]) -> dict:
    """``GET /events``: the client's events that have happened (ts <= now), newest first."""
    types, authorizations = parse_list(params, "types"), parse_list(params, "authorizations")
    meters, forms = parse_list(params, "meters"), parse_list(params, "forms")
    delivered = parse_bool(params, "is_delivered")
    limit = parse_limit(params)
    query = s.query(EventRow).filter(EventRow.client_id == view.client.client_id, EventRow.ts <= view.now)
    if types is not None:
        query = query.filter(EventRow.type.in_(types))
    if authorizations is not None:
        query = query.filter(EventRow.authorization_uid.in_(authorizations))
    if meters is not None:
        query = query.filter(EventRow.meter_uid.in_(meters))
    if forms is not None:
        query = query.filter(EventRow.form_uid.in_(forms))
    if delivered is not None:
        query = query.filter(EventRow.is_delivered.is_(delivered))
    rows = sorted(query.all(), key=event_sort_key, reverse=True)
    page, after = paginate(rows, lambda e: e.uid, params.get("after"), limit)
    return {"events": [event_object(e) for e in page], "next": view.next_url("/events", params, after)}


def list_forms(s: Session, view: View, params: Mapping[str, str]) -> dict:
    limit = parse_limit(params)
    archived = parse_bool(params, "is_archived")
    rows = [f for f in s.query(FormRow).filter_by(client_id=view.client.client_id)
            if _matches(archived, bool(f.is_archived))]
    rows.sort(key=lambda f: (f.created, f.uid), reverse=True)
    page, after = paginate(rows, lambda f: f.uid, params.get("after"), limit)
    return {"forms": [form_object(view, f) for f in page], "next": view.next_url("/forms", params, after)}


# ---------------------------------------------------------------- files (the objects' export links)

FILES = ("meters_csv", "meters_bills_csv", "intervals_csv")


def _csv(rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows(rows)
    return out.getvalue()


def export_csv(s: Session, view: View, name: str, params: Mapping[str, str]) -> str:
    """The CSV behind an ``exports`` link: ``meters_csv`` (meters and their base block),
    ``meters_bills_csv`` (bill totals) or ``intervals_csv`` (every reading, delivered /
    received / net kWh), for the meters named by ``meters`` and/or ``authorizations``."""
    if name not in FILES:
        raise not_found("File")
    meters = selected_meters(s, view, params)
    rows: list[Sequence[Any]] = []
    base_keys = ("service_identifier", "service_tariff", "service_class", "service_address", "billing_contact",
                 "billing_address", "billing_account")
    if name == "meters_csv":
        rows.append(("meter_uid", "authorization_uid", "utility", *base_keys, "meter_numbers", "bill_count",
                     "interval_count"))
        for a, m in meters:
            data = meter_data(view, a, m)
            base = meter_base(data) or {}
            rows.append((m.uid, a.uid, view.utility, *(base.get(k, "") for k in base_keys),
                         " ".join(base.get("meter_numbers", [])), len(data.bills()), data.interval_count()))
    elif name == "meters_bills_csv":
        rows.append(("meter_uid", "bill_uid", "service_identifier", "bill_start_date", "bill_end_date",
                     "bill_statement_date", "bill_total_kwh", "bill_total_cost"))
        for a, m in meters:
            data = meter_data(view, a, m)
            ident = (meter_base(data) or {}).get("service_identifier", "")
            for bill in data.bills():
                rows.append((m.uid, bill_uid(m.uid, bill), ident, local_ts(bill.start), local_ts(bill.end),
                             local_ts(bill.statement), bill.consumption / 1e6, bill.cost / 1e5))
    else:
        rows.append(("meter_uid", "service_identifier", "interval_start", "interval_end", "fwd_kwh", "rev_kwh",
                     "net_kwh"))
        for a, m in meters:
            data = meter_data(view, a, m)
            if not data.interval_count():
                continue
            ident = (meter_base(data) or {}).get("service_identifier", "")
            p, step = data.profile, meterdata.INTERVAL
            for day in meterdata.day_starts(*data.window):
                end = meterdata.midnight(date.fromordinal(meterdata.local_date(day).toordinal() + 1))
                stamp = _stamper(day)
                rev = dict(meterdata.readings(p, meterdata.REVERSE, day, end)) if meterdata.REVERSE in p.flows else {}
                forward = meterdata.readings(p, meterdata.FORWARD, day, end)
                rows.extend((m.uid, ident, stamp(t), stamp(t + step), fwd / 1e6, rev.get(t, 0) / 1e6,
                             (fwd - rev.get(t, 0)) / 1e6) for t, fwd in forward)
    return _csv(rows)


# ---------------------------------------------------------------- changes


def body_object(body: Any) -> dict:
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_param", "The request body must be a JSON object.")
    return body


def only_is_archived(body: Any, what: str) -> bool:
    """PATCH bodies: ``is_archived`` is the only modifiable field (§5.3)."""
    body = body_object(body)
    other = sorted(set(body) - {"is_archived"})
    if other:
        raise ApiError(400, "invalid_param", f"Only is_archived can be modified on a {what} (got {', '.join(other)}).")
    if "is_archived" not in body:
        raise ApiError(400, "required_param_missing", "Send {\"is_archived\": true} or false.")
    if not isinstance(body["is_archived"], bool):
        raise ApiError(400, "invalid_param", "is_archived must be true or false.")
    return body["is_archived"]


def historical_collection(s: Session, view: View, body: Any) -> dict:
    """``POST /meters/historical-collection`` (§5.4): meters of revoked or expired authorizations
    are dropped silently; if nothing is left, 400 ``expired_or_revoked``."""
    body = body_object(body)
    uids = body.get("meters")
    if uids is None:
        raise ApiError(400, "required_param_missing", "meters is required: a list of meter uids.",
                       f"{DOCS}/api/meters/historical-collection")
    if (not isinstance(uids, list) or not uids or len(uids) > 1000
            or not all(isinstance(u, str | int) and not isinstance(u, bool) for u in uids)):
        raise ApiError(400, "invalid_param", "meters must be a non-empty list of meter uids.")
    duration = body.get("collection_duration", 36)
    if isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= 36:
        raise ApiError(400, "invalid_param", "collection_duration must be a whole number of months from 1 to 36.")
    keep, unknown = [], []
    for uid in dict.fromkeys(str(u) for u in uids):
        try:
            authorization, meter = own_meter(s, view, uid)
        except ApiError:
            unknown.append(uid)
            continue
        if not (is_revoked(authorization) or is_declined(authorization) or is_expired(authorization, view.now)):
            keep.append(meter)
    if unknown:
        raise ApiError(404, "not_found", f"Meters not found: {', '.join(unknown)}.")
    if not keep:
        raise ApiError(400, "expired_or_revoked", "All of these meters belong to revoked or expired authorizations.")
    lifecycle.historical_collection(s, keep, duration, view.settings, now=view.now)
    return {"success": True, "meters": [m.uid for m in keep], "collection_duration": duration}


def delete_authorization(s: Session, view: View, uid: str) -> dict:
    """``DELETE /authorizations/{uid}``: test-submits only (§1.10)."""
    row = own_authorization(s, view, uid)
    if row.source != "test-submit":
        raise ApiError(400, "invalid_param", "Only authorizations made with /test-submit can be deleted; "
                                             "revoke this one instead.")
    lifecycle.cancel_future_events(s, row.uid, view.now)
    for meter in lifecycle.meters_of(s, row.uid):
        s.delete(meter)
    s.flush()
    s.delete(row)
    return {"success": True}


def create_form(s: Session, view: View, body: Any) -> FormRow:
    """``POST /forms`` (§5.8): optional customer_email, utility, scope (an object), template_uid."""
    body = body_object(body) if body is not None else {}
    unknown = sorted(set(body) - {"customer_email", "utility", "scope", "template_uid"})
    if unknown:
        raise ApiError(400, "invalid_param", f"Unknown form fields: {', '.join(unknown)}.")
    scope = body.get("scope", DEFAULT_FORM_SCOPE)
    if not isinstance(scope, dict):
        raise ApiError(400, "invalid_param", "Scope must be a valid json object")
    for key in ("customer_email", "utility", "template_uid"):
        if body.get(key) is not None and (not isinstance(body[key], str) or len(body[key]) > 320):
            raise ApiError(400, "invalid_param", f"{key} must be a string.")
    utility = body.get("utility") or view.utility
    if utility != view.utility:
        raise ApiError(400, "invalid_param", f"This sandbox serves one utility: {view.utility}.")
    form_expiry(scope.get("expires"), view.epoch)
    form = FormRow(uid=lifecycle.numeric_uid(s, FormRow, 6), client_id=view.client.client_id, created=view.now,
                   updated=view.now, template_uid=body.get("template_uid"), customer_email=body.get("customer_email"),
                   utility=utility, scope=dict(scope))
    s.add(form)
    s.flush()
    lifecycle.emit(s, view.client.client_id, "form_created", ts=view.now, form_uid=form.uid)
    return form


MAX_FORM_EXPIRY = 10 * 366 * 86400


def form_expiry(expires: Any, now: int) -> int | None:
    """A form scope's ``expires``: a duration such as ``3y``/``90d`` or an ISO 8601 date or
    time, as the end in epoch seconds (None when absent). Raises ApiError for anything else,
    including ends in the past or more than 10 years ahead."""
    if expires is None:
        return None
    if not isinstance(expires, str) or len(expires) > 40:
        raise ApiError(400, "invalid_param", "scope.expires must be a duration like 3y or 90d, or an ISO 8601 date.")
    text = expires.strip()
    seconds = parse_relative(text)
    if seconds is not None:
        end = now + seconds
    else:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise ApiError(400, "invalid_param", "scope.expires must be a duration like 3y or 90d, or an ISO 8601 "
                                                 "date.") from None
        end = int((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())
    if not now < end <= now + MAX_FORM_EXPIRY:
        raise ApiError(400, "invalid_param", "scope.expires must lie in the future and at most 10 years ahead.")
    return end


def default_form(s: Session, view: View) -> FormRow:
    """Every client has a form to test-submit to: the first one, made on first use."""
    forms = sorted(s.query(FormRow).filter_by(client_id=view.client.client_id), key=lambda f: (f.created, f.uid))
    return forms[0] if forms else create_form(s, view, None)


def set_event_delivered(s: Session, view: View, uid: str, body: Any) -> EventRow:
    """``PATCH /events/{uid}``: true stops retries; false queues a webhook event for delivery again."""
    body = body_object(body)
    if set(body) != {"is_delivered"} or not isinstance(body["is_delivered"], bool):
        raise ApiError(400, "invalid_param", "Send {\"is_delivered\": true} or false; nothing else can change.")
    row = own_event(s, view, uid)
    row.is_delivered = body["is_delivered"]
    if row.is_delivered:
        row.next_attempt = None
    elif row.endpoint_id is not None:
        row.attempts = 0
        row.next_attempt = view.now
    return row

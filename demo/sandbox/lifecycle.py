"""What happens to an authorization after the customer's decision, free of Flask:
its meters are found, its data is collected (readiness), events are recorded
for the third party's webhooks, and it ends by revocation or expiry.

Every function takes a SQLAlchemy session and leaves committing to the caller.
"""
from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ..storage import utcnow
from .models import AuthorizationRow, EventRow, MeterRow, TokenRow, WebhookEndpointRow

#: Event types a third party can receive (reference §5.9), in the order they happen
#: within one instant (with no collection delay, created, meter_created and finished
#: share a timestamp; listings and deliveries sort ties by this order).
EVENT_TYPES = (
    "ping", "form_created", "authorization_created", "authorization_renewed", "authorization_update_started",
    "meter_created", "meter_historical_collection_started", "meter_historical_collection_delayed",
    "meter_historical_collection_retrying", "meter_historical_collection_progress", "authorization_update_delayed",
    "authorization_update_retrying", "authorization_update_progress", "meter_intervals_added",
    "meter_bills_added", "meter_historical_collection_finished_successful",
    "meter_historical_collection_finished_errored", "authorization_update_finished_successful",
    "authorization_update_finished_errored", "authorization_declined", "authorization_expiring_soon",
    "authorization_expired", "authorization_revoked",
)
EVENT_ORDER = {t: i for i, t in enumerate(EVENT_TYPES)}

#: Test behaviours whose data collection fails: (note type, message). The note type
#: ``access_invalid`` is documented; ``website_down`` and ``utility_error`` are this sandbox's.
FAILURES = {
    "badlogin": ("access_invalid", "Invalid login credentials: the utility rejected the account details."),
    "badlogin_after": ("access_invalid", "Invalid login credentials while collecting data."),
    "websitedown": ("website_down", "Utility website down: please try again later."),
    "websitedown_after": ("website_down", "Utility website down while collecting data: please try again later."),
    "utilityerror": ("utility_error", "The utility returned an error."),
}
#: Behaviours that fail before any meter is found.
FAILS_AT_LOGIN = ("badlogin", "websitedown", "utilityerror")
ERRORED_BEHAVIOURS = tuple(FAILURES)


_TAKEN: dict = {}


def numeric_uid(s: Session, model, digits: int = 7) -> str:
    """A numeric-looking uid (UtilityAPI's uids are strings of digits) not yet taken in ``model``."""
    return numeric_uids(s, model, 1, digits)[0]


def numeric_uids(s: Session, model, count: int, digits: int = 7) -> list[str]:
    """``count`` distinct numeric-looking uids not yet taken in ``model``, checked with one
    query for all of them (another round only for the rare ones already taken)."""
    low = 10 ** (digits - 1)
    taken_of = _TAKEN.get(model)
    if taken_of is None:    # built once per model: a bound statement is not rebuilt or re-keyed per call
        key = model.__mapper__.primary_key[0]
        taken_of = _TAKEN[model] = select(key).where(key.in_(bindparam("uids", expanding=True)))
    uids: list[str] = []
    while len(uids) < count:
        candidates: list[str] = []
        while len(candidates) < count - len(uids):
            uid = str(secrets.randbelow(9 * low) + low)
            if uid not in uids and uid not in candidates:
                candidates.append(uid)
        # the query flushes this session first, so rows added but not yet written count too
        taken = set(s.scalars(taken_of, {"uids": candidates}))
        uids += [uid for uid in candidates if uid not in taken]
    return uids


def ready_delay(settings: dict) -> int:
    return max(0, int(settings.get("sandbox_ready_delay", 0)))


def seconds_until_ready(authorization: AuthorizationRow, now: datetime | None = None) -> int:
    """0 once the authorization's data is collected; else whole seconds to wait (>= 1)."""
    now = now or utcnow()
    if authorization.ready_at is None or authorization.ready_at <= now:
        return 0
    return max(1, int((authorization.ready_at - now).total_seconds() + 0.999))


_METERS_OF = select(MeterRow).where(MeterRow.authorization_uid == bindparam("uid")).order_by(MeterRow.position)


def meters_of(s: Session, authorization_uid: str) -> list[MeterRow]:
    return list(s.scalars(_METERS_OF, {"uid": authorization_uid}))


@dataclass(frozen=True)
class Event:
    """One event to record (:func:`emit_all`)."""

    type: str
    ts: datetime
    authorization_uid: str | None = None
    meter_uid: str | None = None
    form_uid: str | None = None


_ENDPOINTS_OF = (select(WebhookEndpointRow.id, WebhookEndpointRow.url, WebhookEndpointRow.event_types)
                 .where(WebhookEndpointRow.client_id == bindparam("client_id"), WebhookEndpointRow.disabled.is_(False))
                 .order_by(WebhookEndpointRow.id))


def emit(s: Session, client_id: str, type_: str, *, ts: datetime | None = None,
         authorization_uid: str | None = None, meter_uid: str | None = None,
         form_uid: str | None = None) -> list[EventRow]:
    """Record an event: one row per webhook endpoint that wants this type, or a single
    undelivered row when none does (it can still be read from ``/api/v2/events``)."""
    return emit_all(s, client_id, [Event(type_, ts or utcnow(), authorization_uid, meter_uid, form_uid)])


def emit_all(s: Session, client_id: str, events: Sequence[Event], *, with_rows: Sequence = ()) -> list[EventRow]:
    """Record several events of one client, in this order, as :func:`emit` one after the
    other would: the client's endpoints are read once and all uids are checked in one query.
    ``with_rows``: new rows to add first, written in the same flush as the events."""
    endpoints = s.execute(_ENDPOINTS_OF, {"client_id": client_id}).all()
    targets = [(event, [e for e in endpoints if not e.event_types or event.type in e.event_types] or [None])
               for event in events]
    uids = iter(numeric_uids(s, EventRow, sum(len(t) for _, t in targets), 9))
    rows = []
    for event, wanted in targets:
        for endpoint in wanted:
            rows.append(EventRow(
                uid=next(uids), client_id=client_id, type=event.type, ts=event.ts,
                authorization_uid=event.authorization_uid, meter_uid=event.meter_uid, form_uid=event.form_uid,
                endpoint_id=endpoint.id if endpoint else None,
                delivery_target=endpoint.url if endpoint else None,
                next_attempt=event.ts if endpoint else None,
            ))
    s.add_all([*with_rows, *rows])
    s.flush()
    return rows


def create_meters(s: Session, authorization: AuthorizationRow, service_uids: Iterable[str],
                  created: datetime | None = None, *, add: bool = True) -> list[MeterRow]:
    """New meter uids for the customer's shared meters, in the customer's order, created at
    ``created`` (by default when the authorization was). Added to ``s`` unless not ``add``."""
    service_uids = list(service_uids)
    uids = numeric_uids(s, MeterRow, len(service_uids))
    created = created or authorization.created
    meters = [MeterRow(uid=uid, authorization_uid=authorization.uid, service_uid=service_uid, position=position,
                       created=created)
              for position, (uid, service_uid) in enumerate(zip(uids, service_uids, strict=True))]
    if add:
        s.add_all(meters)
    authorization.meter_uids = [m.uid for m in meters]
    return meters


def authorized(s: Session, authorization: AuthorizationRow, service_uids: Iterable[str], settings: dict,
               *, now: datetime | None = None) -> list[MeterRow]:
    """The customer authorized: find the meters, start collecting, tell the third party.

    The platform's sequence (reference §5.9): ``authorization_created`` and
    ``authorization_update_started`` now, ``meter_created`` per meter, and
    ``authorization_update_finished_*`` when the data is ready.

    ``authorization`` may be new and not yet in ``s``: it is added once its fields are final,
    so it is written by one INSERT rather than an INSERT and an UPDATE. It, its meters and the
    events are written in one flush, after the three queries (meter uids, endpoints, event uids).
    """
    now = now or utcnow()
    errored_at_login = authorization.behaviour in FAILS_AT_LOGIN
    # the meters' uids first, nothing of this authorization pending yet; the rows are added with the events
    meters = [] if errored_at_login else create_meters(s, authorization, service_uids, created=now, add=False)
    if errored_at_login:
        authorization.meter_uids = []
    authorization.created = now
    authorization.ready_at = now + timedelta(seconds=ready_delay(settings))
    new_rows = [*([] if authorization in s else [authorization]), *meters]
    uid = authorization.uid
    finished = ("authorization_update_finished_errored" if authorization.behaviour in ERRORED_BEHAVIOURS
                else "authorization_update_finished_successful")
    emit_all(s, authorization.client_id, [
        Event("authorization_created", now, uid),
        Event("authorization_update_started", now, uid),
        *(Event("meter_created", now, uid, meter.uid) for meter in meters),
        Event(finished, authorization.ready_at, uid),
    ], with_rows=new_rows)
    return meters


def declined(s: Session, authorization: AuthorizationRow, *, now: datetime | None = None) -> None:
    now = now or utcnow()
    authorization.status = 2
    authorization.declined_at = now
    emit(s, authorization.client_id, "authorization_declined", ts=now, authorization_uid=authorization.uid)


def historical_collection(s: Session, meters: list[MeterRow], duration: int, settings: dict,
                          *, now: datetime | None = None) -> None:
    """``POST /meters/historical-collection``: started now, finished when ready."""
    now = now or utcnow()
    done = now + timedelta(seconds=ready_delay(settings))
    events: list[tuple[str, Event]] = []
    for meter in meters:
        authorization = s.get(AuthorizationRow, meter.authorization_uid)
        meter.collection_duration = duration
        meter.collection_started = now
        if authorization.ready_at is None or authorization.ready_at > now:
            # still collecting: the first collection now ends when this one does; data already
            # collected stays visible (re-collecting does not hide it)
            authorization.ready_at = max(authorization.ready_at or done, done)
        client, auth_uid = authorization.client_id, meter.authorization_uid
        events.append((client, Event("meter_historical_collection_started", now, auth_uid, meter.uid)))
        if authorization.behaviour in ERRORED_BEHAVIOURS:
            events.append((client, Event("meter_historical_collection_finished_errored", done, auth_uid, meter.uid)))
            continue
        if authorization.behaviour != "nointervals":
            events.append((client, Event("meter_intervals_added", done, auth_uid, meter.uid)))
        events.append((client, Event("meter_bills_added", done, auth_uid, meter.uid)))
        events.append((client, Event("meter_historical_collection_finished_successful", done, auth_uid, meter.uid)))
    # in the same order, one emit_all per run of events of one client (in practice one)
    for client, group in itertools.groupby(events, key=lambda pair: pair[0]):
        emit_all(s, client, [event for _, event in group])


def revoke_tokens(s: Session, authorization_uid: str) -> None:
    s.query(TokenRow).filter_by(authorization_uid=authorization_uid).update({"revoked": True})


def cancel_future_events(s: Session, authorization_uid: str, now: datetime) -> None:
    """An authorization that ends stops its pending story: a collection scheduled to
    finish later must not be announced after ``authorization_revoked``."""
    s.query(EventRow).filter(EventRow.authorization_uid == authorization_uid, EventRow.ts > now,
                             EventRow.is_delivered.is_(False)).delete(synchronize_session=False)


def revoke(s: Session, authorization: AuthorizationRow, by: str, *, now: datetime | None = None) -> bool:
    """Revoked by the ``customer`` or the ``third_party``: access stops now, tokens die,
    ``authorization_revoked`` is sent. False when it was not active."""
    now = now or utcnow()
    if authorization.status != 1 or is_expired(authorization, now):
        return False
    authorization.status = 0
    authorization.revoked_at = now
    authorization.revoked_by = by
    revoke_tokens(s, authorization.uid)
    cancel_future_events(s, authorization.uid, now)
    emit(s, authorization.client_id, "authorization_revoked", ts=now, authorization_uid=authorization.uid)
    return True


def is_expired(authorization: AuthorizationRow, now: datetime | None = None) -> bool:
    """Past its end (PreferredAuthEndDate or the customer's choice); 0 means until revoked."""
    end = authorization.authorized_end
    return authorization.status == 1 and (bool(authorization.expired_notified)
                                          or (bool(end) and end <= _epoch(now or utcnow())))


def _epoch(naive_utc: datetime) -> int:
    return int(naive_utc.replace(tzinfo=UTC).timestamp())


def expire_due(s: Session, now: datetime | None = None) -> int:
    """Authorizations past their end: tokens revoked, ``authorization_expired`` sent once
    (each row is claimed by a conditional UPDATE, so several workers never both send it)."""
    now = now or utcnow()
    epoch = _epoch(now)
    count = 0
    rows = (s.query(AuthorizationRow)
            .filter(AuthorizationRow.status == 1, AuthorizationRow.expired_notified.is_(False),
                    AuthorizationRow.authorized_end > 0, AuthorizationRow.authorized_end <= epoch).all())
    for authorization in rows:
        claimed = (s.query(AuthorizationRow)
                   .filter(AuthorizationRow.uid == authorization.uid, AuthorizationRow.expired_notified.is_(False))
                   .update({"expired_notified": True}, synchronize_session=False))
        if claimed != 1:
            continue
        s.refresh(authorization)
        revoke_tokens(s, authorization.uid)
        cancel_future_events(s, authorization.uid, now)
        emit(s, authorization.client_id, "authorization_expired", ts=now, authorization_uid=authorization.uid)
        count += 1
    return count

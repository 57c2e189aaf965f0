"""The sandbox's Green Button (ESPI) API: the paths, tokens and Atom shapes of
UtilityAPI's ``/DataCustodian/espi/1_1/resource`` (reference §4.2).

Tokens (reference §1.9; :mod:`.credentials`):

- ``ReadServiceStatus``: any valid token.
- ``ApplicationInformation/{id}``: the client's registration (or API) token;
  ``id`` = ``resources.application_id(client_id)`` (the client id is accepted too).
- ``Authorization``: a client or API token, listing that client's authorizations;
  ``Authorization/{uid}``: those, or the authorization's own access token.
- ``Subscription/…``, ``Batch/Subscription/…``, ``ReadingType/{id}``,
  ``LocalTimeParameters/{id}``, ``RetailCustomer/…``: the authorization's own access
  token, or its client's API token. The id-less ``ReadingType`` and
  ``LocalTimeParameters`` feeds (the entries' ``up`` links) take an access token.
- ``Batch/Bulk/{bulkId}``: a client or API token, ``bulkId`` = ``bulk_id(client_id)``;
  every active authorization of the client whose data is collected.

A JSON API token works as Bearer on every endpoint for its own client's
resources (EDDIE reads ServiceStatus with it; CITY-S reads Batch/Subscription).

Status codes: 401 for a missing, unknown, expired or revoked token (with
``WWW-Authenticate: Bearer``); 403 for the wrong class of token and for what the
granted scope does not cover (``insufficient_scope``: no FB 4 -> no
MeterReading/IntervalBlock/ReadingType, no FB 16 -> no UsageSummary, no FB 51
-> no RetailCustomer); 404 for unknown ids, another client's or authorization's
resources, and authorizations that are not active (revoked, declined, expired:
their data is gone, as UtilityAPI deletes it); 400 for bad query parameters;
202 with ``Retry-After`` and an empty body while the authorization's data is
still being collected (Batch endpoints, RetailCustomer batch, and the MeterReading,
IntervalBlock, ReadingType, UsageSummary and ElectricPowerQualitySummary
resources; the UsagePoints, LocalTimeParameters and Authorization are served at once).

Query parameters (:func:`resources.parse_filters`): ``published-min/max`` and
``updated-min/max`` keep the IntervalBlocks and UsageSummaries published in that
range (structural entries stay); ``max-results``/``start-index`` page the
Authorization, IntervalBlock and UsageSummary feeds (batches are not paged).

Everything a response needs is loaded (:func:`resources.load`) before the
body streams, so no database session stays open while a big feed is written.
"""
from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime

from flask import Blueprint, Response, abort, request
from sqlalchemy import bindparam, select

from ..espi import build, stream
from ..storage import utcnow
from . import lifecycle, resources
from .credentials import (
    ACCESS,
    API,
    CLIENT,
    REGISTRATION,
    Credential,
    CredentialError,
    WrongClass,
    bearer_from_header,
    identify,
    require,
)
from .models import AuthorizationRow, ClientRow
from .oauth import ctx
from .resources import RESOURCE_PATH, FilterError, Filters, Served

bp = Blueprint("espi", __name__, url_prefix=RESOURCE_PATH)

ATOM = "application/atom+xml; charset=utf-8"
REALM = "PCE sandbox Green Button"


# ---------------------------------------------------------------- errors and responses


def _error(status: int, error: str, description: str, *, challenge: bool = False) -> Response:
    body = json.dumps({"error": error, "error_description": description})
    response = Response(body, status=status, content_type="application/json")
    if challenge:
        quoted = description.replace('"', "'")
        error_part = f', error="{error}", error_description="{quoted}"' if error != "invalid_request" else ""
        response.headers["WWW-Authenticate"] = f'Bearer realm="{REALM}"{error_part}'
    return response


def _fail(status: int, error: str, description: str, *, challenge: bool = False):
    abort(_error(status, error, description, challenge=challenge))


def _not_found():
    _fail(404, "not_found", "No such resource for this token.")


def _xml(body: bytes) -> Response:
    return Response(body, content_type=ATOM)


def _stream(chunks) -> Response:
    """A streamed body: the generator needs nothing from the request or the database."""
    return Response(chunks, content_type=ATOM)


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _base() -> str:
    return resources.resource_base(ctx().settings["sandbox_url"])


def _filters() -> Filters:
    try:
        return resources.parse_filters(request.args)
    except FilterError as exc:
        _fail(400, "invalid_request", str(exc))


# ---------------------------------------------------------------- credentials


def _credential(s=None) -> Credential:
    """The request's bearer credential (401 when it is none), read in ``s`` or a session of its own."""
    if s is None:
        with ctx().db.session() as own:
            return _credential(own)
    token = bearer_from_header(request.headers.get("Authorization"))
    try:
        return identify(s, token)
    except CredentialError as exc:
        _fail(401, exc.error, exc.description, challenge=True)


def _require(cred: Credential, *kinds: str, what: str) -> None:
    try:
        require(cred, *kinds, what=what)
    except WrongClass as exc:
        _fail(403, "insufficient_scope", str(exc), challenge=True)


def _served(uid: str, *, data: bool, cred: Credential | None = None) -> Served:
    """The active authorization ``uid`` if this token (or ``cred``, already read) may read it
    (:func:`resources.serve`); 202 while its data is being collected when ``data`` is asked for.
    The token and the authorization are read in one session."""
    with ctx().db.session() as s:
        if cred is None:
            cred = _credential(s)
            _require(cred, ACCESS, API, what="Customer data")
        try:
            return resources.serve(s, cred, uid, ctx().directory.by_account, utcnow(), data=data)
        except resources.NotServed as exc:
            if exc.status == 202:
                abort(Response(b"", status=202, headers={"Retry-After": str(exc.retry_after)}))
            _not_found()


def _scope(granted: bool, what: str, block: int) -> None:
    if not granted:
        _fail(403, "insufficient_scope", f"The granted scope does not include FB {block}, so {what} is not "
                                         "served.", challenge=True)


def _meter(served: Served, meter_uid: str) -> resources.ServedMeter:
    meter = served.meter(meter_uid)
    if meter is None:
        _not_found()
    return meter


# ---------------------------------------------------------------- status, registration, authorizations


@bp.get("/ReadServiceStatus")
def read_service_status():
    _credential()
    return _xml(build.service_status(1))


@bp.get("/ApplicationInformation/<app_id>")
def application_information(app_id: str):
    cred = _credential()
    _require(cred, REGISTRATION, API, what="ApplicationInformation")
    if app_id not in (resources.application_id(cred.client_id), cred.client_id):
        _not_found()
    with ctx().db.session() as s:
        client = s.get(ClientRow, cred.client_id)
        if client is None:
            _not_found()
        app = resources.application_information(client, ctx().settings)
    now = _now()
    return _xml(build.application_information_entry(_base(), app, published=now, updated=now))


def _authorization_reader(s) -> Credential:
    cred = _credential(s)
    _require(cred, CLIENT, API, ACCESS, what="The Authorization resource")
    return cred


@bp.get("/Authorization")
def authorizations():
    cred = _credential()
    _require(cred, CLIENT, API, what="The Authorization list")
    filters = _filters()
    base = _base()
    with ctx().db.session() as s:
        rows = (s.query(AuthorizationRow).filter_by(client_id=cred.client_id)
                .order_by(AuthorizationRow.created, AuthorizationRow.uid).all())
        rows = [r for r in rows if filters.admits(int(r.created.replace(tzinfo=UTC).timestamp()))]
        auths = [resources.espi_authorization(r, base) for r in filters.page(rows)]
        created = [r.created.replace(tzinfo=UTC) for r in filters.page(rows)]

    def add(feed, base_):
        for auth, when in zip(auths, created, strict=True):
            build._authorization(feed, base_, auth, published=when, updated=when)
    return _xml(build.feed_bytes(base, "Authorization", "Authorization", "Authorization", _now(), add))


#: built once: read on every flow (in a new session, where s.get would query the same)
_AUTHORIZATION = select(AuthorizationRow).where(AuthorizationRow.uid == bindparam("uid"))


@bp.get("/Authorization/<uid>")
def authorization(uid: str):
    with ctx().db.session() as s:
        cred = _authorization_reader(s)
        row = s.scalars(_AUTHORIZATION, {"uid": uid}).first() if len(uid) <= 64 else None
        if row is None or row.client_id != cred.client_id:
            _not_found()
        if cred.kind == ACCESS and (cred.authorization_uid != uid or row.status != 1):
            _not_found()
        base = _base()
        auth = resources.espi_authorization(row, base)
        when = row.created.replace(tzinfo=UTC)
    return _xml(build.authorization_entry(base, auth, updated=when, published=when))


# ---------------------------------------------------------------- Batch


@bp.get("/Batch/Subscription/<uid>")
@bp.get("/Subscription/<uid>")
def batch_subscription(uid: str):
    filters = _filters()
    served = _served(uid, data=True)
    self_path = f"Batch/Subscription/{uid}"
    return _stream(stream.batch_feed(_base(), self_path, resources.subscription_data(served, filters),
                                     updated=_now()))


@bp.get("/Batch/Subscription/<uid>/UsagePoint/<meter_uid>")
def batch_usage_point(uid: str, meter_uid: str):
    filters = _filters()
    served = _served(uid, data=True)
    meter = _meter(served, meter_uid)
    self_path = f"Batch/Subscription/{uid}/UsagePoint/{meter_uid}"
    return _stream(stream.batch_feed(_base(), self_path, resources.subscription_data(served, filters, (meter,)),
                                     updated=_now()))


@bp.get("/Batch/Bulk/<bulk>")
@bp.get("/Bulk/<bulk>")
def bulk(bulk: str):
    """Every active, collected authorization of the client in one feed (the ESPI Bulk)."""
    cred = _credential()
    _require(cred, CLIENT, API, what="Bulk")
    if bulk != resources.bulk_id(cred.client_id):
        _not_found()
    filters = _filters()
    now = utcnow()
    epoch = int(now.replace(tzinfo=UTC).timestamp())
    with ctx().db.session() as s:
        rows = (s.query(AuthorizationRow).filter_by(client_id=cred.client_id, status=1)
                .order_by(AuthorizationRow.created, AuthorizationRow.uid).all())
        served = [resources.load(r, lifecycle.meters_of(s, r.uid), ctx().directory.by_account(r.account_number),
                                 epoch)
                  for r in rows if not lifecycle.is_expired(r, now) and lifecycle.seconds_until_ready(r, now) == 0]

    def parts():
        for one in served:
            yield from resources.subscription_data(one, filters)
    return _stream(stream.batch_feed(_base(), f"Batch/Bulk/{bulk}", parts(), updated=_now(), feed_type="Bulk",
                                     title="Bulk"))


# ---------------------------------------------------------------- UsagePoint and below


@bp.get("/Subscription/<uid>/UsagePoint")
def usage_points(uid: str):
    served = _served(uid, data=False)
    return _xml(build.usage_point_feed(_base(), uid, [m.resource for m in served.meters], updated=_now(),
                                       published=served.created, meter_reading=served.interval_metering,
                                       usage_summary=served.usage_summary))


@bp.get("/Subscription/<uid>/UsagePoint/<meter_uid>")
def usage_point(uid: str, meter_uid: str):
    served = _served(uid, data=False)
    meter = _meter(served, meter_uid)
    entry = build.usage_point_element(None, _base(), uid, meter.resource, published=served.created,
                                      updated=served.created, meter_reading=served.interval_metering,
                                      usage_summary=served.usage_summary)
    return _xml(build.entry_bytes(entry))


@bp.get("/LocalTimeParameters/<ltp_id>")
def local_time_parameters(ltp_id: str):
    prefix, _, rest = ltp_id.partition("_")
    uid, _, meter_uid = rest.partition("_")
    if prefix != "TIMEZONE" or not uid or not meter_uid:
        _not_found()
    served = _served(uid, data=False)
    meter = _meter(served, meter_uid)
    entry = build.local_time_element(None, _base(), uid, meter.resource, published=served.created,
                                     updated=served.created)
    return _xml(build.entry_bytes(entry))


def _own_subscription(what: str) -> Served:
    """The authorization of an access token, for the collection feeds without one in their path."""
    cred = _credential()
    _require(cred, ACCESS, what=what)
    return _served(cred.authorization_uid or "", data=False, cred=cred)


@bp.get("/LocalTimeParameters")
def local_time_parameters_feed():
    """The LocalTimeParameters of the access token's meters (the entries' ``up`` link)."""
    served = _own_subscription("The LocalTimeParameters feed")

    def add(feed, base):
        for meter in served.meters:
            build.local_time_element(feed, base, served.uid, meter.resource, published=served.created,
                                     updated=served.created)
    return _xml(build.feed_bytes(_base(), "LocalTimeParameters", "LocalTimeParameters", "LocalTimeParameters",
                                 _now(), add))


@bp.get("/ReadingType")
def reading_types():
    """The ReadingTypes of the access token's current MeterReadings (the entries' ``up`` link)."""
    served = _own_subscription("The ReadingType feed")
    _scope(served.interval_metering, "interval data (MeterReading, ReadingType, IntervalBlock)", 4)

    def add(feed, base):
        for meter in served.meters:
            for mr, rt, flow, _ in resources.meter_readings(served, meter):
                build.reading_type_element(feed, base, served.uid, meter.uid, mr, rt, resources.reading_type(flow),
                                           published=served.created, updated=served.created)
    return _xml(build.feed_bytes(_base(), "ReadingType", "ReadingType", "ReadingType", _now(), add))


def _interval_meter(uid: str, meter_uid: str) -> tuple[Served, resources.ServedMeter]:
    served = _served(uid, data=True)
    meter = _meter(served, meter_uid)
    _scope(served.interval_metering, "interval data (MeterReading, ReadingType, IntervalBlock)", 4)
    return served, meter


def _meter_reading(served: Served, meter: resources.ServedMeter, mr_id: str) -> tuple[int, int, int]:
    parsed = resources.parse_meter_reading_id(meter.uid, mr_id)
    if parsed is None or parsed[2] not in resources.flows(served, meter):
        _not_found()
    return parsed


@bp.get("/Subscription/<uid>/UsagePoint/<meter_uid>/MeterReading")
def meter_readings(uid: str, meter_uid: str):
    filters = _filters()
    served, meter = _interval_meter(uid, meter_uid)
    readings = [(mr, rt) for mr, rt, _, _ in resources.meter_readings(served, meter, filters)]
    return _xml(build.meter_reading_feed(_base(), uid, meter_uid, readings, updated=_now(),
                                         published=served.created))


@bp.get("/Subscription/<uid>/UsagePoint/<meter_uid>/MeterReading/<mr_id>")
def meter_reading(uid: str, meter_uid: str, mr_id: str):
    served, meter = _interval_meter(uid, meter_uid)
    _meter_reading(served, meter, mr_id)
    entry = build.meter_reading_element(None, _base(), uid, meter_uid, mr_id,
                                        resources.reading_type_id(uid, meter_uid, mr_id),
                                        published=served.created, updated=served.created)
    return _xml(build.entry_bytes(entry))


@bp.get("/Subscription/<uid>/UsagePoint/<meter_uid>/MeterReading/<mr_id>/IntervalBlock")
def interval_blocks(uid: str, meter_uid: str, mr_id: str):
    filters = _filters()
    served, meter = _interval_meter(uid, meter_uid)
    start, end, flow = _meter_reading(served, meter, mr_id)
    blocks = resources.interval_blocks(meter.profile, flow, (start, end), served.window, filters)
    stop = None if filters.max_results is None else filters.start_index - 1 + filters.max_results
    blocks = itertools.islice(blocks, filters.start_index - 1, stop)
    return _stream(stream.interval_block_feed(_base(), uid, meter_uid, mr_id, blocks, updated=_now()))


@bp.get("/Subscription/<uid>/UsagePoint/<meter_uid>/MeterReading/<mr_id>/IntervalBlock/<block>")
def interval_block(uid: str, meter_uid: str, mr_id: str, block: str):
    served, meter = _interval_meter(uid, meter_uid)
    start, end, flow = _meter_reading(served, meter, mr_id)
    number = resources.parse_block_id(block)
    found = resources.interval_block(meter.profile, flow, (start, end), served.window, number) if number else None
    if found is None:
        _not_found()
    return _xml(stream.interval_block_entry(_base(), uid, meter_uid, mr_id, found))


@bp.get("/ReadingType/<rt_id>")
def reading_type(rt_id: str):
    parsed = resources.parse_reading_type_id(rt_id)
    if parsed is None:
        _not_found()
    uid, meter_uid, mr_id = parsed
    served, meter = _interval_meter(uid, meter_uid)
    _, _, flow = _meter_reading(served, meter, mr_id)
    entry = build.reading_type_element(None, _base(), uid, meter_uid, mr_id, rt_id, resources.reading_type(flow),
                                       published=served.created, updated=served.created)
    return _xml(build.entry_bytes(entry))


def _summary_meter(uid: str, meter_uid: str) -> tuple[Served, resources.ServedMeter]:
    served = _served(uid, data=True)
    meter = _meter(served, meter_uid)
    _scope(served.usage_summary, "UsageSummary (bills)", 16)
    return served, meter


@bp.get("/Subscription/<uid>/UsagePoint/<meter_uid>/UsageSummary")
def usage_summaries(uid: str, meter_uid: str):
    filters = _filters()
    served, meter = _summary_meter(uid, meter_uid)
    summaries = filters.page(resources.usage_summaries(served, meter, filters))
    return _xml(build.usage_summary_feed(_base(), uid, meter_uid, summaries, updated=_now()))


@bp.get("/Subscription/<uid>/UsagePoint/<meter_uid>/UsageSummary/<summary_id>")
def usage_summary(uid: str, meter_uid: str, summary_id: str):
    served, meter = _summary_meter(uid, meter_uid)
    found = next((us for us in resources.usage_summaries(served, meter) if us.id == summary_id), None)
    if found is None:
        _not_found()
    return _xml(build.entry_bytes(build.usage_summary_element(None, _base(), uid, meter_uid, found)))


@bp.get("/Subscription/<uid>/UsagePoint/<meter_uid>/ElectricPowerQualitySummary")
def quality_summaries(uid: str, meter_uid: str):
    served = _served(uid, data=True)
    _meter(served, meter_uid)
    return _xml(build.empty_feed(_base(), f"{build.usage_point_path(uid, meter_uid)}/ElectricPowerQualitySummary",
                                 "ElectricPowerQualitySummary", updated=_now()))


# ---------------------------------------------------------------- RetailCustomer (FB 51)


def _customer(uid: str, *, data: bool) -> tuple[Served, build.CustomerResource]:
    served = _served(uid, data=data)
    _scope(served.customer_data, "RetailCustomer (account details)", 51)
    cust = resources.customer_resource(served)
    if cust is None:
        _not_found()
    return served, cust


@bp.get("/Batch/RetailCustomer/<uid>")
@bp.get("/RetailCustomer/<uid>")
def batch_retail_customer(uid: str):
    served, cust = _customer(uid, data=True)
    return _xml(build.retail_customer_batch(_base(), cust, published=served.created, updated=served.created,
                                            self_path=f"Batch/RetailCustomer/{uid}"))


#: The customer tree: each level's resource type, the id that selects one, and the
#: empty feeds (resources UtilityAPI links to but does not fill) below it.
_LEVELS = ("Customer", "CustomerAccount", "CustomerAgreement", "ServiceLocation", "Meter")
_EMPTY_BELOW = {"CustomerAgreement": ("ServiceSupplier", "ProgramDateIdMappings"), "ServiceLocation": ("EndDevice",)}


@bp.get("/RetailCustomer/<uid>/<path:rest>")
def retail_customer(uid: str, rest: str):
    """``Customer[/{id}[/CustomerAccount[/{id}[/CustomerAgreement[/{meter}[/ServiceLocation[/{id}[/Meter[/{id}]]]]]]]]]``
    plus the empty ServiceSupplier, ProgramDateIdMappings and EndDevice feeds."""
    served, cust = _customer(uid, data=False)
    segments = rest.strip("/").split("/")
    base, path = _base(), f"RetailCustomer/{uid}"
    agreement = None
    for depth, kind in enumerate(_LEVELS):
        i = 2 * depth
        if i >= len(segments) or segments[i] != kind:
            empty = _EMPTY_BELOW.get(_LEVELS[depth - 1]) if depth else None
            if empty and i == len(segments) - 1 and segments[i] in empty:
                return _xml(build.customer_feed(base, cust, segments[i], f"{path}/{segments[i]}", [],
                                                published=served.created, updated=served.created))
            _not_found()
        path = f"{path}/{kind}"
        if i == len(segments) - 1:     # the feed of this level
            picks = [agreement] if kind not in ("CustomerAgreement",) else list(cust.agreements)
            return _xml(build.customer_feed(base, cust, kind, path, picks, published=served.created,
                                            updated=served.created))
        ident = segments[i + 1]
        if kind == "CustomerAgreement":
            agreement = next((a for a in cust.agreements if a.meter_uid == ident), None)
            if agreement is None:
                _not_found()
        elif build.customer_paths(cust, agreement)[kind].rsplit("/", 1)[1] != ident:
            _not_found()
        path = f"{path}/{ident}"
        if i + 1 == len(segments) - 1:   # one entry
            return _xml(build.customer_entry(base, cust, kind, agreement, published=served.created,
                                             updated=served.created))
    _not_found()

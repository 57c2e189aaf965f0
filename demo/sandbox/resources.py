"""What the sandbox serves over ESPI, as framework-free models: the resource
base, the Authorization resource of a stored authorization, its meters'
UsagePoints, their interval data and bills (from :mod:`.meterdata`), the retail
customer (FB 51), the registration (ApplicationInformation), ids and the
``published``/``updated`` query filters.

Everything an ESPI response needs is loaded into :class:`Served` first, so the
Flask view can close its database session before a long feed is streamed.

**Windows.** An authorization's data runs over
``meterdata.data_window(history_start, min(now, authorized_end))`` (the JSON
API uses the same window, so both show the same readings and bills). Every
IntervalBlock is one Pacific local day, published (and updated) at the day's
end; every UsageSummary is one bill, published at its period's end. The
``published-*``/``updated-*`` filters keep the blocks and bills whose time lies
inside them; structural entries are always present.

**MeterReading ids** carry their window, ``{meter}-{windowEnd}-{windowStart}_kwh_{flow}``
(reference §4.3): the data window narrowed to the days the filters keep. A
MeterReading's IntervalBlocks are numbered ``000001``... from its window start,
so any id handed out stays resolvable later.
"""
from __future__ import annotations

import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import bindparam, select

from ..espi.build import AgreementResource, CustomerResource, MeterResource
from ..espi.model import (
    Address,
    ApplicationInformation,
    Authorization,
    CostDetail,
    DateTimeInterval,
    IntervalBlock,
    LocalTimeParameters,
    ReadingType,
    SummaryMeasurement,
    UsageSummary,
)
from ..espi.stream import MeterReadingData, UsagePointData
from ..lookup import Customer, Meter
from ..scope import ScopeError, parse_scope
from . import lifecycle, meterdata
from .credentials import ACCESS, Credential, bulk_id
from .lifecycle import ERRORED_BEHAVIOURS
from .models import AuthorizationRow, ClientRow, MeterRow

__all__ = ["bulk_id"]  # re-exported: the client_credentials token response points at Batch/Bulk/{bulk_id}

RESOURCE_PATH = "/DataCustodian/espi/1_1/resource"
#: US Pacific time, as UtilityAPI sends it for PCE (reference §3.4).
PACIFIC = LocalTimeParameters(tz_offset=-28800, dst_offset=3600, dst_start_rule="360E2000",
                              dst_end_rule="B40E2000")
DATA_CUSTODIAN_ID = "PCE"
#: 2100-01-01: no window or filter reaches past it (ids are checked, filters clamped)
MAX_EPOCH = 4_102_444_800


def resource_base(sandbox_url: str) -> str:
    return sandbox_url.rstrip("/") + RESOURCE_PATH


# ---------------------------------------------------------------- scope


def function_blocks(scope: str) -> frozenset[int]:
    try:
        return frozenset(parse_scope(scope).function_blocks)
    except ScopeError:
        return frozenset()


def grants_customer_data(scope: str) -> bool:
    """FB 51 (retail customer; 46 is its legacy alias) in a granted scope."""
    return bool({46, 51} & function_blocks(scope))


# ---------------------------------------------------------------- Authorization and UsagePoints


def espi_authorization(row: AuthorizationRow, base: str) -> Authorization:
    """The ESPI Authorization resource, with UtilityAPI's Batch/ URIs (the CITY-P capture)."""
    end = row.authorized_end
    return Authorization(
        uid=row.uid,
        status=row.status,
        scope=row.scope,
        token_type="Bearer",
        authorized_period=DateTimeInterval(row.authorized_start, max(0, end - row.authorized_start) if end else 0),
        published_period=DateTimeInterval(row.history_start, row.authorized_start - row.history_start),
        expires_at=end or None,
        grant_type="authorization_code",
        resource_uri=f"{base}/Batch/Subscription/{row.uid}",
        authorization_uri=f"{base}/Authorization/{row.uid}",
        customer_resource_uri=f"{base}/Batch/RetailCustomer/{row.uid}" if grants_customer_data(row.scope) else None,
    )


def service_meter(customer: Customer | None, meter: MeterRow) -> Meter | None:
    """The customer-directory meter behind an authorization's meter."""
    for m in customer.meters if customer else ():
        if m.uid == meter.service_uid:
            return m
    return None


def meter_resource(uid: str, service: Meter) -> MeterResource:
    return MeterResource(uid=uid, tariff=service.service_tariff, service_kind=service.service_kind,
                         title=service.service_address, local_time=PACIFIC)


def meter_resources(customer: Customer | None, meters: list[MeterRow]) -> list[MeterResource]:
    """The shared meters as UsagePoints (id = the authorization's meter uid), in the customer's order."""
    resources = []
    for meter in meters:
        m = service_meter(customer, meter)
        if m is not None:
            resources.append(meter_resource(meter.uid, m))
    return resources


# ---------------------------------------------------------------- query filters


class FilterError(ValueError):
    """A query parameter the API cannot use (-> 400 with this message)."""


_OFFSET_SPACE = re.compile(r" (\d\d:?\d\d)$")


def parse_time(name: str, text: str) -> int:
    """ISO 8601 with a UTC offset or ``Z`` -> epoch seconds.

    A ``+`` that arrived as a space (an unencoded query string) is put back.
    """
    value = _OFFSET_SPACE.sub(r"+\1", text.strip())
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise FilterError(f"{name}={text!r} is not an ISO 8601 date-time; use e.g. "
                          "2024-09-03T00:00:00Z or 2024-09-03T00:00:00-07:00.") from None
    if when.tzinfo is None:
        raise FilterError(f"{name}={text!r} has no time zone; add Z or a UTC offset like -07:00.")
    return int(when.timestamp())


def _positive(name: str, text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise FilterError(f"{name}={text!r} is not a whole number.") from None
    if value < minimum:
        raise FilterError(f"{name} must be at least {minimum}.")
    return min(value, 10**9)   # more than any feed holds


@dataclass(frozen=True)
class Filters:
    """The ESPI query parameters. The sandbox's data entries have equal published and
    updated times, so both ranges narrow the same time: [``low``, ``high``]."""

    published_min: int | None = None
    published_max: int | None = None
    updated_min: int | None = None
    updated_max: int | None = None
    max_results: int | None = None
    start_index: int = 1

    @property
    def low(self) -> int | None:
        values = [v for v in (self.published_min, self.updated_min) if v is not None]
        return max(values) if values else None

    @property
    def high(self) -> int | None:
        values = [v for v in (self.published_max, self.updated_max) if v is not None]
        return min(values) if values else None

    def admits(self, when: int) -> bool:
        low, high = self.low, self.high
        return (low is None or when >= low) and (high is None or when <= high)

    def page(self, items: list) -> list:
        """``start-index`` (1-based) and ``max-results`` applied to a list of entries."""
        items = items[self.start_index - 1:]
        return items if self.max_results is None else items[: self.max_results]


NO_FILTERS = Filters()


def parse_filters(args: Mapping[str, str]) -> Filters:
    """``published-min``, ``published-max``, ``updated-min``, ``updated-max``,
    ``max-results``, ``start-index``; raises :class:`FilterError` for a bad value."""
    times = {}
    for name in ("published-min", "published-max", "updated-min", "updated-max"):
        text = args.get(name)
        if text is not None and text.strip():
            times[name.replace("-", "_")] = parse_time(name, text)
    max_results = args.get("max-results")
    start_index = args.get("start-index")
    filters = Filters(
        **times,
        max_results=_positive("max-results", max_results, 0) if max_results not in (None, "") else None,
        start_index=_positive("start-index", start_index, 1) if start_index not in (None, "") else 1,
    )
    for low, high in (("published_min", "published_max"), ("updated_min", "updated_max")):
        a, b = getattr(filters, low), getattr(filters, high)
        if a is not None and b is not None and a > b:
            raise FilterError(f"{low.replace('_', '-')} is after {high.replace('_', '-')}.")
    return filters


# ---------------------------------------------------------------- ids


def meter_reading_id(meter_uid: str, window_start: int, window_end: int, flow: int) -> str:
    """``{meterUid}-{windowEnd}-{windowStart}_kwh_{flowDirection}`` (reference §4.3)."""
    return f"{meter_uid}-{window_end}-{window_start}_kwh_{flow}"


def parse_meter_reading_id(meter_uid: str, text: str) -> tuple[int, int, int] | None:
    """(window start, window end, flow) of a MeterReading id of this meter, else None."""
    match = re.fullmatch(re.escape(meter_uid) + r"-(\d{1,12})-(\d{1,12})_kwh_(1|19)", text)
    if not match:
        return None
    end, start, flow = (int(g) for g in match.groups())
    return (start, end, flow) if start <= end <= MAX_EPOCH else None


def reading_type_id(subscription_uid: str, meter_uid: str, meter_reading: str) -> str:
    """``{authUid}_{meterUid}_{meterReadingId}`` (reference §4.3)."""
    return f"{subscription_uid}_{meter_uid}_{meter_reading}"


def parse_reading_type_id(text: str) -> tuple[str, str, str] | None:
    parts = text.split("_", 2)
    if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return parts[0], parts[1], parts[2]


def block_id(number: int) -> str:
    """IntervalBlock ids are zero-padded counters (``000001``)."""
    return f"{number:06d}"


def parse_block_id(text: str) -> int | None:
    return int(text) if text.isdigit() and 0 < int(text) < 10**7 else None


def customer_uuid(*parts: str) -> str:
    """Version-5 UUIDs for the customer resources, stable per authorization (reference §4.3)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(("gbc-demo", *parts))))


def application_id(client_id: str) -> str:
    """The client's ApplicationInformation id: numeric-looking and stable."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ApplicationInformation/{client_id}").int % 9_000_000 + 1_000_000)


# ---------------------------------------------------------------- windows


def _floor_midnight(ts: int) -> int:
    """The local midnight at or before ``ts``."""
    return meterdata.midnight(meterdata.local_date(ts))


def filtered_window(window: tuple[int, int], filters: Filters) -> tuple[int, int]:
    """The part of ``window`` whose days the filters keep (a day is published at its end)."""
    start, end = window
    if filters.low is not None:   # the day that ends at or after low
        start = max(start, _floor_midnight(min(max(filters.low, 1), MAX_EPOCH) - 1))
    if filters.high is not None:  # days that end at or before high
        end = min(end, _floor_midnight(min(max(filters.high, 0), MAX_EPOCH)))
    return (start, end) if start <= end else (end, end)


# ---------------------------------------------------------------- one authorization, loaded


@dataclass(frozen=True)
class ServedMeter:
    uid: str                          # the UsagePoint id (the authorization's meter uid)
    service: Meter
    profile: meterdata.MeterProfile
    resource: MeterResource


@dataclass(frozen=True)
class Served:
    """One authorization as the ESPI API serves it: plain values, no database session."""

    uid: str
    client_id: str
    scope: str
    status: int
    created: datetime                 # aware UTC: structural entries' published/updated
    account_number: str
    customer: Customer | None
    meters: tuple[ServedMeter, ...]
    window: tuple[int, int] | None    # collected data [start, end); None: collection failed
    intervals: bool                   # False for the nointervals test behaviour

    @property
    def blocks(self) -> frozenset[int]:
        return function_blocks(self.scope)

    @property
    def interval_metering(self) -> bool:
        return 4 in self.blocks

    @property
    def usage_summary(self) -> bool:
        return 16 in self.blocks

    @property
    def customer_data(self) -> bool:
        return bool({46, 51} & self.blocks)

    def meter(self, uid: str) -> ServedMeter | None:
        return next((m for m in self.meters if m.uid == uid), None)


def authorization_window(row: AuthorizationRow, now: int) -> tuple[int, int] | None:
    """Collected data ``[start, end)``: from the publishedPeriod start through yesterday
    (or the authorization's end); None when the test behaviour's collection failed."""
    if row.behaviour in ERRORED_BEHAVIOURS:
        return None
    until = min(now, row.authorized_end) if row.authorized_end else now
    return meterdata.data_window(row.history_start, until)


class NotServed(Exception):
    """The request is answered with an error: ``status`` 404 (not yours, unknown, no longer
    active) or 202 (``retry_after`` seconds until the data is collected)."""

    def __init__(self, status: int, retry_after: int = 0) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


#: the authorization with its meters in one statement (one row per meter, in their order;
#: one row with no meter when it has none)
_AUTHORIZATION_AND_METERS = (select(AuthorizationRow, MeterRow)
                             .outerjoin(MeterRow, MeterRow.authorization_uid == AuthorizationRow.uid)
                             .where(AuthorizationRow.uid == bindparam("uid"))
                             .order_by(MeterRow.position))


def serve(s, cred: Credential, uid: str, customer_of, now: datetime, *, data: bool) -> Served:
    """The authorization ``uid`` as ``cred`` may read it (an access token: only its own; an API
    token: any of its client's), active and unexpired; with ``data``, only once collected.
    ``customer_of(account_number)`` finds the directory customer. Raises :class:`NotServed`."""
    rows = s.execute(_AUTHORIZATION_AND_METERS, {"uid": uid}).all() if len(uid) <= 64 else []
    row = rows[0][0] if rows else None
    if row is None or row.client_id != cred.client_id:
        raise NotServed(404)
    if cred.kind == ACCESS and cred.authorization_uid != uid:
        raise NotServed(404)
    if row.status != 1 or lifecycle.is_expired(row, now):
        raise NotServed(404)
    if data:
        wait = lifecycle.seconds_until_ready(row, now)
        if wait > 0:
            raise NotServed(202, wait)
    return load(row, [meter for _, meter in rows if meter is not None], customer_of(row.account_number),
                int(now.replace(tzinfo=UTC).timestamp()))


def load(row: AuthorizationRow, meters: list[MeterRow], customer: Customer | None, now: int) -> Served:
    """Everything needed to answer for ``row``, copied out of the ORM rows."""
    served = []
    for meter in meters:
        service = service_meter(customer, meter)
        if service is None:
            continue
        served.append(ServedMeter(meter.uid, service, meterdata.profile(customer, service),
                                  meter_resource(meter.uid, service)))
    return Served(uid=row.uid, client_id=row.client_id, scope=row.scope, status=row.status,
                  created=row.created.replace(tzinfo=UTC), account_number=row.account_number, customer=customer,
                  meters=tuple(served), window=authorization_window(row, now),
                  intervals=row.behaviour != "nointervals")


# ---------------------------------------------------------------- interval data


def flows(served: Served, meter: ServedMeter) -> tuple[int, ...]:
    """The flow directions served for a meter: none without FB 4 or interval data."""
    if not served.interval_metering or not served.intervals or served.window is None:
        return ()
    return meter.profile.flows


def meter_readings(served: Served, meter: ServedMeter, filters: Filters = NO_FILTERS
                   ) -> list[tuple[str, str, int, tuple[int, int]]]:
    """(MeterReading id, ReadingType id, flow, window) per flow direction."""
    out = []
    for flow in flows(served, meter):
        window = filtered_window(served.window, filters)
        mr = meter_reading_id(meter.uid, window[0], window[1], flow)
        out.append((mr, reading_type_id(served.uid, meter.uid, mr), flow, window))
    return out


_FAR_PAST, _FAR_FUTURE = -(2**62), 2**62


def _first_day(window_start: int) -> date:
    """The local date of the first midnight at or after ``window_start`` (block 000001's day)."""
    first = meterdata.local_date(window_start)
    return first if meterdata.midnight(first) >= window_start else first + timedelta(days=1)


def interval_blocks(profile: meterdata.MeterProfile, flow: int, meter_reading_window: tuple[int, int],
                    allowed: tuple[int, int], filters: Filters = NO_FILTERS) -> Iterator[IntervalBlock]:
    """Daily IntervalBlocks of a MeterReading, numbered from its window's first day; only
    the days inside ``allowed`` (the collected data) that the filters keep. Lazy: one day
    of values at a time, and only the days that are served are ever looked at."""
    start = max(meter_reading_window[0], allowed[0])
    end = min(meter_reading_window[1], allowed[1])
    start, end = filtered_window((start, end), filters)
    first = _first_day(meter_reading_window[0]).toordinal()
    days = meterdata.day_starts(start, end)
    for i, day_start in enumerate(days):
        day = meterdata.local_date(day_start)
        day_end = days[i + 1] if i + 1 < len(days) else meterdata.midnight(day + timedelta(days=1))
        if day_end > end or not filters.admits(day_end):   # whole local days only
            continue
        number = day.toordinal() - first + 1
        yield IntervalBlock(id=block_id(number), start=day_start, duration=day_end - day_start,
                            values=meterdata.day_values(profile, flow, day_start, day_end), published=day_end,
                            interval_length=meterdata.INTERVAL)


def interval_block(profile: meterdata.MeterProfile, flow: int, meter_reading_window: tuple[int, int],
                   allowed: tuple[int, int], number: int) -> IntervalBlock | None:
    """Block ``number`` (1-based day of the MeterReading's window), if it is collected data."""
    ordinal = _first_day(meter_reading_window[0]).toordinal() + number - 1
    if ordinal >= date(2100, 1, 1).toordinal():
        return None
    day = date.fromordinal(ordinal)
    start, end = meterdata.midnight(day), meterdata.midnight(day + timedelta(days=1))
    if start < max(allowed[0], meter_reading_window[0]) or end > min(allowed[1], meter_reading_window[1]):
        return None
    return IntervalBlock(id=block_id(number), start=start, duration=end - start,
                         values=meterdata.day_values(profile, flow, start, end), published=end)


def reading_type(flow: int) -> ReadingType:
    return ReadingType(flow_direction=flow, interval_length=meterdata.INTERVAL)


# ---------------------------------------------------------------- bills


def _cost_detail(item: meterdata.LineItem, bill: meterdata.Bill) -> CostDetail:
    """A meterdata line item as UtilityAPI writes it: energy in Wh x 10^-3, demand in
    W x 10^-3, fixed charges with the period length in seconds, taxes bare."""
    if item.kind == "fixed":
        measurement = SummaryMeasurement(uom=27, power_of_ten_multiplier=0, value=bill.end - bill.start,
                                         time_stamp=bill.start)
    elif item.kind == "demand" and item.demand_kw is not None:
        measurement = SummaryMeasurement(uom=38, power_of_ten_multiplier=-3, value=round(item.demand_kw * 1e6),
                                         time_stamp=bill.start)
    elif item.volume_kwh is not None and item.kind != "tax":
        measurement = SummaryMeasurement(uom=72, power_of_ten_multiplier=-3, value=round(item.volume_kwh * 1e6),
                                         time_stamp=bill.start)
    else:
        measurement = None
    return CostDetail(note=item.name, amount=item.cost, date_time=bill.start, measurement=measurement)


def usage_summary(bill: meterdata.Bill, tariff: str) -> UsageSummary:
    return UsageSummary(
        id=bill.uid,
        billing_period=DateTimeInterval(bill.start, bill.end - bill.start),
        bill_last_period=bill.cost,
        consumption=SummaryMeasurement(uom=72, power_of_ten_multiplier=-3, value=bill.consumption,
                                       time_stamp=bill.end),
        status_time_stamp=bill.end,
        published=bill.end,
        line_items=tuple(_cost_detail(item, bill) for item in bill.line_items),
        tariff_profile=tariff,
    )


def usage_summaries(served: Served, meter: ServedMeter, filters: Filters = NO_FILTERS) -> list[UsageSummary]:
    """The meter's bills inside the collected data that the filters keep, oldest first."""
    if not served.usage_summary or served.window is None:
        return []
    return [usage_summary(bill, meter.service.service_tariff)
            for bill in meterdata.bills(meter.profile, *served.window) if filters.admits(bill.end)]


# ---------------------------------------------------------------- batches


def _lazy_summaries(served: Served, meter: ServedMeter, filters: Filters) -> Iterator[UsageSummary]:
    yield from usage_summaries(served, meter, filters)


def usage_point_data(served: Served, meter: ServedMeter, filters: Filters = NO_FILTERS) -> UsagePointData:
    """One meter's part of a batch feed, with lazily generated IntervalBlocks."""
    readings = []
    for mr, rt, flow, window in meter_readings(served, meter, filters):
        readings.append(MeterReadingData(mr, rt, reading_type(flow),
                                         interval_blocks(meter.profile, flow, window, served.window, filters)))
    # lazy: written after the IntervalBlocks, whose days leave their totals cached for the bills
    summaries = _lazy_summaries(served, meter, filters) if served.usage_summary else None
    return UsagePointData(subscription_uid=served.uid, meter=meter.resource, published=served.created,
                          updated=served.created, readings=readings, summaries=summaries,
                          interval_metering=served.interval_metering)


def subscription_data(served: Served, filters: Filters = NO_FILTERS,
                      meters: tuple[ServedMeter, ...] | None = None) -> Iterator[UsagePointData]:
    """Every meter's batch part, built one meter at a time while the feed streams."""
    for meter in served.meters if meters is None else meters:
        yield usage_point_data(served, meter, filters)


# ---------------------------------------------------------------- RetailCustomer


_ADDRESS = re.compile(r"^(?P<street>.+?),\s*(?P<town>[^,]+?)\s+(?P<state>[A-Z]{2})\s+(?P<zip>\d{5}(?:-\d{4})?)$")


def parse_address(text: str) -> Address:
    """``"1420 OAK GROVE AVE, SAN MATEO CA 94402"`` -> street, town, state, postal code."""
    match = _ADDRESS.match(" ".join(text.split()))
    if not match:
        return Address(street=text)
    return Address(match["street"], match["town"], match["state"], match["zip"])


def customer_resource(served: Served) -> CustomerResource | None:
    """The authorization's retail customer: the account holder and one agreement per shared meter."""
    customer = served.customer
    if customer is None:
        return None
    agreements = tuple(
        AgreementResource(meter_uid=m.uid, agreement_id=m.service.service_identifier,
                          location_id=customer_uuid(served.uid, "ServiceLocation", m.uid),
                          address=parse_address(m.service.service_address),
                          meter_id=customer_uuid(served.uid, "Meter", m.uid),
                          serial_number=m.service.meter_number, local_time=PACIFIC)
        for m in served.meters)
    return CustomerResource(
        authorization_uid=served.uid,
        customer_id=customer_uuid(served.uid, "Customer"),
        name=customer.name,
        kind="commercialIndustrial" if customer.customer_kind == "commercial" else "residential",
        address=parse_address(customer.billing_address),
        account_id=customer_uuid(served.uid, "CustomerAccount", customer.account_number),
        account_number=customer.account_number,
        agreements=agreements,
    )


# ---------------------------------------------------------------- ApplicationInformation


def application_information(client: ClientRow, settings: Mapping) -> ApplicationInformation:
    """A registration as its ApplicationInformation (reference §1.1, §4.2)."""
    sandbox = settings["sandbox_url"].rstrip("/")
    base = resource_base(sandbox)
    app_id = application_id(client.client_id)
    issued = int(client.secret_rotated.replace(tzinfo=UTC).timestamp()) if client.secret_rotated else 0
    live = client.mode == "live"
    return ApplicationInformation(
        id=app_id,
        data_custodian_id=str(settings.get("utility") or DATA_CUSTODIAN_ID),
        client_id=client.client_id,
        client_name=client.company_name,
        redirect_uris=tuple(client.redirect_uris or ()),
        scope=("FB=4_16_51", "FB=1_3_14_32"),
        authorization_endpoint=f"{sandbox}/oauth/authorize",
        token_endpoint=f"{sandbox}/oauth/token",
        resource_endpoint=base,
        bulk_request_uri=f"{base}/Batch/Bulk/{bulk_id(client.client_id)}",
        # required by espi.xsd; UtilityAPI registrations have no ESPI notify URI (webhooks instead)
        notify_uri=client.company_website or next(iter(client.redirect_uris or ()), f"{sandbox}/"),
        registration_client_uri=f"{base}/ApplicationInformation/{app_id}",
        client_uri=client.company_website or None,
        description=client.scope_of_use or None,
        client_id_issued_at=issued,
        data_custodian_status=2 if live else 1,
        third_party_status=3 if live else 2,
    )

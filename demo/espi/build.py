"""Write Green Button (ESPI) Atom XML the way UtilityAPI serves it.

Used by the embedded PCE sandbox. Shapes mirror real UtilityAPI captures
(``eddie/Batch.xml``, ``cityssm-parser/entryOnly.xml``, the 2026 commercial
capture): Atom is the default namespace of the feed/entry, each ``<content>``
holds one resource in the default ESPI namespace, links carry
``espi-entry/X`` / ``espi-feed/X`` types, and ESPI elements follow the
espi.xsd 4.0 sequence order so every content child validates.

Output is deterministic for equal inputs: Atom ids are version-5 UUIDs of the
resource's path relative to ``resource_base`` (so they do not change with the
host name), and timestamps are whole-second UTC (``YYYY-MM-DDTHH:MM:SSZ``).

Every resource of the subscription tree has an ``*_element`` builder that
appends its ``<entry>`` to a feed (or makes a bare entry when the parent is
None); :mod:`demo.espi.stream` serializes those one by one to stream big feeds
and writes IntervalBlocks from string templates. Customer (FB 51) resources
live in the customer namespace with ``cust-entry``/``cust-feed`` link types and
the envelope of UtilityAPI's RetailCustomer capture (``author``, ``dc:date``).
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from .model import (
    Address,
    ApplicationInformation,
    Authorization,
    DateTimeInterval,
    LocalTimeParameters,
    ReadingType,
    SummaryMeasurement,
    UsageSummary,
)

ATOM_NS = "http://www.w3.org/2005/Atom"
ESPI_NS = "http://naesb.org/espi"
CUST_NS = "http://naesb.org/espi/customer"
DC_NS = "http://purl.org/dc/elements/1.1/"
CERT_LINK = "https://cert.greenbuttonalliance.org/certificate/52df5b79-f375-54b4-9eca-3ab0fa6fd45b"

_A = "{%s}" % ATOM_NS
_E = "{%s}" % ESPI_NS
_C = "{%s}" % CUST_NS
_DC = "{%s}" % DC_NS
_XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'


def atom_id(*parts: str) -> str:
    """Deterministic Atom id: ``urn:uuid:`` + uuid5(NAMESPACE_URL, "/".join(parts))."""
    return "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "/".join(parts)))


@dataclass(frozen=True)
class MeterResource:
    """What the sandbox knows about one meter when writing its UsagePoint."""

    uid: str
    tariff: str
    service_kind: int = 0
    title: str | None = None
    local_time: LocalTimeParameters = LocalTimeParameters(-28800)  # PCE: US Pacific


# ---------------------------------------------------------------- helpers


def _ts(value: datetime) -> str:
    """UTC ``YYYY-MM-DDTHH:MM:SSZ``; a naive datetime is taken to be UTC already."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _base(resource_base: str) -> str:
    return resource_base.rstrip("/")


def _link(parent: etree._Element, rel: str, href: str, type_: str) -> None:
    etree.SubElement(parent, _A + "link", rel=rel, href=href, type=type_)


def _text_el(parent: etree._Element, tag: str, text: str) -> etree._Element:
    el = etree.SubElement(parent, tag)
    el.text = text
    return el


def _feed(base: str, self_path: str, feed_type: str, title: str, updated: datetime) -> etree._Element:
    """A ``<feed>`` with id, self link, certificate link, title and updated (capture order)."""
    feed = etree.Element(_A + "feed", nsmap={None: ATOM_NS})
    _text_el(feed, _A + "id", atom_id(self_path))
    _link(feed, "self", f"{base}/{self_path}", f"espi-feed/{feed_type}")
    _link(feed, "related", CERT_LINK, "text/html")
    _text_el(feed, _A + "title", title)
    _text_el(feed, _A + "updated", _ts(updated))
    return feed


def _entry(
    parent: etree._Element | None,
    base: str,
    *,
    kind: str,
    self_path: str,
    up_path: str,
    related: Iterable[tuple[str, str]] = (),
    title: str | None = None,
    published: datetime,
    updated: datetime,
    content_type: str | None = "atom+xml",
) -> tuple[etree._Element, etree._Element]:
    """Append an ``<entry>`` to ``parent`` (or make a bare one when ``parent`` is None).

    ``self_path``/``up_path`` are relative to ``base``; ``related`` holds
    ``(href, type)`` pairs with absolute hrefs. Returns ``(entry, content)``.
    """
    if parent is None:
        entry = etree.Element(_A + "entry", nsmap={None: ATOM_NS})
    else:
        entry = etree.SubElement(parent, _A + "entry")
    _text_el(entry, _A + "id", atom_id(self_path))
    _link(entry, "self", f"{base}/{self_path}", f"espi-entry/{kind}")
    _link(entry, "up", f"{base}/{up_path}", f"espi-feed/{kind}")
    for href, type_ in related:
        _link(entry, "related", href, type_)
    _text_el(entry, _A + "published", _ts(published))
    _text_el(entry, _A + "updated", _ts(updated))
    _text_el(entry, _A + "title", title or kind)
    content = etree.SubElement(entry, _A + "content")
    if content_type:
        content.set("type", content_type)
    return entry, content


def _payload(content: etree._Element, name: str, ns: str = ESPI_NS) -> etree._Element:
    """The resource element inside ``<content>``, declaring ``ns`` as its default namespace."""
    return etree.SubElement(content, "{%s}%s" % (ns, name), nsmap={None: ns})


def _sub(parent: etree._Element, name: str, value: object) -> etree._Element:
    """An ESPI child element with ``str(value)`` as text."""
    return _text_el(parent, _E + name, str(value))


def _interval(parent: etree._Element, name: str, interval: DateTimeInterval) -> None:
    el = etree.SubElement(parent, _E + name)
    _sub(el, "duration", interval.duration)
    _sub(el, "start", interval.start)


def _to_bytes(root: etree._Element) -> bytes:
    return _XML_DECLARATION + etree.tostring(root, encoding="UTF-8", pretty_print=True)


# ---------------------------------------------------------------- Authorization


def _authorization(parent: etree._Element | None, base: str, auth: Authorization, *,
                   published: datetime, updated: datetime) -> etree._Element:
    entry, content = _entry(
        parent, base,
        kind="Authorization",
        self_path=f"Authorization/{auth.uid}",
        up_path="Authorization",
        related=[(CERT_LINK, "text/html")],
        published=published,
        updated=updated,
        content_type=None,  # entryOnly.xml has a bare <content>
    )
    el = _payload(content, "Authorization")
    # espi.xsd sequence: authorizedPeriod, publishedPeriod, (access_token), status,
    # expires_at, grant_type, (refresh_token), scope, token_type, (error...),
    # resourceURI, authorizationURI, customerResourceURI.
    if auth.authorized_period is not None:
        _interval(el, "authorizedPeriod", auth.authorized_period)
    if auth.published_period is not None:
        _interval(el, "publishedPeriod", auth.published_period)
    _sub(el, "status", auth.status)
    if auth.expires_at is not None:  # required by espi.xsd; omitted only when unknown
        _sub(el, "expires_at", auth.expires_at)
    if auth.grant_type:
        _sub(el, "grant_type", auth.grant_type)
    _sub(el, "scope", auth.scope)
    _sub(el, "token_type", auth.token_type)
    _sub(el, "resourceURI", auth.resource_uri or f"{base}/Batch/Subscription/{auth.uid}")
    _sub(el, "authorizationURI", auth.authorization_uri or f"{base}/Authorization/{auth.uid}")
    if auth.customer_resource_uri:
        _sub(el, "customerResourceURI", auth.customer_resource_uri)
    return entry


def authorization_entry(resource_base: str, auth: Authorization, *,
                        updated: datetime, published: datetime) -> bytes:
    """A bare Authorization ``<entry>`` (``GET R/Authorization/{uid}``).

    ``resourceURI`` and ``authorizationURI`` default to
    ``{base}/Batch/Subscription/{uid}`` and ``{base}/Authorization/{uid}``.
    """
    base = _base(resource_base)
    return _to_bytes(_authorization(None, base, auth, published=published, updated=updated))


def authorization_feed(resource_base: str, auths: list[Authorization], *,
                       updated: datetime, published: datetime | None = None) -> bytes:
    """Feed of Authorization entries (``GET R/Authorization``); may be empty.

    Entries use ``published`` (default: ``updated``) as their published time.
    """
    base = _base(resource_base)
    feed = _feed(base, "Authorization", "Authorization", "Authorization", updated)
    for auth in auths:
        _authorization(feed, base, auth, published=published or updated, updated=updated)
    return _to_bytes(feed)


# ---------------------------------------------------------------- Batch/Subscription


def usage_point_path(subscription_uid: str, meter_uid: str) -> str:
    """``Subscription/{sub}/UsagePoint/{uid}``, relative to the resource base."""
    return f"Subscription/{subscription_uid}/UsagePoint/{meter_uid}"


def local_time_path(subscription_uid: str, meter_uid: str) -> str:
    """``LocalTimeParameters/TIMEZONE_{sub}_{uid}``, relative to the resource base."""
    return f"LocalTimeParameters/TIMEZONE_{subscription_uid}_{meter_uid}"


def _usage_point(feed: etree._Element, base: str, sub: str, meter: MeterResource, *,
                 published: datetime, updated: datetime) -> None:
    usage_point_element(feed, base, sub, meter, published=published, updated=updated)
    local_time_element(feed, base, sub, meter, published=published, updated=updated)


def batch_subscription_feed(resource_base: str, subscription_uid: str, meters: list[MeterResource], *,
                            updated: datetime, published: datetime) -> bytes:
    """``GET R/Batch/Subscription/{sub}``: per meter a UsagePoint entry, then its
    LocalTimeParameters entry (meter data entries are not written yet)."""
    base = _base(resource_base)
    feed = _feed(base, f"Batch/Subscription/{subscription_uid}", "Subscription", "Subscription", updated)
    for meter in meters:
        _usage_point(feed, base, subscription_uid, meter, published=published, updated=updated)
    return _to_bytes(feed)


# ---------------------------------------------------------------- the subscription tree, entry by entry
#
# Ids and links as reference §4.3/§4.4: the UsagePoint id is the meter uid, one
# MeterReading per flow direction ``{meter}-{windowEnd}-{windowStart}_kwh_{flow}``,
# its ReadingType ``{sub}_{meter}_{meterReading}``, IntervalBlocks numbered
# ``000001``..., LocalTimeParameters ``TIMEZONE_{sub}_{meter}``.


def meter_reading_path(sub: str, meter_uid: str, meter_reading_id: str) -> str:
    return f"{usage_point_path(sub, meter_uid)}/MeterReading/{meter_reading_id}"


def reading_type_path(reading_type_id: str) -> str:
    return f"ReadingType/{reading_type_id}"


def usage_summary_path(sub: str, meter_uid: str, summary_id: str) -> str:
    return f"{usage_point_path(sub, meter_uid)}/UsageSummary/{summary_id}"


def usage_point_element(parent: etree._Element | None, base: str, sub: str, meter: MeterResource, *,
                        published: datetime, updated: datetime, meter_reading: bool = True,
                        usage_summary: bool = True, quality_summary: bool = True) -> etree._Element:
    """A UsagePoint entry. Its related links name the feeds below it that the
    scope serves (MeterReading with FB 4, UsageSummary with FB 16), the
    ElectricPowerQualitySummary feed (outside batches, as in the UsagePoint
    capture) and its LocalTimeParameters."""
    up_path = usage_point_path(sub, meter.uid)
    related = []
    if meter_reading:
        related.append((f"{base}/{up_path}/MeterReading", "espi-feed/MeterReading"))
    if usage_summary:
        related.append((f"{base}/{up_path}/UsageSummary", "espi-feed/UsageSummary"))
    if quality_summary:
        related.append((f"{base}/{up_path}/ElectricPowerQualitySummary", "espi-feed/ElectricPowerQualitySummary"))
    related.append((f"{base}/{local_time_path(sub, meter.uid)}", "espi-entry/LocalTimeParameters"))
    entry, content = _entry(parent, base, kind="UsagePoint", self_path=up_path,
                            up_path=f"Subscription/{sub}/UsagePoint", related=related, title=meter.title,
                            published=published, updated=updated)
    el = _payload(content, "UsagePoint")
    category = etree.SubElement(el, _E + "ServiceCategory")
    _sub(category, "kind", meter.service_kind)
    # espi.xsd 4.0 spells it serviceDeliveryPoint (lower-case s), as does the 2026
    # UtilityAPI capture; the 2024 capture's ServiceDeliveryPoint fails validation.
    sdp = etree.SubElement(el, _E + "serviceDeliveryPoint")
    _sub(sdp, "tariffProfile", meter.tariff)
    return entry


def _time_configuration(el: etree._Element, lt: LocalTimeParameters, ns: str) -> None:
    for name, value in (("dstEndRule", lt.dst_end_rule), ("dstOffset", lt.dst_offset),
                        ("dstStartRule", lt.dst_start_rule), ("tzOffset", lt.tz_offset)):
        _text_el(el, "{%s}%s" % (ns, name), str(value))


def local_time_element(parent: etree._Element | None, base: str, sub: str, meter: MeterResource, *,
                       published: datetime, updated: datetime) -> etree._Element:
    entry, content = _entry(parent, base, kind="LocalTimeParameters", self_path=local_time_path(sub, meter.uid),
                            up_path="LocalTimeParameters", published=published, updated=updated)
    _time_configuration(_payload(content, "LocalTimeParameters"), meter.local_time, ESPI_NS)
    return entry


def meter_reading_element(parent: etree._Element | None, base: str, sub: str, meter_uid: str,
                          meter_reading_id: str, reading_type_id: str, *,
                          published: datetime, updated: datetime) -> etree._Element:
    """A MeterReading entry: an empty resource whose links lead to its UsagePoint,
    IntervalBlocks and ReadingType (the captures' order)."""
    path = meter_reading_path(sub, meter_uid, meter_reading_id)
    entry, content = _entry(parent, base, kind="MeterReading", self_path=path,
                            up_path=f"{usage_point_path(sub, meter_uid)}/MeterReading",
                            related=[(f"{base}/{usage_point_path(sub, meter_uid)}", "espi-entry/UsagePoint"),
                                     (f"{base}/{path}/IntervalBlock", "espi-feed/IntervalBlock"),
                                     (f"{base}/{reading_type_path(reading_type_id)}", "espi-entry/ReadingType")],
                            published=published, updated=updated)
    _payload(content, "MeterReading")
    return entry


def reading_type_element(parent: etree._Element | None, base: str, sub: str, meter_uid: str,
                         meter_reading_id: str, reading_type_id: str, reading_type: ReadingType, *,
                         published: datetime, updated: datetime) -> etree._Element:
    entry, content = _entry(parent, base, kind="ReadingType", self_path=reading_type_path(reading_type_id),
                            up_path="ReadingType",
                            related=[(f"{base}/{meter_reading_path(sub, meter_uid, meter_reading_id)}",
                                      "espi-entry/MeterReading")],
                            published=published, updated=updated)
    el = _payload(content, "ReadingType")
    rt = reading_type
    # espi.xsd sequence order
    for name, value in (("accumulationBehaviour", rt.accumulation_behaviour), ("commodity", rt.commodity),
                        ("currency", rt.currency), ("flowDirection", rt.flow_direction),
                        ("intervalLength", rt.interval_length), ("kind", rt.kind), ("phase", rt.phase),
                        ("powerOfTenMultiplier", rt.power_of_ten_multiplier), ("uom", rt.uom)):
        _sub(el, name, value)
    return entry


def _measurement(parent: etree._Element, name: str, m: SummaryMeasurement) -> None:
    el = etree.SubElement(parent, _E + name)
    _sub(el, "powerOfTenMultiplier", m.power_of_ten_multiplier)
    if m.time_stamp is not None:
        _sub(el, "timeStamp", m.time_stamp)
    _sub(el, "uom", m.uom)
    if m.value is not None:
        _sub(el, "value", m.value)


def _epoch_dt(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def usage_summary_element(parent: etree._Element | None, base: str, sub: str, meter_uid: str,
                          summary: UsageSummary) -> etree._Element:
    """A bill as UtilityAPI writes it (the 2026 commercial capture): totals in
    1/100,000 USD, one ``costAdditionalDetailLastPeriod`` per line item, the
    consumption in Wh x 10^-3, the empty demand/day shells, published when the
    bill became available."""
    related = [(f"{base}/{usage_point_path(sub, meter_uid)}", "espi-entry/UsagePoint")]
    if summary.pdf_href:
        related.append((summary.pdf_href, "application/pdf"))
    when = _epoch_dt(summary.published)
    entry, content = _entry(parent, base, kind="UsageSummary", self_path=usage_summary_path(sub, meter_uid, summary.id),
                            up_path=f"{usage_point_path(sub, meter_uid)}/UsageSummary", related=related,
                            published=when, updated=when)
    el = _payload(content, "UsageSummary")
    _interval(el, "billingPeriod", summary.billing_period)
    _sub(el, "billLastPeriod", summary.bill_last_period)
    _sub(el, "billToDate", summary.bill_last_period)
    _sub(el, "costAdditionalLastPeriod", summary.bill_last_period)
    for item in summary.line_items:
        li = etree.SubElement(el, _E + "costAdditionalDetailLastPeriod")
        _sub(li, "amount", item.amount)
        if item.date_time is not None:
            _sub(li, "dateTime", item.date_time)
        _sub(li, "note", item.note)
        if item.measurement is not None:
            _measurement(li, "measurement", item.measurement)
        _sub(li, "itemKind", item.item_kind)
    _sub(el, "currency", summary.currency)
    _measurement(el, "overallConsumptionLastPeriod", summary.consumption)
    _measurement(el, "currentBillingPeriodOverAllConsumption", summary.consumption)
    _measurement(el, "currentDayOverallConsumption", SummaryMeasurement(uom=72))
    _measurement(el, "peakDemand", SummaryMeasurement(uom=38))
    _measurement(el, "previousDayOverallConsumption", SummaryMeasurement(uom=72))
    _sub(el, "qualityOfReading", summary.quality_of_reading)
    _measurement(el, "ratchetDemand", SummaryMeasurement(uom=38))
    _interval(el, "ratchetDemandPeriod", summary.billing_period)
    _sub(el, "statusTimeStamp", summary.status_time_stamp)
    _sub(el, "commodity", summary.commodity)
    if summary.tariff_profile:
        _sub(el, "tariffProfile", summary.tariff_profile)
    return entry


def entry_bytes(entry: etree._Element) -> bytes:
    """A bare entry as a document (XML declaration, Atom default namespace)."""
    return _to_bytes(entry)


def feed_bytes(resource_base: str, self_path: str, feed_type: str, title: str, updated: datetime,
               add_entries: Callable[[etree._Element, str], None]) -> bytes:
    """A small feed built in memory: ``add_entries(feed, base)`` appends the entries."""
    base = _base(resource_base)
    feed = _feed(base, self_path, feed_type, title, updated)
    add_entries(feed, base)
    return _to_bytes(feed)


def usage_point_feed(resource_base: str, sub: str, meters: list[MeterResource], *, updated: datetime,
                     published: datetime, meter_reading: bool = True, usage_summary: bool = True) -> bytes:
    """``GET R/Subscription/{sub}/UsagePoint``: the meters, without their data."""
    def add(feed, base):
        for meter in meters:
            usage_point_element(feed, base, sub, meter, published=published, updated=updated,
                                meter_reading=meter_reading, usage_summary=usage_summary)
    return feed_bytes(resource_base, f"Subscription/{sub}/UsagePoint", "UsagePoint", "UsagePoint", updated, add)


def meter_reading_feed(resource_base: str, sub: str, meter_uid: str, readings: list[tuple[str, str]], *,
                       updated: datetime, published: datetime) -> bytes:
    """``GET …/UsagePoint/{meter}/MeterReading``: ``readings`` are (MeterReading id, ReadingType id)."""
    def add(feed, base):
        for mr_id, rt_id in readings:
            meter_reading_element(feed, base, sub, meter_uid, mr_id, rt_id, published=published, updated=updated)
    return feed_bytes(resource_base, f"{usage_point_path(sub, meter_uid)}/MeterReading", "MeterReading",
                      "MeterReading", updated, add)


def usage_summary_feed(resource_base: str, sub: str, meter_uid: str, summaries: Iterable[UsageSummary], *,
                       updated: datetime) -> bytes:
    """``GET …/UsagePoint/{meter}/UsageSummary``: one entry per bill, oldest first."""
    def add(feed, base):
        for summary in summaries:
            usage_summary_element(feed, base, sub, meter_uid, summary)
    return feed_bytes(resource_base, f"{usage_point_path(sub, meter_uid)}/UsageSummary", "UsageSummary",
                      "UsageSummary", updated, add)


def empty_feed(resource_base: str, self_path: str, kind: str, *, updated: datetime) -> bytes:
    """A feed without entries (``ElectricPowerQualitySummary``; list endpoints with nothing to list)."""
    return feed_bytes(resource_base, self_path, kind, kind, updated, lambda feed, base: None)


# ---------------------------------------------------------------- ServiceStatus, ApplicationInformation


def service_status(current_status: int = 1) -> bytes:
    """``GET R/ReadServiceStatus``: the bare ServiceStatus resource, as EDDIE (a
    production UtilityAPI client) unmarshals it; 1 = normal, 0 = unavailable."""
    el = etree.Element(_E + "ServiceStatus", nsmap={None: ESPI_NS})
    _sub(el, "currentStatus", current_status)
    return _to_bytes(el)


#: A registration's secrets are stored as hashes only, so they are never shown again.
MASKED = "(not shown: stored as a hash)"


def application_information_entry(resource_base: str, app: ApplicationInformation, *,
                                  published: datetime, updated: datetime) -> bytes:
    """``GET R/ApplicationInformation/{id}``: the third party's registration, in
    espi.xsd's order. ``client_secret`` and ``registration_access_token`` are
    required by the schema but the sandbox keeps only their hashes: masked."""
    base = _base(resource_base)
    entry, content = _entry(None, base, kind="ApplicationInformation", self_path=f"ApplicationInformation/{app.id}",
                            up_path="ApplicationInformation", related=[(CERT_LINK, "text/html")],
                            published=published, updated=updated)
    el = _payload(content, "ApplicationInformation")
    _sub(el, "dataCustodianId", app.data_custodian_id)
    _sub(el, "dataCustodianApplicationStatus", app.data_custodian_status)
    if app.description:
        _sub(el, "thirdPartyApplicationDescription", app.description[:256])
    _sub(el, "thirdPartyApplicationStatus", app.third_party_status)
    _sub(el, "thirdPartyApplicationType", 1)      # web
    _sub(el, "thirdPartyApplicationUse", 1)       # energy management
    _sub(el, "authorizationServerUri", app.authorization_endpoint.rsplit("/oauth/", 1)[0])
    _sub(el, "thirdPartyNotifyUri", app.notify_uri)
    _sub(el, "authorizationServerAuthorizationEndpoint", app.authorization_endpoint)
    _sub(el, "authorizationServerTokenEndpoint", app.token_endpoint)
    _sub(el, "dataCustodianBulkRequestURI", app.bulk_request_uri)
    _sub(el, "dataCustodianResourceEndpoint", app.resource_endpoint)
    _sub(el, "client_secret", MASKED)
    _sub(el, "client_name", app.client_name[:256])
    if app.client_uri:
        _sub(el, "client_uri", app.client_uri)
    for uri in app.redirect_uris or ("",):
        _sub(el, "redirect_uri", uri)
    _sub(el, "client_id", app.client_id)
    _sub(el, "software_id", app.software_id)
    _sub(el, "software_version", app.software_version)
    _sub(el, "client_id_issued_at", app.client_id_issued_at)
    _sub(el, "client_secret_expires_at", app.client_secret_expires_at)
    _sub(el, "token_endpoint_auth_method", "client_secret_basic")
    for scope in app.scope:
        _sub(el, "scope", scope)
    for grant in app.grant_types:
        _sub(el, "grant_types", grant)
    _sub(el, "response_types", "code")
    _sub(el, "registration_client_uri", app.registration_client_uri)
    _sub(el, "registration_access_token", MASKED)
    return _to_bytes(entry)


# ---------------------------------------------------------------- RetailCustomer (FB 51, customer namespace)


@dataclass(frozen=True)
class AgreementResource:
    """One shared meter as the customer feeds show it: CustomerAgreement (id = meter
    uid), its ServiceLocation, Meter and LocalTimeParameters."""

    meter_uid: str
    agreement_id: str        # the service identifier, e.g. 11100-00000
    location_id: str         # UUID
    address: Address
    meter_id: str            # UUID
    serial_number: str
    local_time: LocalTimeParameters = LocalTimeParameters(-28800)


@dataclass(frozen=True)
class CustomerResource:
    """An authorization's retail customer (reference §4.5 RetailCustomer)."""

    authorization_uid: str
    customer_id: str         # UUID
    name: str
    kind: str                # customer.xsd CustomerKind, e.g. residential, commercialIndustrial
    address: Address
    account_id: str          # UUID
    account_number: str
    agreements: tuple[AgreementResource, ...] = ()
    puc_number: str | None = None


def customer_paths(cust: CustomerResource, agreement: AgreementResource | None = None) -> dict[str, str]:
    """Self paths of the customer tree (relative to the resource base)."""
    customer = f"RetailCustomer/{cust.authorization_uid}/Customer/{cust.customer_id}"
    account = f"{customer}/CustomerAccount/{cust.account_id}"
    paths = {"Customer": customer, "CustomerAccount": account}
    if agreement is not None:
        paths["CustomerAgreement"] = f"{account}/CustomerAgreement/{agreement.meter_uid}"
        paths["ServiceLocation"] = f"{paths['CustomerAgreement']}/ServiceLocation/{agreement.location_id}"
        paths["Meter"] = f"{paths['ServiceLocation']}/Meter/{agreement.meter_id}"
        paths["LocalTimeParameters"] = local_time_path(cust.authorization_uid, agreement.meter_uid)
    return paths


def _cust_link(parent: etree._Element, rel: str, type_: str, href: str) -> None:
    etree.SubElement(parent, _A + "link", rel=rel, type=type_, href=href)


def _cust_entry(parent: etree._Element | None, base: str, kind: str, self_path: str,
                related: list[tuple[str, str]], *, published: datetime, updated: datetime
                ) -> tuple[etree._Element, etree._Element]:
    """An entry in the RetailCustomer capture's envelope: title, links, an empty
    author, id, updated, published, content, dc:date."""
    if parent is None:
        entry = etree.Element(_A + "entry", nsmap={None: ATOM_NS, "dc": DC_NS})
    else:
        entry = etree.SubElement(parent, _A + "entry")
    _text_el(entry, _A + "title", kind)
    _cust_link(entry, "self", f"cust-entry/{kind}", f"{base}/{self_path}")
    _cust_link(entry, "up", f"cust-feed/{kind}", f"{base}/{self_path.rsplit('/', 1)[0]}")
    for type_, path in related:
        _cust_link(entry, "related", type_, f"{base}/{path}")
    author = etree.SubElement(entry, _A + "author")
    etree.SubElement(author, _A + "name")
    _text_el(entry, _A + "id", atom_id(self_path))
    _text_el(entry, _A + "updated", _ts(updated))
    _text_el(entry, _A + "published", _ts(published))
    content = etree.SubElement(entry, _A + "content", type="atom+xml")
    _text_el(entry, _DC + "date", _ts(published))
    return entry, content


def _csub(parent: etree._Element, name: str, value: object) -> etree._Element:
    return _text_el(parent, _C + name, str(value))


def _street_address(parent: etree._Element, name: str, address: Address) -> None:
    el = etree.SubElement(parent, _C + name)
    detail = etree.SubElement(el, _C + "streetDetail")
    _csub(detail, "addressGeneral", address.street)
    if address.town or address.state:
        town = etree.SubElement(el, _C + "townDetail")
        if address.town:
            _csub(town, "name", address.town)
        if address.state:
            _csub(town, "stateOrProvince", address.state)
    if address.postal_code:
        _csub(el, "postalCode", address.postal_code)


def customer_element(parent: etree._Element | None, base: str, cust: CustomerResource, kind: str,
                     agreement: AgreementResource | None = None, *, published: datetime,
                     updated: datetime) -> etree._Element:
    """One entry of the customer tree: ``kind`` is Customer, CustomerAccount,
    CustomerAgreement, ServiceLocation, Meter or LocalTimeParameters (the last
    four for ``agreement``)."""
    paths = customer_paths(cust, agreement)
    first = cust.agreements[0] if cust.agreements else None
    if kind == "Customer":
        related = [("cust-feed/CustomerAccount", f"{paths['Customer']}/CustomerAccount")]
        if first is not None:
            related.append(("cust-entry/LocalTimeParameters", local_time_path(cust.authorization_uid,
                                                                               first.meter_uid)))
    elif kind == "CustomerAccount":
        related = [("cust-feed/CustomerAgreement", f"{paths['CustomerAccount']}/CustomerAgreement"),
                   ("cust-entry/Customer", paths["Customer"])]
    elif kind == "CustomerAgreement":
        agr = paths["CustomerAgreement"]
        related = [("cust-feed/ServiceSupplier", f"{agr}/ServiceSupplier"),
                   ("cust-feed/ProgramDateIdMappings", f"{agr}/ProgramDateIdMappings"),
                   ("cust-feed/ServiceLocation", f"{agr}/ServiceLocation"),
                   ("cust-entry/CustomerAccount", paths["CustomerAccount"])]
    elif kind == "ServiceLocation":
        loc = paths["ServiceLocation"]
        related = [("cust-feed/Meter", f"{loc}/Meter"), ("cust-feed/EndDevice", f"{loc}/EndDevice"),
                   ("cust-entry/LocalTimeParameters", paths["LocalTimeParameters"]),
                   ("cust-entry/CustomerAgreement", paths["CustomerAgreement"])]
    elif kind == "Meter":
        related = [("cust-entry/ServiceLocation", paths["ServiceLocation"])]
    elif kind == "LocalTimeParameters":
        related = [("cust-entry/ServiceLocation", paths["ServiceLocation"])]
    else:
        raise ValueError(f"unknown customer resource {kind!r}")
    entry, content = _cust_entry(parent, base, kind, paths[kind], related, published=published, updated=updated)
    el = _payload(content, kind, CUST_NS)
    if kind == "Customer":
        org = etree.SubElement(el, _C + "Organisation")
        _street_address(org, "streetAddress", cust.address)
        _csub(el, "kind", cust.kind)
        if cust.puc_number:            # customer.xsd: pucNumber before customerName
            _csub(el, "pucNumber", cust.puc_number)
        _csub(el, "customerName", cust.name)
    elif kind == "CustomerAccount":
        contact = etree.SubElement(el, _C + "contactInfo")
        _street_address(contact, "streetAddress", cust.address)
        _csub(el, "accountId", cust.account_number)
    elif kind == "CustomerAgreement":
        _csub(el, "agreementId", agreement.agreement_id)
    elif kind == "ServiceLocation":
        _street_address(el, "mainAddress", agreement.address)
        points = etree.SubElement(el, _C + "UsagePoints")
        _csub(points, "UsagePoint", f"{base}/{usage_point_path(cust.authorization_uid, agreement.meter_uid)}")
    elif kind == "Meter":
        _csub(el, "serialNumber", agreement.serial_number)
    else:
        _time_configuration(el, agreement.local_time, CUST_NS)
    return entry


def _customer_feed(base: str, self_path: str, kind: str, updated: datetime) -> etree._Element:
    """A feed in the RetailCustomer capture's envelope (title, alternate/self/cert links, id, updated, dc:date)."""
    feed = etree.Element(_A + "feed", nsmap={"dc": DC_NS, None: ATOM_NS})
    _text_el(feed, _A + "title", kind)
    etree.SubElement(feed, _A + "link", rel="alternate", href=f"{base}/{self_path}")
    _cust_link(feed, "self", f"cust-feed/{kind}", f"{base}/{self_path}")
    _cust_link(feed, "related", "text/html", CERT_LINK)
    _text_el(feed, _A + "id", atom_id(self_path))
    _text_el(feed, _A + "updated", _ts(updated))
    _text_el(feed, _DC + "date", _ts(updated))
    return feed


def retail_customer_batch(resource_base: str, cust: CustomerResource, *, published: datetime,
                          updated: datetime, self_path: str | None = None) -> bytes:
    """``GET R/Batch/RetailCustomer/{uid}``: Customer, CustomerAccount, then per meter
    CustomerAgreement, ServiceLocation, Meter and LocalTimeParameters."""
    base = _base(resource_base)
    feed = _customer_feed(base, self_path or f"Batch/RetailCustomer/{cust.authorization_uid}", "RetailCustomer",
                          updated)
    customer_element(feed, base, cust, "Customer", published=published, updated=updated)
    customer_element(feed, base, cust, "CustomerAccount", published=published, updated=updated)
    for agreement in cust.agreements:
        for kind in ("CustomerAgreement", "ServiceLocation", "Meter", "LocalTimeParameters"):
            customer_element(feed, base, cust, kind, agreement, published=published, updated=updated)
    return _to_bytes(feed)


def customer_feed(resource_base: str, cust: CustomerResource, kind: str, self_path: str,
                  agreements: Iterable[AgreementResource | None], *, published: datetime,
                  updated: datetime) -> bytes:
    """A feed of one customer resource type (``…/Customer``, ``…/CustomerAgreement``, …);
    ``agreements`` picks the entries (``[None]`` for Customer/CustomerAccount, none for an empty feed)."""
    base = _base(resource_base)
    feed = _customer_feed(base, self_path, kind, updated)
    for agreement in agreements:
        customer_element(feed, base, cust, kind, agreement, published=published, updated=updated)
    return _to_bytes(feed)


def customer_entry(resource_base: str, cust: CustomerResource, kind: str,
                   agreement: AgreementResource | None = None, *, published: datetime,
                   updated: datetime) -> bytes:
    return _to_bytes(customer_element(None, _base(resource_base), cust, kind, agreement,
                                      published=published, updated=updated))

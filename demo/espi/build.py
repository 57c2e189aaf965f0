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

To add more resources later (MeterReading, ReadingType, IntervalBlock,
UsageSummary ...), create entries with :func:`_entry` on a feed made by
:func:`_feed` and fill the returned ``<content>`` with :func:`_payload` and
:func:`_sub`; finish with :func:`_to_bytes`.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from lxml import etree

from .model import Authorization, DateTimeInterval, LocalTimeParameters

ATOM_NS = "http://www.w3.org/2005/Atom"
ESPI_NS = "http://naesb.org/espi"
CUST_NS = "http://naesb.org/espi/customer"
CERT_LINK = "https://cert.greenbuttonalliance.org/certificate/52df5b79-f375-54b4-9eca-3ab0fa6fd45b"

_A = "{%s}" % ATOM_NS
_E = "{%s}" % ESPI_NS
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
    up_path = usage_point_path(sub, meter.uid)
    ltp_path = local_time_path(sub, meter.uid)
    _, content = _entry(
        feed, base,
        kind="UsagePoint",
        self_path=up_path,
        up_path=f"Subscription/{sub}/UsagePoint",
        related=[
            (f"{base}/{up_path}/MeterReading", "espi-feed/MeterReading"),
            (f"{base}/{up_path}/UsageSummary", "espi-feed/UsageSummary"),
            (f"{base}/{up_path}/ElectricPowerQualitySummary", "espi-feed/ElectricPowerQualitySummary"),
            (f"{base}/{ltp_path}", "espi-entry/LocalTimeParameters"),
        ],
        title=meter.title,
        published=published,
        updated=updated,
    )
    el = _payload(content, "UsagePoint")
    category = etree.SubElement(el, _E + "ServiceCategory")
    _sub(category, "kind", meter.service_kind)
    # espi.xsd 4.0 spells it serviceDeliveryPoint (lower-case s), as does the 2026
    # UtilityAPI capture; the 2024 capture's ServiceDeliveryPoint fails validation.
    sdp = etree.SubElement(el, _E + "serviceDeliveryPoint")
    _sub(sdp, "tariffProfile", meter.tariff)

    _, content = _entry(
        feed, base,
        kind="LocalTimeParameters",
        self_path=ltp_path,
        up_path="LocalTimeParameters",
        published=published,
        updated=updated,
    )
    lt = meter.local_time
    el = _payload(content, "LocalTimeParameters")
    _sub(el, "dstEndRule", lt.dst_end_rule)
    _sub(el, "dstOffset", lt.dst_offset)
    _sub(el, "dstStartRule", lt.dst_start_rule)
    _sub(el, "tzOffset", lt.tz_offset)


def batch_subscription_feed(resource_base: str, subscription_uid: str, meters: list[MeterResource], *,
                            updated: datetime, published: datetime) -> bytes:
    """``GET R/Batch/Subscription/{sub}``: per meter a UsagePoint entry, then its
    LocalTimeParameters entry (meter data entries are not written yet)."""
    base = _base(resource_base)
    feed = _feed(base, f"Batch/Subscription/{subscription_uid}", "Subscription", "Subscription", updated)
    for meter in meters:
        _usage_point(feed, base, subscription_uid, meter, published=published, updated=updated)
    return _to_bytes(feed)

"""Stream big Green Button feeds as bytes chunks, never building the whole document.

A two-year Batch/Subscription of a commercial customer holds ~350,000 interval
readings (tens of megabytes). The structural entries (UsagePoint,
LocalTimeParameters, MeterReading, ReadingType, UsageSummary) are few and
small, so each is built with lxml by :mod:`demo.espi.build` and serialized on
its own; IntervalBlocks are written from string templates, one local day at a
time, with their values pulled lazily from an iterator. Memory therefore stays
flat in the size of the feed, and the per-reading work is one ``%`` format.

The text is exactly what lxml's pretty printer would write for the same tree
(entries start at column 0 and declare the Atom namespace, as in UtilityAPI's
batch captures), so streamed and in-memory output look alike and both validate
against espi.xsd. Framework-free: the sandbox wraps these generators in a
Flask ``Response``.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from xml.sax.saxutils import escape

from lxml import etree

from .build import (
    ATOM_NS,
    ESPI_NS,
    MeterResource,
    _base,
    _feed,
    local_time_element,
    meter_reading_element,
    meter_reading_path,
    reading_type_element,
    usage_point_element,
    usage_summary_element,
)
from .model import IntervalBlock, ReadingType, UsageSummary

CHUNK = 1 << 16   # bytes per yielded chunk: big enough for few writes, small enough to stay flat


@dataclass
class MeterReadingData:
    """One flow direction of one meter: its MeterReading and ReadingType ids and
    its IntervalBlocks (any iterable; consumed once, lazily)."""

    id: str
    reading_type_id: str
    reading_type: ReadingType
    blocks: Iterable[IntervalBlock] = ()


@dataclass
class UsagePointData:
    """Everything a batch feed writes for one meter, in the captures' order:
    UsagePoint, LocalTimeParameters, per flow MeterReading + ReadingType +
    IntervalBlocks, then UsageSummaries.

    ``readings`` is empty and ``interval_metering`` False without FB 4;
    ``summaries`` is None without FB 16 (then the UsagePoint has no UsageSummary link).
    ``published``/``updated`` are the structural entries' times (the authorization's creation).
    """

    subscription_uid: str
    meter: MeterResource
    published: datetime
    updated: datetime
    readings: Sequence[MeterReadingData] = ()
    summaries: Iterable[UsageSummary] | None = None
    interval_metering: bool = True


# ---------------------------------------------------------------- text helpers


def _epoch_ts(epoch: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _element_text(el: etree._Element) -> str:
    return etree.tostring(el, encoding="unicode", pretty_print=True)


def _feed_head(base: str, self_path: str, feed_type: str, title: str, updated: datetime) -> str:
    """The feed's start tag and header children, without the closing ``</feed>``."""
    text = _element_text(_feed(base, self_path, feed_type, title, updated))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text[: text.rindex("</feed>")]


def chunked(parts: Iterable[str], size: int = CHUNK) -> Iterator[bytes]:
    """Join text parts into UTF-8 chunks of about ``size`` bytes."""
    buf: list[str] = []
    length = 0
    for part in parts:
        buf.append(part)
        length += len(part)
        if length >= size:
            yield "".join(buf).encode()
            buf, length = [], 0
    if buf:
        yield "".join(buf).encode()


# ---------------------------------------------------------------- IntervalBlock (string templates)

_IB_HEAD = (
    '<entry xmlns="%s">\n'
    "  <id>%%s</id>\n"
    '  <link rel="self" href="%%s%%s" type="espi-entry/IntervalBlock"/>\n'
    '  <link rel="up" href="%%s" type="espi-feed/IntervalBlock"/>\n'
    '  <link rel="related" href="%%s" type="espi-feed/MeterReading"/>\n'
    "  <published>%%s</published>\n"
    "  <updated>%%s</updated>\n"
    "  <title>IntervalBlock</title>\n"
    '  <content type="atom+xml">\n'
    '    <IntervalBlock xmlns="%s">\n'
    "      <interval>\n"
    "        <duration>%%d</duration>\n"
    "        <start>%%d</start>\n"
    "      </interval>\n"
) % (ATOM_NS, ESPI_NS)
_IB_TAIL = "    </IntervalBlock>\n  </content>\n</entry>\n"


_PRE = "      <IntervalReading>\n        <timePeriod>\n          <duration>%d</duration>\n          <start>"
_MID = "</start>\n        </timePeriod>\n        <value>"
_POST = "</value>\n      </IntervalReading>\n"
#: the last five digits of an epoch that is a multiple of 100 (every 15-minute interval start)
_LOW5 = tuple("%05d" % (100 * k) for k in range(1000))


class _ValueText(dict):
    """``str(value)`` for reading values, remembered: a meter's values repeat a lot
    (whole Wh), and int-to-text is the costliest step of writing a reading."""

    def __missing__(self, value: int) -> str:
        if len(self) > 200_000:      # bounded
            self.clear()
        text = self[value] = str(value)
        return text


_VALUE_TEXT = _ValueText()


def _readings(start: int, step: int, values: Sequence[int]) -> str:
    """The IntervalReadings of one block: consecutive ``step``-second readings from ``start``.

    Built by slice assignment into one list of text pieces and joined once: the
    constant markup is shared, the starts' leading digits are written once per run
    (they change at most once a day) and their last five digits looked up, and value
    texts come from a small cache, so no per-reading Python code runs at all."""
    n = len(values)
    if not n:
        return ""
    pre = _PRE % step
    sep = _POST + pre
    parts = [_MID] * (4 * n)
    if start % 100 or step % 100 or start < 100000:   # off the 15-minute grid (or tiny): plain text
        parts[0::4] = [sep] * n
        parts[1::4] = map(str, range(start, start + step * n, step))
    else:
        # runs of readings that share the leading digits (t // 100000): at most two a day
        stride = step // 100
        i, t = 0, start
        while i < n:
            high, low = divmod(t, 100000)
            m = min(n - i, -(-(100000 - low) // step))
            parts[4 * i:4 * (i + m):4] = [sep + str(high)] * m
            parts[4 * i + 1:4 * (i + m):4] = map(_LOW5.__getitem__, range(low // 100, low // 100 + stride * m, stride))
            i, t = i + m, t + step * m
    parts[0] = pre + parts[0][len(sep):]
    parts[3::4] = map(_VALUE_TEXT.__getitem__, values)
    return "".join(parts) + _POST


_NAMESPACE_URL = uuid.NAMESPACE_URL.bytes


def _atom_id(path: str) -> str:
    """:func:`demo.espi.build.atom_id` of one path, without building UUID objects
    (one per IntervalBlock adds up over a two-year feed)."""
    # UUIDv5 is SHA-1 by definition (RFC 9562); the id names a resource, it protects nothing
    h = bytearray(hashlib.sha1(_NAMESPACE_URL + path.encode(), usedforsecurity=False).digest()[:16])
    h[6] = (h[6] & 0x0F) | 0x50
    h[8] = (h[8] & 0x3F) | 0x80
    x = h.hex()
    return f"urn:uuid:{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"


def _attr(text: str) -> str:
    """Text for a double-quoted attribute."""
    return escape(text, {'"': "&quot;"})


@dataclass(frozen=True)
class _BlockLinks:
    """What every IntervalBlock entry of one MeterReading shares, escaped once."""

    path: str            # …/MeterReading/{id}/IntervalBlock/ (relative to the base), for Atom ids
    self_prefix: str     # the escaped href without the block id
    up: str              # escaped …/IntervalBlock
    related: str         # escaped MeterReading href

    @classmethod
    def of(cls, base: str, sub: str, meter_uid: str, meter_reading_id: str) -> _BlockLinks:
        path = meter_reading_path(sub, meter_uid, meter_reading_id)
        return cls(f"{path}/IntervalBlock/", _attr(f"{base}/{path}/IntervalBlock/"),
                   _attr(f"{base}/{path}/IntervalBlock"), _attr(f"{base}/{path}"))


def _interval_block(base: str, links: _BlockLinks, block: IntervalBlock) -> str:
    stamp = _epoch_ts(block.published)
    head = _IB_HEAD % (_atom_id(links.path + block.id), links.self_prefix, _attr(block.id), links.up,
                       links.related, stamp, stamp, block.duration, block.start)
    return head + _readings(block.start, block.interval_length, block.values) + _IB_TAIL


def interval_block_entry(resource_base: str, sub: str, meter_uid: str, meter_reading_id: str,
                         block: IntervalBlock) -> bytes:
    """``GET …/MeterReading/{mr}/IntervalBlock/{id}``: one bare IntervalBlock entry."""
    base = _base(resource_base)
    links = _BlockLinks.of(base, sub, meter_uid, meter_reading_id)
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + _interval_block(base, links, block)).encode()


def interval_block_feed(resource_base: str, sub: str, meter_uid: str, meter_reading_id: str,
                        blocks: Iterable[IntervalBlock], *, updated: datetime) -> Iterator[bytes]:
    """``GET …/MeterReading/{mr}/IntervalBlock``, streamed."""
    base = _base(resource_base)
    links = _BlockLinks.of(base, sub, meter_uid, meter_reading_id)

    def parts() -> Iterator[str]:
        yield _feed_head(base, links.path.rstrip("/"), "IntervalBlock", "IntervalBlock", updated)
        for block in blocks:
            yield _interval_block(base, links, block)
        yield "</feed>\n"

    return chunked(parts())


# ---------------------------------------------------------------- batch feeds


def _usage_point_parts(base: str, data: UsagePointData) -> Iterator[str]:
    sub, meter = data.subscription_uid, data.meter
    stamps = {"published": data.published, "updated": data.updated}
    yield _element_text(usage_point_element(None, base, sub, meter, meter_reading=data.interval_metering,
                                            usage_summary=data.summaries is not None, quality_summary=False,
                                            **stamps))
    yield _element_text(local_time_element(None, base, sub, meter, **stamps))
    for reading in data.readings:
        yield _element_text(meter_reading_element(None, base, sub, meter.uid, reading.id, reading.reading_type_id,
                                                  **stamps))
        yield _element_text(reading_type_element(None, base, sub, meter.uid, reading.id, reading.reading_type_id,
                                                 reading.reading_type, **stamps))
        links = _BlockLinks.of(base, sub, meter.uid, reading.id)
        for block in reading.blocks:
            yield _interval_block(base, links, block)
    for summary in data.summaries or ():
        yield _element_text(usage_summary_element(None, base, sub, meter.uid, summary))


def batch_feed(resource_base: str, self_path: str, usage_points: Iterable[UsagePointData], *,
               updated: datetime, feed_type: str = "Subscription", title: str = "Subscription") -> Iterator[bytes]:
    """A Batch feed (``Batch/Subscription/{sub}``, ``…/UsagePoint/{meter}`` or
    ``Batch/Bulk/{id}``), streamed meter by meter: UsagePoint, LocalTimeParameters,
    per flow MeterReading, ReadingType and IntervalBlocks, then UsageSummaries."""
    base = _base(resource_base)

    def parts() -> Iterator[str]:
        yield _feed_head(base, self_path, feed_type, title, updated)
        for data in usage_points:
            yield from _usage_point_parts(base, data)
        yield "</feed>\n"

    return chunked(parts())


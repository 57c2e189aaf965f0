"""Streaming reader for Green Button (ESPI) usage data: interval readings, bills and meters.

Why a second reader next to :mod:`demo.espi.parse`: a two-year 15-minute
Batch/Subscription of a commercial customer is 70+ MB and 350,000 readings;
building that as one lxml tree costs hundreds of megabytes. This module reads
the same documents as a stream, so memory stays flat in the size of the feed,
and it is the fastest way we found to get the numbers out with lxml.

**How.** lxml's ``iterparse`` reads the bytes in pieces through a small guard
object (:class:`_Input`) and reports only the ends of Atom ``<entry>`` elements
(and the starts of ESPI ``IntervalBlock`` elements). Each entry is handled when it
ends, then cleared and unlinked, so at most one entry (plus one piece of input)
is in memory. The IntervalReadings of an IntervalBlock entry are pulled with
three compiled XPath expressions (``smart_strings=False``) over the whole entry,
not element by element: the per-reading Python work is then three ``int()``
calls into ``array('q')`` columns. An IntervalBlock that grows past
:data:`DRAIN_AT` readings while it is still being parsed (one block holding
years of data) has its finished readings taken out between two pieces, so even
that stays flat.

**Safety.** Same rules as :func:`demo.espi.parse.parse_document`, shared code:
a DOCTYPE is refused by :class:`~demo.espi.parse.PrologGuard` before the real
parser sees the chunk that holds it; the parser never resolves entities, loads
DTDs or touches the network, and keeps libxml2's depth and text-size limits
(``huge_tree=False``). ``max_bytes`` caps the input.

**Tolerance.** Elements are matched by namespace URI (Atom, ESPI, ESPI
customer), never by prefix; ``<content>`` may have any ``type`` or none;
``ServiceDeliveryPoint`` and ``serviceDeliveryPoint`` both work (shared with
parse.py); UsageSummary and the older ElectricPowerUsageSummary are both bills;
a MeterReading with its ReadingType nested inside (OpenESPI sample) works.

**Linking** (each step only when the one before gives nothing):

* IntervalBlock -> MeterReading: the ``up`` link (``…/MeterReading/{id}/IntervalBlock``),
  the ``self`` link (``…/MeterReading/{id}/IntervalBlock/{n}``), a ``related``
  MeterReading link; then document order (the MeterReading before it). A block
  whose MeterReading is not in the document (an IntervalBlock feed) gets the
  ids from its links' path.
* MeterReading / UsageSummary -> UsagePoint: the UsagePoint whose self link is
  the parent path, the UsagePoint whose id is the ``UsagePoint/{id}`` path
  segment, then the UsagePoint before it in the document, then that path
  segment alone.
* MeterReading -> ReadingType: its ``related`` ReadingType link, a nested
  ReadingType, a ReadingType whose ``related`` link points back, the
  ReadingType entry next to it in the document, the document's only one.
* UsagePoint -> LocalTimeParameters: as :func:`demo.espi.parse.parse_usage_points`.
* Ids: the last path segment of the self link; a UsagePoint without one gets
  its 1-based position (as in parse.py), a MeterReading ``None``.

**Times** are kept exactly as given (integers, no unit change). Only PG&E was
ever seen sending milliseconds, and it sends starts and durations both in
milliseconds, so given values stay consistent with each other; a start at or
above 10**11 (year 5138 in seconds, 1973 in milliseconds) is flagged in
:attr:`Usage.warnings` with the entry that has it, and the caller decides.

**Errors** are :class:`EspiError` with the entry's 1-based position and its
resource name, e.g. ``Entry 5 (IntervalBlock) has no <content>``; numbers
that are not whole numbers name the element. Things that can be read but are
odd (no self link, a JSON content type on XML, an entry without content that
does not claim to be an ESPI resource) do not fail: they are listed in
:attr:`Usage.warnings`, each kind once with a count.
"""
from __future__ import annotations

import array
import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import BinaryIO
from urllib.parse import urlsplit

from lxml import etree

from .model import LocalTimeParameters, UsagePoint
from .parse import (
    ATOM_NS,
    CUST_NS,
    ESPI_NS,
    EspiError,
    PrologGuard,
    _int,
    _last_segment,
    _local_time,
    _text,
    check_atom_root,
    local_time_for,
    normalize_href,
    not_xml_error,
    usage_point_from,
    xml_error,
)

__all__ = ["CostItem", "EspiError", "ReadingType", "Series", "Usage", "UsageSummary", "iter_interval_readings",
           "read_usage"]

_A = "{%s}" % ATOM_NS
_E = "{%s}" % ESPI_NS
_C = "{%s}" % CUST_NS

#: most bytes handed to the parser at a time (lxml asks for 32 kB): big enough that Python
#: overhead per piece is nothing, small enough that one piece's worth of tree is small
CHUNK = 1 << 17
#: IntervalReadings an IntervalBlock may hold while still open before its finished
#: ones are taken out (keeps one huge block from growing the tree)
DRAIN_AT = 4096
#: starts at or above this look like milliseconds (year 5138 in seconds)
MILLIS_FROM = 10**11

_PARSER_OPTIONS = {"resolve_entities": False, "no_network": True, "load_dtd": False, "huge_tree": False,
                   "dtd_validation": False, "remove_comments": True, "remove_pis": True}


# ---------------------------------------------------------------- public dataclasses


@dataclass(frozen=True)
class ReadingType:
    """ESPI ReadingType: what a Series' raw integers mean (physical = value * 10**power_of_ten_multiplier uom)."""

    id: str | None
    flow_direction: int | None  # 1 delivered (forward), 19 received (reverse), 4 net
    uom: int | None  # 72 Wh, 38 W, 169 therm, ...
    power_of_ten_multiplier: int = 0
    interval_length: int | None = None
    kind: int | None = None
    commodity: int | None = None
    accumulation_behaviour: int | None = None
    currency: int | None = None


def _q() -> array.array:
    return array.array("q")


@dataclass
class Series:
    """One MeterReading's interval readings, as parallel ``array('q')`` columns
    (24 bytes a reading; cheap to sum, slice or hand to numpy with ``frombuffer``).

    ``starts`` and ``durations`` are as the feed gave them (epoch seconds, except
    the rare millisecond feed: see :attr:`Usage.warnings`); ``values`` are raw:
    physical value = value * 10**reading_type.power_of_ten_multiplier in reading_type.uom.
    """

    usage_point_id: str
    meter_reading_id: str | None
    reading_type: ReadingType | None
    starts: array.array = field(default_factory=_q)
    durations: array.array = field(default_factory=_q)
    values: array.array = field(default_factory=_q)

    def __len__(self) -> int:
        return len(self.values)


@dataclass(frozen=True)
class CostItem:
    """A bill line item (``costAdditionalDetailLastPeriod``); ``amount`` in 1/100,000 of the currency."""

    note: str | None
    amount: int | None
    item_kind: int | None


@dataclass(frozen=True)
class UsageSummary:
    """One bill (ESPI UsageSummary or ElectricPowerUsageSummary); money in 1/100,000 of the currency unit.

    ``start``/``duration`` are the billingPeriod; ``consumption`` is overallConsumptionLastPeriod
    (value * 10**consumption_multiplier in consumption_uom).
    """

    id: str | None
    usage_point_id: str
    start: int
    duration: int
    bill_last_period: int | None
    consumption: int | None
    consumption_uom: int | None
    consumption_multiplier: int
    currency: int | None
    tariff_profile: str | None
    line_items: tuple[CostItem, ...] = ()


@dataclass
class Usage:
    """Everything :func:`read_usage` found in one document.

    ``customer`` (FB 51, a RetailCustomer feed) has the keys ``name``, ``kind``,
    ``address``, ``account_id``, ``agreement_ids``, ``service_addresses``,
    ``service_locations`` (``{"address", "usage_point_ids"}``) and ``meter_serials``.
    ``warnings`` lists what was odd but readable, in plain words.
    """

    usage_points: list[UsagePoint] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    summaries: list[UsageSummary] = field(default_factory=list)
    customer: dict | None = None
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- input


class _Input:
    """What lxml's ``iterparse`` reads from: ``source`` (bytes or a binary file object) with the
    safety checks in front of the parser.

    Every piece goes through the :class:`~demo.espi.parse.PrologGuard` before lxml sees it, so
    a DOCTYPE is refused before its declarations are parsed; ``max_bytes`` is enforced as the
    bytes arrive; a root that is not an Atom feed or entry ends the input at once. ``read`` is
    also where an oversized open IntervalBlock is drained: lxml calls it between two feeds of
    its parser, when the tree is consistent. (``iterparse`` on such an object measured about
    10% faster than an ``XMLPullParser`` fed the same pieces.)
    """

    def __init__(self, source: bytes | BinaryIO, max_bytes: int | None, reader: _Reader) -> None:
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.data: bytes | None = bytes(source)
            if max_bytes is not None and len(self.data) > max_bytes:
                raise EspiError(f"The document is {len(self.data):,} bytes, more than the limit of "
                                f"{max_bytes:,} bytes")
            if not self.data.strip():
                raise EspiError("The document is empty")
            self.file = None
        elif isinstance(source, str) or not hasattr(source, "read"):
            raise TypeError(f"expected bytes or a binary file object, not {type(source).__name__}")
        else:
            self.data, self.file = None, source
        self.max_bytes = max_bytes
        self.reader = reader
        self.guard = PrologGuard()
        self.total = 0
        self.wrong_root: str | None = None

    def read(self, size: int = -1) -> bytes:
        reader = self.reader
        if reader.open_block is not None and len(reader.open_block) > DRAIN_AT:
            reader._drain()
        if self.wrong_root:
            return b""
        size = CHUNK if size is None or size < 0 else min(size, CHUNK)
        if self.data is not None:
            chunk = self.data[self.total:self.total + size]
        else:
            chunk = self.file.read(size)
            if isinstance(chunk, str):
                raise TypeError("the file object must be opened in binary mode")
            chunk = bytes(chunk or b"")
            if self.max_bytes is not None and self.total + len(chunk) > self.max_bytes:
                raise EspiError(f"The document is larger than the limit of {self.max_bytes:,} bytes")
            if not chunk and not self.total:
                raise EspiError("The document is empty")
        self.total += len(chunk)
        if not self.guard.done:
            if chunk:
                self.guard.feed(chunk)      # raises on a DOCTYPE, before the parser sees this piece
            else:
                self.guard.close()          # raises when there never was a root element
            if self.guard.done:
                try:
                    check_atom_root(self.guard.root_tag)
                except EspiError:
                    self.wrong_root = self.guard.root_tag
        return chunk


# ---------------------------------------------------------------- small helpers


@functools.lru_cache(maxsize=4096)
def _key(href: str) -> str:
    """Compare-friendly path of an href (no scheme, host, query, ``//`` runs or outer slashes),
    so absolute and relative links, and ``//DataCustodian`` typos, still meet. Cached: every
    IntervalBlock of a MeterReading has the same ``up`` link."""
    return urlsplit(normalize_href(href)).path.strip("/")


def _segment_after(key: str, name: str) -> str | None:
    """``"…/UsagePoint/770/MeterReading/x"``, ``"UsagePoint"`` -> ``"770"`` (the last such segment)."""
    parts = key.split("/")
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == name:
            return parts[i + 1] or None
    return None


def _parent_of(key: str, name: str) -> str | None:
    """``"…/UsagePoint/770/MeterReading/x"``, ``"MeterReading"`` -> ``"…/UsagePoint/770"``."""
    head, sep, tail = key.rpartition(f"/{name}/")
    if sep and tail and "/" not in tail:
        return head
    return None


def _inside(child: str, parent: str) -> bool:
    """Whether ``child`` is one segment below ``parent`` (one of them may be relative)."""
    head = child.rpartition("/")[0]
    return head == parent or head.endswith("/" + parent) or parent.endswith("/" + head)


_XP_NS = {"e": ESPI_NS}


def _xp(expr: str) -> etree.XPath:
    return etree.XPath(expr, namespaces=_XP_NS, smart_strings=False)


_COUNT = _xp("count(e:IntervalBlock/e:IntervalReading)")
_STARTS = _xp("e:IntervalBlock/e:IntervalReading/e:timePeriod/e:start/text()")
_DURATIONS = _xp("e:IntervalBlock/e:IntervalReading/e:timePeriod/e:duration/text()")
_VALUES = _xp("e:IntervalBlock/e:IntervalReading/e:value/text()")
_READINGS = _xp("e:IntervalBlock/e:IntervalReading")

def _ints(texts: list) -> array.array:
    """``array('q')`` of whole numbers given as text (``array(list(...))`` is about twice as fast
    as ``array(iterator)``)."""
    return array.array("q", list(map(int, texts)))


#: resource names an entry can claim (self link type ``espi-entry/X`` / ``cust-entry/X``)
_KNOWN = frozenset({
    "UsagePoint", "LocalTimeParameters", "MeterReading", "ReadingType", "IntervalBlock", "UsageSummary",
    "ElectricPowerUsageSummary", "ElectricPowerQualitySummary", "Authorization", "ApplicationInformation",
    "ServiceStatus", "Subscription", "RetailCustomer", "BatchList", "ProgramIdMappings", "Customer",
    "CustomerAccount", "CustomerAgreement", "ServiceLocation", "Meter", "EndDevice", "ServiceSupplier",
    "ProgramDateIdMappings", "Statement", "TimeConfiguration",
})
_SAME = {"ElectricPowerUsageSummary": "UsageSummary", "TimeConfiguration": "LocalTimeParameters"}
_SUMMARIES = ("UsageSummary", "ElectricPowerUsageSummary")


@dataclass
class _Links:
    """An entry's links and title, taken before the entry is cleared."""

    self_href: str | None = None
    self_type: str | None = None
    up_href: str | None = None
    related: list[tuple[str, str]] = field(default_factory=list)  # (href, type or "")
    title: str | None = None
    content_type: str | None = None

    @classmethod
    def of(cls, entry: etree._Element) -> _Links:
        links = cls()
        for link in entry.iterchildren(_A + "link"):
            href = (link.get("href") or "").strip()
            if not href:
                continue
            rel = (link.get("rel") or "alternate").strip()
            if rel == "self" and links.self_href is None:
                links.self_href, links.self_type = href, (link.get("type") or "").strip() or None
            elif rel == "up" and links.up_href is None:
                links.up_href = href
            elif rel == "related":
                links.related.append((href, (link.get("type") or "").strip()))
        title = entry.findtext(_A + "title")
        links.title = title.strip() if title is not None and title.strip() else None
        return links

    @property
    def label(self) -> str | None:
        """The resource the self link's type claims (``espi-entry/IntervalBlock`` -> ``IntervalBlock``)."""
        if self.self_type and "/" in self.self_type:
            name = self.self_type.rsplit("/", 1)[1]
            return name if name in _KNOWN else None
        return None


@dataclass
class _MeterReading:
    index: int                      # 0-based, the order MeterReadings (and orphan blocks' owners) appear
    key: str | None                 # _key of the self link (or of the path the blocks name)
    id: str | None
    usage_point_id: str
    position: int                   # entry position (0: not an entry of this document)
    reading_type_keys: tuple[str, ...] = ()
    nested_reading_type: ReadingType | None = None


@dataclass
class _Notes:
    """Warnings, each kind once: the first message and how many more there were."""

    first: dict[str, str] = field(default_factory=dict)
    count: dict[str, int] = field(default_factory=dict)

    def add(self, kind: str, message: str) -> None:
        if kind not in self.first:
            self.first[kind] = message
        self.count[kind] = self.count.get(kind, 0) + 1

    def messages(self) -> list[str]:
        out = []
        for kind, message in self.first.items():
            more = self.count[kind] - 1
            out.append(message if not more else f"{message} (and {more} more like it)")
        return out


def _syntax_error(exc: etree.XMLSyntaxError) -> EspiError:
    """:func:`demo.espi.parse.not_xml_error`, except that when the parser's close only says
    "no element found" (it does after a recoverable error such as an undefined entity), the
    error that actually happened, the log's last, is the one reported."""
    if exc.msg == "no element found" or not exc.lineno:
        errors = [e for e in exc.error_log if e.level_name in ("ERROR", "FATAL")]
        if errors and errors[-1].message != "no element found":
            last = errors[-1]
            return xml_error(last.message, last.line, last.column)
    return not_xml_error(exc)


def _whole(text: str | None, where: str, what: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise EspiError(f"{where}: {what} should be a whole number, got {text!r}") from None


def _address(el: etree._Element | None) -> str | None:
    """A customer-schema street address as one line: ``street, town STATE postal``."""
    if el is None:
        return None

    def text(path: str) -> str:
        return " ".join((el.findtext("/".join(_C + p for p in path.split("/"))) or "").split())

    street = " ".join(filter(None, (text("streetDetail/addressGeneral"), text("streetDetail/addressGeneral2"))))
    town = " ".join(filter(None, (text("townDetail/name"), text("townDetail/stateOrProvince"), text("postalCode"))))
    line = ", ".join(filter(None, (street, town)))
    return line or None


# ---------------------------------------------------------------- the reader


class _Reader:
    """One pass over one document: keeps the small resources, yields interval data block by block."""

    def __init__(self, only: str | None = None) -> None:
        self.only = only
        self.position = 0
        self.points: list[UsagePoint] = []
        self.point_ids_by_key: dict[str, str] = {}
        self.last_point_id: str | None = None
        self.local_times: dict[str, LocalTimeParameters | None] = {}
        self.local_time_list: list[LocalTimeParameters] = []
        self.meter_readings: dict[str, _MeterReading] = {}
        self.meter_reading_list: list[_MeterReading] = []
        self.last_meter_reading: _MeterReading | None = None
        self.reading_types: dict[str, ReadingType] = {}
        self.reading_type_list: list[tuple[int, ReadingType, tuple[str, ...]]] = []  # (position, rt, related keys)
        self.summaries: list[UsageSummary] = []
        self.customer: dict | None = None
        self.notes = _Notes()
        self.open_block: etree._Element | None = None
        self.pending: list[tuple[array.array, array.array, array.array]] = []
        self.pending_count = 0

    # ------------------------------------------------------------ driving the parser

    def blocks(self, source: bytes | BinaryIO, max_bytes: int | None
               ) -> Iterator[tuple[_MeterReading, array.array, array.array, array.array]]:
        """Parse ``source``; yield ``(meter reading, starts, durations, values)`` per IntervalBlock entry."""
        feed = _Input(source, max_bytes, self)
        try:
            for event, el in etree.iterparse(feed, events=("start", "end"), tag=(_A + "entry", _E + "IntervalBlock"),
                                             **_PARSER_OPTIONS):
                if el.tag == _E + "IntervalBlock":
                    self.open_block = el if event == "start" else None
                elif event == "end":
                    found = self._entry(el)
                    if found is not None:
                        yield found
        except etree.XMLSyntaxError as exc:
            # A root that is not Atom stops the input early: the parser then says the data ended
            # too soon, which is not the point, unless it found a real error first (an unbound
            # prefix is reported only at the end and makes an Atom root look namespace-less).
            if feed.wrong_root and (exc.msg or "").startswith(("Premature end of data", "no element found")):
                check_atom_root(feed.wrong_root)
            raise _syntax_error(exc) from None
        if feed.wrong_root:
            check_atom_root(feed.wrong_root)

    def _entry(self, entry: etree._Element):
        self.position += 1
        try:
            return self._resource(entry, self.position)
        finally:
            self.pending, self.pending_count, self.open_block = [], 0, None
            # Only finished elements are touched: this entry (its end tag was seen) and
            # the siblings before it. Whatever follows may still be open.
            entry.clear()
            parent = entry.getparent()
            if parent is not None:
                while entry.getprevious() is not None:
                    del parent[0]

    def _drain(self) -> None:
        """Take the finished IntervalReadings out of the still-open block (all but the last child,
        which may be the one being parsed) so a block of years stays small in memory."""
        block = self.open_block
        readings = list(block.iterchildren(_E + "IntervalReading"))[:-1]
        if not readings:
            return
        where = f"Entry {self.position + 1} (IntervalBlock)"
        self.pending.append(self._readings_one_by_one(readings, where, self.pending_count))
        self.pending_count += len(readings)
        for reading in readings:
            block.remove(reading)

    # ------------------------------------------------------------ one entry

    def _resource(self, entry: etree._Element, position: int):
        links = _Links.of(entry)
        content = entry.find(_A + "content")
        payload = None if content is None else next(content.iterchildren(tag=etree.Element), None)
        links.content_type = None if content is None else content.get("type")
        label = links.label
        claimed = label or (links.title if links.title in _KNOWN else None)
        if payload is None:
            name = claimed or links.title or "untitled"
            if content is None:
                problem = f"Entry {position} ({name}) has no <content>"
            else:
                text = " ".join((content.text or "").split())
                problem = (f"Entry {position} ({name}) has text ({text[:40]!r}) in its <content> where an ESPI "
                           "resource element belongs" if text else f"Entry {position} ({name}) has an empty <content>")
            if claimed:
                raise EspiError(problem)
            self.notes.add("no-resource", f"{problem}; skipped")
            return None
        qname = etree.QName(payload)
        local, namespace = qname.localname, qname.namespace
        where = f"Entry {position} ({local})"
        if label and _SAME.get(label, label) != _SAME.get(local, local):
            raise EspiError(f"Entry {position} is labelled {label} (self link type {links.self_type}) "
                            f"but its <content> holds <{local}>")
        if links.content_type and "json" in links.content_type.lower():
            self.notes.add("json", f"{where} has <content type={links.content_type!r}> but holds XML; read as XML")
        if namespace not in (ESPI_NS, CUST_NS):
            if local in _KNOWN:
                raise EspiError(f"{where}: <{local}> is not in the ESPI namespace ({ESPI_NS}) but in "
                                f"{namespace or 'no namespace'}")
            self.notes.add("foreign", f"{where}: <{local}> ({namespace or 'no namespace'}) is not ESPI; skipped")
            return None
        try:
            if namespace == CUST_NS:
                self._customer_part(local, payload)
                return None
            if local == "IntervalBlock":
                return self._interval_block(content, links, position, where)
            if local == "UsagePoint":
                self._usage_point(payload, links)
            elif local == "LocalTimeParameters":
                self._local_time(payload, links)
            elif local == "MeterReading":
                self._meter_reading(payload, links, position)
            elif local == "ReadingType":
                self._reading_type(payload, links, position)
            elif local in _SUMMARIES:
                self._summary(payload, links, where)
        except EspiError as exc:
            if str(exc).startswith("Entry "):
                raise
            raise EspiError(f"{where}: {exc}") from None
        return None

    # ------------------------------------------------------------ structural resources

    def _usage_point(self, el: etree._Element, links: _Links) -> None:
        point_id = _last_segment(links.self_href) or str(len(self.points) + 1)
        point = usage_point_from(el, id=point_id, self_href=links.self_href, title=links.title,
                                 related=tuple(href for href, _ in links.related))
        self.points.append(point)
        if links.self_href:
            self.point_ids_by_key.setdefault(_key(links.self_href), point_id)
        self.last_point_id = point_id

    def _local_time(self, el: etree._Element, links: _Links) -> None:
        ltp = _local_time(el)
        if ltp is None:
            return
        self.local_time_list.append(ltp)
        if links.self_href:
            self.local_times[normalize_href(links.self_href)] = ltp

    def _owner(self, keys: Iterable[str | None], related: Iterable[tuple[str, str]]) -> str:
        """The UsagePoint id for a resource below one (see the module doc, *Linking*)."""
        parents = [k for k in keys if k]
        parents += [_key(href) for href, kind in related if kind.endswith("/UsagePoint")]
        for parent in parents:
            if parent in self.point_ids_by_key:
                return self.point_ids_by_key[parent]
        path_ids = [pid for pid in (_segment_after(p + "/", "UsagePoint") for p in parents) if pid]
        known = {p.id for p in self.points}
        for pid in path_ids:
            if pid in known:
                return pid
        if self.last_point_id is not None:
            return self.last_point_id
        return path_ids[0] if path_ids else "1"

    def _meter_reading(self, el: etree._Element, links: _Links, position: int) -> None:
        key = _key(links.self_href) if links.self_href else f"#entry-{position}"
        if key in self.meter_readings:       # the same MeterReading again (SCE sample): one series
            self.last_meter_reading = self.meter_readings[key]
            self.notes.add("duplicate-mr", f"Entry {position} (MeterReading) repeats the MeterReading {key}; "
                                           "its readings are read as one series")
            return
        up_key = _key(links.up_href) if links.up_href else None
        owner = self._owner(
            [_parent_of(key, "MeterReading"), up_key[: -len("/MeterReading")] if up_key and
             up_key.endswith("/MeterReading") else None], links.related)
        rt_keys = tuple(_key(href) for href, _ in links.related)    # looked up among ReadingType self links
        nested = el.find(_E + "ReadingType")
        mr = _MeterReading(index=len(self.meter_reading_list), key=key, id=_last_segment(links.self_href),
                           usage_point_id=owner, position=position, reading_type_keys=rt_keys,
                           nested_reading_type=None if nested is None else self._reading_type_of(nested, None))
        self.meter_readings[key] = mr
        self.meter_reading_list.append(mr)
        self.last_meter_reading = mr

    def _reading_type_of(self, el: etree._Element, self_href: str | None) -> ReadingType:
        return ReadingType(
            id=_last_segment(self_href),
            flow_direction=_int(el, "flowDirection"),
            uom=_int(el, "uom"),
            power_of_ten_multiplier=_int(el, "powerOfTenMultiplier") or 0,
            interval_length=_int(el, "intervalLength"),
            kind=_int(el, "kind"),
            commodity=_int(el, "commodity"),
            accumulation_behaviour=_int(el, "accumulationBehaviour"),
            currency=_int(el, "currency"),
        )

    def _reading_type(self, el: etree._Element, links: _Links, position: int) -> None:
        rt = self._reading_type_of(el, links.self_href)
        if links.self_href:
            self.reading_types.setdefault(_key(links.self_href), rt)   # the first definition wins
        self.reading_type_list.append((position, rt, tuple(_key(href) for href, _ in links.related)))

    def _summary(self, el: etree._Element, links: _Links, where: str) -> None:
        start, duration = _int(el, "billingPeriod", "start"), _int(el, "billingPeriod", "duration")
        if start is None or duration is None:
            raise EspiError(f"{where} has no <billingPeriod> with a start and a duration")
        if start >= MILLIS_FROM:
            self.notes.add("millis-summary", f"{where}: the billingPeriod start {start} looks like milliseconds; "
                                             "kept as given")
        keys = []
        for name in _SUMMARIES:
            if links.self_href:
                keys.append(_parent_of(_key(links.self_href), name))
            if links.up_href and _key(links.up_href).endswith("/" + name):
                keys.append(_key(links.up_href)[: -len(name) - 1])
        owner = self._owner(keys, links.related)
        if self.only is not None and owner != self.only:
            return
        consumption = el.find(_E + "overallConsumptionLastPeriod")
        items = tuple(
            CostItem(note=_text(li, "note") or None, amount=_int(li, "amount"), item_kind=_int(li, "itemKind"))
            for li in el.iterchildren(_E + "costAdditionalDetailLastPeriod"))
        self.summaries.append(UsageSummary(
            id=_last_segment(links.self_href),
            usage_point_id=owner,
            start=start,
            duration=duration,
            bill_last_period=_int(el, "billLastPeriod"),
            consumption=None if consumption is None else _int(consumption, "value"),
            consumption_uom=None if consumption is None else _int(consumption, "uom"),
            consumption_multiplier=(0 if consumption is None else _int(consumption, "powerOfTenMultiplier")) or 0,
            currency=_int(el, "currency"),
            tariff_profile=_text(el, "tariffProfile") or None,
            line_items=items,
        ))

    def _customer_part(self, local: str, el: etree._Element) -> None:
        if local not in ("Customer", "CustomerAccount", "CustomerAgreement", "ServiceLocation", "Meter"):
            return
        c = self.customer
        if c is None:
            c = self.customer = {"name": None, "kind": None, "address": None, "account_id": None,
                                 "agreement_ids": [], "service_addresses": [], "service_locations": [],
                                 "meter_serials": []}

        def text(*names: str) -> str | None:
            value = el.findtext("/".join(_C + n for n in names))
            return " ".join(value.split()) or None if value is not None else None

        if local == "Customer":
            c["name"] = c["name"] or text("customerName")
            c["kind"] = c["kind"] or text("kind")
            c["address"] = c["address"] or _address(el.find(f"{_C}Organisation/{_C}streetAddress"))
        elif local == "CustomerAccount":
            c["account_id"] = c["account_id"] or text("accountId")
            c["address"] = c["address"] or _address(el.find(f"{_C}contactInfo/{_C}streetAddress"))
        elif local == "CustomerAgreement":
            if text("agreementId"):
                c["agreement_ids"].append(text("agreementId"))
        elif local == "ServiceLocation":
            address = _address(el.find(_C + "mainAddress"))
            points = [_last_segment((p.text or "").strip()) for p in el.iterfind(f"{_C}UsagePoints/{_C}UsagePoint")]
            c["service_locations"].append({"address": address, "usage_point_ids": [p for p in points if p]})
            if address:
                c["service_addresses"].append(address)
        elif text("serialNumber"):
            c["meter_serials"].append(text("serialNumber"))

    # ------------------------------------------------------------ interval data

    def _block_owner(self, links: _Links, position: int) -> _MeterReading:
        self_href, up_href = links.self_href, links.up_href
        up_key = _key(up_href) if up_href else None
        # the usual case, self = up + "/" + id, needs no normalising
        plain = bool(self_href and up_href and self_href.startswith(up_href + "/")
                     and "/" not in self_href[len(up_href) + 1:])
        self_key = _key(self_href) if self_href and not plain else None
        if self_key and up_key and not _inside(self_key, up_key):
            raise EspiError(
                f"Entry {position} (IntervalBlock): its self link {links.self_href} is not inside its up link "
                f"{links.up_href}, so it is not clear which MeterReading the block belongs to")
        mr_key = None
        if up_key and up_key.endswith("/IntervalBlock"):
            mr_key = up_key[: -len("/IntervalBlock")]
        elif self_href and _parent_of(self_key or _key(self_href), "IntervalBlock"):
            mr_key = _parent_of(self_key or _key(self_href), "IntervalBlock")
        else:
            for href, kind in links.related:
                if kind.endswith("/MeterReading") or _key(href) in self.meter_readings:
                    mr_key = _key(href)
                    break
        if not links.self_href:
            self.notes.add("no-self", f"Entry {position} (IntervalBlock) has no self link; linked to its "
                                      "MeterReading by its other links")
        if mr_key is not None:
            mr = self.meter_readings.get(mr_key)
            if mr is None:      # its MeterReading is not in this document (an IntervalBlock feed)
                owner = self._owner([_parent_of(mr_key, "MeterReading")], ())
                mr = _MeterReading(index=len(self.meter_reading_list), key=mr_key,
                                   id=_last_segment(mr_key) if _parent_of(mr_key, "MeterReading") else None,
                                   usage_point_id=owner, position=0)
                self.meter_readings[mr_key] = mr
                self.meter_reading_list.append(mr)
            return mr
        self.notes.add("by-order", f"Entry {position} (IntervalBlock) has no link naming its MeterReading; "
                                   "taken to belong to the MeterReading before it")
        if self.last_meter_reading is None:
            mr = _MeterReading(index=len(self.meter_reading_list), key=None, id=None,
                               usage_point_id=self.last_point_id or "1", position=0)
            self.meter_reading_list.append(mr)
            self.last_meter_reading = mr
        return self.last_meter_reading

    def _interval_block(self, content: etree._Element, links: _Links, position: int, where: str):
        mr = self._block_owner(links, position)
        if self.only is not None and mr.usage_point_id != self.only:
            return None
        starts, durations, values = self._readings(content, where)
        if self.pending:
            first_s, first_d, first_v = _q(), _q(), _q()
            for s, d, v in self.pending:
                first_s.extend(s)
                first_d.extend(d)
                first_v.extend(v)
            first_s.extend(starts)
            first_d.extend(durations)
            first_v.extend(values)
            starts, durations, values = first_s, first_d, first_v
        if starts and starts[0] >= MILLIS_FROM:
            self.notes.add("millis", f"{where}: reading start {starts[0]} looks like milliseconds; starts and "
                                     "durations are kept as given")
        return mr, starts, durations, values

    def _readings(self, content: etree._Element, where: str) -> tuple[array.array, array.array, array.array]:
        """All IntervalReadings of the entry's IntervalBlock(s): three XPath calls over the whole
        entry in the usual case (an XPath result per field costs far less than visiting each
        reading from Python); reading by reading only when something is missing or not a
        number, to say which reading it is."""
        starts, durations, values = _STARTS(content), _DURATIONS(content), _VALUES(content)
        # Every reading has all three iff the lengths agree with the number of readings. Counting
        # the blocks' children (all readings but the leading <interval>) is much cheaper than an
        # XPath count; only when that does not add up is the XPath asked.
        count = 0
        for block in content.iterchildren(_E + "IntervalBlock"):
            count += len(block) - (1 if len(block) and block[0].tag == _E + "interval" else 0)
        if not len(starts) == len(durations) == len(values) == count:
            count = int(_COUNT(content))
        if len(starts) == len(durations) == len(values) == count:
            try:
                return _ints(starts), _ints(durations), _ints(values)
            except (ValueError, OverflowError):
                pass
        return self._readings_one_by_one(_READINGS(content), where, self.pending_count)

    def _readings_one_by_one(self, readings: list[etree._Element], where: str, offset: int
                             ) -> tuple[array.array, array.array, array.array]:
        starts, durations, values = _q(), _q(), _q()
        start_path, duration_path = f"{_E}timePeriod/{_E}start", f"{_E}timePeriod/{_E}duration"
        for number, reading in enumerate(readings, offset + 1):
            what = f"IntervalReading {number}"
            start, duration, value = (reading.findtext(start_path), reading.findtext(duration_path),
                                      reading.findtext(_E + "value"))
            if start is None:
                raise EspiError(f"{where}: {what} has no <timePeriod><start>")
            if duration is None:
                raise EspiError(f"{where}: {what} has no <timePeriod><duration>")
            if value is None:
                raise EspiError(f"{where}: {what} has no <value>")
            try:
                starts.append(_whole(start, where, f"{what} <start>"))
                durations.append(_whole(duration, where, f"{what} <duration>"))
                values.append(_whole(value, where, f"{what} <value>"))
            except OverflowError:
                raise EspiError(f"{where}: {what} has a number too large for 64 bits") from None
        return starts, durations, values

    # ------------------------------------------------------------ after the last entry

    def reading_type_for(self, mr: _MeterReading) -> ReadingType | None:
        for key in mr.reading_type_keys:
            if key in self.reading_types:
                return self.reading_types[key]
        if mr.nested_reading_type is not None:
            return mr.nested_reading_type
        if mr.key is not None:
            for _, rt, related in self.reading_type_list:
                if mr.key in related:
                    return rt
        if mr.position:
            # document order: the ReadingType entry right after the MeterReading, else right before it
            later = [(pos, rt) for pos, rt, _ in self.reading_type_list if pos > mr.position]
            others = [m.position for m in self.meter_reading_list if m.position > mr.position]
            if later and (not others or later[0][0] < min(others)):
                return later[0][1]
            earlier = [(pos, rt) for pos, rt, _ in self.reading_type_list if pos < mr.position]
            before = [m.position for m in self.meter_reading_list if 0 < m.position < mr.position]
            if earlier and (not before or earlier[-1][0] > max(before)):
                return earlier[-1][1]
        if len(self.reading_type_list) == 1:
            return self.reading_type_list[0][1]
        return None

    def usage_points(self) -> list[UsagePoint]:
        only_ltp = self.local_time_list[0] if len(self.local_time_list) == 1 else None
        return [replace(p, local_time=local_time_for(p.related, self.local_times, only_ltp)) for p in self.points]


# ---------------------------------------------------------------- public functions


def read_usage(source: bytes | BinaryIO, *, usage_point: str | None = None, max_bytes: int | None = None) -> Usage:
    """Read a Batch/Subscription (or ``…/UsagePoint/{id}``, Bulk), an IntervalBlock feed, a
    UsageSummary feed, a RetailCustomer batch or a single entry, in one streaming pass.

    ``source`` is the document's bytes or a binary file object (``open(path, "rb")``, an
    HTTP response's ``raw``), read in :data:`CHUNK`-sized pieces. ``usage_point`` keeps only
    that UsagePoint's meter, series and bills (the others' readings are not even converted);
    :class:`EspiError` if the document has no such UsagePoint. ``max_bytes`` refuses longer
    input with :class:`EspiError`. Series come in the order their MeterReadings appear.
    """
    reader = _Reader(usage_point)
    # Each block is appended to its series' columns at once and dropped: keeping thousands of
    # small per-block arrays alive until the end measured ~15% slower (heap fragmentation next
    # to the parser's own allocations) than these geometric reallocations.
    by_index: dict[int, Series] = {}
    for mr, starts, durations, values in reader.blocks(source, max_bytes):
        series = by_index.get(mr.index)
        if series is None:
            series = by_index[mr.index] = Series(mr.usage_point_id, mr.id, None)
        series.starts.extend(starts)
        series.durations.extend(durations)
        series.values.extend(values)
    for mr in reader.meter_reading_list:      # MeterReadings without data yet still show their ReadingType
        if mr.index not in by_index and (usage_point is None or mr.usage_point_id == usage_point):
            by_index[mr.index] = Series(mr.usage_point_id, mr.id, None)
    series_list = []
    for index in sorted(by_index):
        series = by_index[index]
        series.reading_type = reader.reading_type_for(reader.meter_reading_list[index])
        series_list.append(series)
    points = reader.usage_points()
    if usage_point is not None:
        known = {p.id for p in points} | {m.usage_point_id for m in reader.meter_reading_list} | {
            s.usage_point_id for s in reader.summaries}
        if usage_point not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise EspiError(f"The document has no UsagePoint {usage_point!r} (it has: {listed})")
        points = [p for p in points if p.id == usage_point]
    return Usage(usage_points=points, series=series_list, summaries=reader.summaries, customer=reader.customer,
                 warnings=reader.notes.messages())


def iter_interval_readings(source: bytes | BinaryIO, *, max_bytes: int | None = None
                           ) -> Iterator[tuple[str, str | None, int, int, int]]:
    """Yield ``(usage_point_id, meter_reading_id, start, duration, value)`` for every IntervalReading,
    in document order, while the document streams in: the lowest-level API, with memory flat in the
    size of the feed. Values are raw (see :class:`Series`); linking rules as :func:`read_usage`.
    """
    reader = _Reader()
    for mr, starts, durations, values in reader.blocks(source, max_bytes):
        point, reading = mr.usage_point_id, mr.id
        for start, duration, value in zip(starts, durations, values, strict=True):
            yield point, reading, start, duration, value

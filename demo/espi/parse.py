"""Read Green Button (ESPI) Atom XML safely and tolerantly (the demo site's side).

Safety: every document goes through :func:`parse_document`, which refuses any
DOCTYPE (so no entity tricks: XXE, billion laughs) before the tree is built and
parses with :func:`safe_parser` (no entity resolution, no network, no DTD, the
default libxml2 depth/size limits).

Tolerance: elements are matched by namespace URI, never by prefix (``espi:``,
``ns0:`` and default-namespace documents all work); ``<content>`` may have any
``type`` or none; optional ESPI fields may be missing.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from urllib.parse import urlsplit, urlunsplit

from lxml import etree

from .model import Authorization, DateTimeInterval, LocalTimeParameters, UsagePoint

ATOM_NS = "http://www.w3.org/2005/Atom"
ESPI_NS = "http://naesb.org/espi"
CUST_NS = "http://naesb.org/espi/customer"

_A = "{%s}" % ATOM_NS
_E = "{%s}" % ESPI_NS


class EspiError(ValueError):
    """The data is not usable Green Button XML; the message says why in plain words."""


# ---------------------------------------------------------------- safe parsing


def safe_parser() -> etree.XMLParser:
    """A fresh lxml parser that never resolves entities, loads DTDs or touches the network."""
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
        remove_comments=True,
    )


class _DoctypeFound(Exception):
    pass


class _RootReached(Exception):
    def __init__(self, tag: str) -> None:
        super().__init__(tag)
        self.tag = tag


class _PrologCheck:
    """Parser target that stops at the root start tag; raises if a DOCTYPE came first."""

    def doctype(self, *args):
        raise _DoctypeFound

    def start(self, tag, *args):
        raise _RootReached(tag)

    def end(self, *args):
        pass

    def data(self, *args):
        pass

    def close(self):
        return None


#: libxml2's resource limits (kept by ``huge_tree=False``), said in plain words: (pattern, text)
_LIMITS = (
    (re.compile(r"Excessive depth in document: (\d+)"),
     "elements are nested more than {0} deep, the parser's limit (Green Button XML needs about 10); "
     "refused as too deep"),
    (re.compile(r"Text node too long"),
     "a text node is longer than the parser's limit of 10,000,000 characters; refused as too large"),
    (re.compile(r"Buffer size limit exceeded|[Nn]ame too long|AttValue length too long|"
                r"Huge input lookup|Dictionary size limit exceeded"),
     "a value or name is longer than the parser's limit; refused as too large"),
    (re.compile(r"(Maximum )?[Ee]ntity amplification|[Ee]ntity loop|[Dd]etected an entity reference loop"),
     "entities expand far beyond the document's size (an entity bomb); refused"),
)


def plain_message(message: str) -> str:
    """libxml2's message, with its resource-limit errors (too deep, text too long, entity
    amplification) said in plain words instead of "use XML_PARSE_HUGE option"."""
    message = message.strip()
    for pattern, text in _LIMITS:
        found = pattern.search(message)
        if found:
            return text.format(*found.groups())
    return message


def xml_error(message: str, line: int | None, column: int | None) -> EspiError:
    """The :class:`EspiError` for a libxml2 error at ``line``/``column``, resource limits in
    plain words (:func:`plain_message`)."""
    plain = plain_message(re.sub(r", line \d+, column \d+$", "", message.strip()))
    if not line or line < 1:
        return EspiError(f"Not XML: {plain}")
    return EspiError(f"Not XML: line {line}, column {column}: {plain}")


def _not_xml(exc: etree.XMLSyntaxError) -> EspiError:
    return xml_error(exc.msg or str(exc), exc.lineno, exc.offset)


not_xml_error = _not_xml  # for the streaming reader (demo.espi.reader)

_PROLOG_CHUNK = 256  # small, so a refused DOCTYPE stops the parser before much of it is read
_DOCTYPE_REFUSED = "The document has a DOCTYPE; Green Button XML never needs one, so it is refused"


class PrologGuard:
    """Checks a document's prolog incrementally, before the real parser sees it.

    Feed the document's bytes in order (any chunking); :meth:`feed` raises
    :class:`EspiError` if a DOCTYPE comes before the root element (so entity
    declarations are never even parsed by the real parser) or the prolog is not
    XML, and returns the root's tag (Clark notation, ``{ns}local``) once the
    root's start tag has been seen; after that the guard is :attr:`done` and
    ignores further input. Shared by :func:`parse_document` (whole documents)
    and :mod:`demo.espi.reader` (streams), so both refuse exactly the same input.
    """

    def __init__(self) -> None:
        self._parser = etree.XMLParser(
            target=_PrologCheck(), resolve_entities=False, no_network=True,
            load_dtd=False, huge_tree=False,
        )
        self.root_tag: str | None = None

    @property
    def done(self) -> bool:
        return self.root_tag is not None

    def _run(self, step) -> None:
        """Feed or close the prolog parser, turning what it meets into our answer."""
        try:
            step()
        except _DoctypeFound:
            raise EspiError(_DOCTYPE_REFUSED) from None
        except _RootReached as reached:
            self.root_tag = reached.tag
        except etree.XMLSyntaxError as exc:
            raise _not_xml(exc) from None

    def feed(self, data: bytes) -> str | None:
        if self.root_tag is not None:
            return self.root_tag

        def feed_all() -> None:
            for offset in range(0, len(data), _PROLOG_CHUNK):
                self._parser.feed(data[offset:offset + _PROLOG_CHUNK])

        self._run(feed_all)
        return self.root_tag

    def close(self) -> str:
        """End of input: the root tag, or :class:`EspiError` if there never was a root element."""
        if self.root_tag is None:
            self._run(self._parser.close)
        if self.root_tag is None:
            raise EspiError("Not XML: the document has no root element")
        return self.root_tag


def check_atom_root(tag: str) -> None:
    """Raise :class:`EspiError` unless ``tag`` (Clark notation) is an Atom feed or entry."""
    if tag not in (_A + "feed", _A + "entry"):
        qname = etree.QName(tag)
        where = f" (namespace {qname.namespace})" if qname.namespace else ""
        raise EspiError(f"Expected an Atom feed or entry, got <{qname.localname}>{where}")


def parse_document(data: bytes) -> etree._Element:
    """Parse ``data`` (bytes) and return the root element.

    Raises :class:`EspiError` for a DOCTYPE (checked before anything after the
    prolog is parsed, so entity declarations are never expanded) and for
    anything that is not well-formed XML.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"parse_document expects bytes, not {type(data).__name__}")
    data = bytes(data)
    if not data.strip():
        raise EspiError("The document is empty")
    # 1) Prolog only, fed in small chunks: stop at the root's start tag.
    guard = PrologGuard()
    guard.feed(data)
    guard.close()
    # 2) The whole document.
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        raise _not_xml(exc) from None
    if root.getroottree().docinfo.doctype:  # belt and braces
        raise EspiError(_DOCTYPE_REFUSED)
    return root


def _atom_root(data: bytes) -> etree._Element:
    root = parse_document(data)
    check_atom_root(root.tag)
    return root


# ---------------------------------------------------------------- small helpers


def _path(*names: str) -> str:
    return "/".join(_E + name for name in names)


def _text(el: etree._Element, *names: str) -> str | None:
    """Stripped text of the ESPI descendant ``names[0]/names[1]/...``, or None."""
    value = el.findtext(_path(*names))
    if value is None:
        return None
    return value.strip()


def _int(el: etree._Element, *names: str) -> int | None:
    value = _text(el, *names)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        where = "/".join(names)
        raise EspiError(
            f"<{where}> in {etree.QName(el).localname} should be a whole number, got {value!r}"
        ) from None


def _interval(el: etree._Element, name: str) -> DateTimeInterval | None:
    start, duration = _int(el, name, "start"), _int(el, name, "duration")
    if start is None or duration is None:
        return None
    return DateTimeInterval(start=start, duration=duration)


def _last_segment(href: str | None) -> str | None:
    if not href:
        return None
    segment = urlsplit(href).path.rstrip("/").rsplit("/", 1)[-1]
    return segment or None


def normalize_href(href: str) -> str:
    """Compare-friendly href: lower-case scheme/host, no ``//`` runs or trailing ``/`` in the path."""
    parts = urlsplit(href.strip())
    path = re.sub(r"/{2,}", "/", parts.path).rstrip("/")
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))


@dataclass(frozen=True)
class _Resource:
    """One Atom entry: its links, title and the element inside ``<content>``."""

    position: int  # 1-based, in document order
    title: str | None
    self_href: str | None
    related: tuple[str, ...]
    payload: etree._Element | None


def _resources(root: etree._Element) -> list[_Resource]:
    entries = [root] if root.tag == _A + "entry" else root.findall(_A + "entry")
    out = []
    for position, entry in enumerate(entries, 1):
        self_href, related = None, []
        for link in entry.findall(_A + "link"):
            rel, href = link.get("rel", "alternate"), link.get("href")
            if not href:
                continue
            if rel == "self" and self_href is None:
                self_href = href.strip()
            elif rel == "related":
                related.append(href.strip())
        content = entry.find(_A + "content")
        payload = None
        if content is not None:
            payload = next(content.iterchildren(tag=etree.Element), None)
        title = entry.findtext(_A + "title")
        out.append(_Resource(
            position=position,
            title=title.strip() if title is not None else None,
            self_href=self_href,
            related=tuple(related),
            payload=payload,
        ))
    return out


def _entry_name(entry: etree._Element) -> str:
    """A name for messages: the self link's ``espi-entry/X`` type, else the title."""
    for link in entry.findall(_A + "link"):
        if link.get("rel") == "self" and "/" in (link.get("type") or ""):
            return link.get("type").rsplit("/", 1)[-1]
    title = (entry.findtext(_A + "title") or "").strip()
    return title or "(untitled)"


def require_content(data: bytes) -> None:
    """Raise :class:`EspiError` if any entry lacks a resource inside ``<content>``.

    The readers below skip such entries; call this when the whole feed must be sound.
    """
    root = _atom_root(data)
    entries = [root] if root.tag == _A + "entry" else root.findall(_A + "entry")
    for entry in entries:
        content = entry.find(_A + "content")
        if content is None:
            raise EspiError(f"Entry '{_entry_name(entry)}' has no <content>")
        if next(content.iterchildren(tag=etree.Element), None) is None:
            raise EspiError(f"Entry '{_entry_name(entry)}' has no XML resource inside <content>")


# ---------------------------------------------------------------- Authorization


def _authorization(res: _Resource) -> Authorization:
    el = res.payload
    status = _int(el, "status")
    if status is None:
        raise EspiError("The Authorization has no <status>")
    authorization_uri = _text(el, "authorizationURI")
    uid = _last_segment(res.self_href) or _last_segment(authorization_uri) or str(res.position)
    return Authorization(
        uid=uid,
        status=status,
        scope=_text(el, "scope") or "",
        token_type=_text(el, "token_type") or "Bearer",
        authorized_period=_interval(el, "authorizedPeriod"),
        published_period=_interval(el, "publishedPeriod"),
        expires_at=_int(el, "expires_at"),
        grant_type=_text(el, "grant_type") or None,
        resource_uri=_text(el, "resourceURI") or None,
        authorization_uri=authorization_uri or None,
        customer_resource_uri=_text(el, "customerResourceURI") or None,
    )


def parse_authorizations(data: bytes) -> list[Authorization]:
    """Every Authorization in a feed or bare entry (possibly none)."""
    root = _atom_root(data)
    return [
        _authorization(res)
        for res in _resources(root)
        if res.payload is not None and res.payload.tag == _E + "Authorization"
    ]


def parse_authorization(data: bytes) -> Authorization:
    """The (first) Authorization of a bare entry or a feed."""
    found = parse_authorizations(data)
    if not found:
        raise EspiError("No <Authorization> resource was found in the document")
    return found[0]


# ---------------------------------------------------------------- UsagePoint


def _local_time(el: etree._Element) -> LocalTimeParameters | None:
    tz_offset = _int(el, "tzOffset")
    if tz_offset is None:
        return None
    defaults = LocalTimeParameters(tz_offset)
    dst_offset = _int(el, "dstOffset")
    return LocalTimeParameters(
        tz_offset=tz_offset,
        dst_offset=defaults.dst_offset if dst_offset is None else dst_offset,
        dst_start_rule=_text(el, "dstStartRule") or defaults.dst_start_rule,
        dst_end_rule=_text(el, "dstEndRule") or defaults.dst_end_rule,
    )


def parse_local_time(data: bytes) -> LocalTimeParameters | None:
    """The LocalTimeParameters of an entry (or the first one in a feed), if any."""
    root = _atom_root(data)
    for res in _resources(root):
        if res.payload is not None and res.payload.tag == _E + "LocalTimeParameters":
            return _local_time(res.payload)
    return None


def _sdp_text(el: etree._Element, name: str) -> str | None:
    # espi.xsd: serviceDeliveryPoint; UtilityAPI 2024 captures: ServiceDeliveryPoint.
    for sdp in ("serviceDeliveryPoint", "ServiceDeliveryPoint"):
        value = _text(el, sdp, name)
        if value is not None:
            return value
    return None


def usage_point_from(el: etree._Element, *, id: str, self_href: str | None, title: str | None,
                     related: tuple[str, ...]) -> UsagePoint:
    """A UsagePoint (without its LocalTimeParameters) from its ESPI element and entry links."""
    return UsagePoint(
        id=id,
        self_uri=self_href,
        title=title,
        service_kind=_int(el, "ServiceCategory", "kind"),
        tariff_profile=_sdp_text(el, "tariffProfile"),
        service_delivery_point_name=_sdp_text(el, "name"),
        related=related,
    )


def local_time_for(related: tuple[str, ...], local_times: dict[str, LocalTimeParameters | None],
                   only: LocalTimeParameters | None) -> LocalTimeParameters | None:
    """The LocalTimeParameters a UsagePoint's related links point at (``local_times`` is keyed by
    :func:`normalize_href` of their self links), else ``only`` (the document's single one, if any)."""
    return next((local_times[normalize_href(h)] for h in related if normalize_href(h) in local_times), only)


def parse_usage_points(data: bytes) -> list[UsagePoint]:
    """UsagePoints of a Batch/Subscription feed, a UsagePoint feed or a single entry.

    Each gets the LocalTimeParameters whose self link matches one of its related
    links (hrefs compared after :func:`normalize_href`); failing that, the only
    LocalTimeParameters in the document, if there is exactly one. The id is the
    last path segment of the self link, else the UsagePoint's 1-based position.
    """
    root = _atom_root(data)
    resources = [r for r in _resources(root) if r.payload is not None]

    local_times: dict[str, LocalTimeParameters | None] = {}
    found_ltps: list[LocalTimeParameters] = []
    for res in resources:
        if res.payload.tag == _E + "LocalTimeParameters":
            ltp = _local_time(res.payload)
            if ltp is not None:
                found_ltps.append(ltp)
                if res.self_href:
                    local_times[normalize_href(res.self_href)] = ltp
    only_ltp = found_ltps[0] if len(found_ltps) == 1 else None

    points = []
    for res in resources:
        el = res.payload
        if el.tag != _E + "UsagePoint":
            continue
        point = usage_point_from(el, id=_last_segment(res.self_href) or str(len(points) + 1),
                                 self_href=res.self_href, title=res.title, related=res.related)
        points.append(replace(point, local_time=local_time_for(res.related, local_times, only_ltp)))
    return points

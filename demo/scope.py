"""Green Button / UtilityAPI scope strings: parse, validate, describe, build.

A scope is ``;``-separated ``NAME=VALUE`` parameters, for example
``FB=4_16_51;HistoryLength=63072000;AdditionalScope=noedit_meters-all_auth-phone-1111111111``.

* ``FB`` (required): function block numbers joined by ``_``.
* ``HistoryLength`` (seconds), ``PreferredAuthEndDate`` (unix time, 0 = until
  revoked), ``AdditionalScope`` (items joined by ``_``).
* Informational parameters seen in granted scopes (``IntervalDuration``,
  ``BlockDuration``, ``SubscriptionFrequency``, ``AccountCollection``, ``BR``) and
  unknown parameters are kept in order in :attr:`Scope.extra`; unknown ones add a
  warning. Known names are matched case-insensitively (Hydro One sends
  ``historyLength``) and written back in their canonical spelling.

Lookup prefill items ``auth-{type}[-{value}]`` carry percent-encoded values, as
on PCE's page (``auth-email-uapi-test-residential%40example.com``). Building
uses :func:`encode_value` (``quote(value, safe="")`` plus ``_`` -> ``%5F``).
Parsing is lenient: unencoded values are accepted, and ``_`` fragments that do
not start a known item are glued back onto the previous auth value, so IEDR's
``auth-test-test_residential`` has the value ``test_residential``.

No Flask here: this module is pure stdlib so both apps and the tests share it.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import quote, unquote

__all__ = [
    "FUNCTION_BLOCKS", "REQUESTABLE_FUNCTION_BLOCKS", "LOOKUP_TYPES", "AUTH_TYPES",
    "ScopeError", "AdditionalItem", "Scope", "parse_scope", "build_scope", "auth_item",
    "encode_value", "decode_value", "describe_function_block", "history_length_months",
    "parse_relative", "Explanation", "Difference", "explain", "explain_param", "compare",
]

FUNCTION_BLOCKS: dict[int, str] = {
    1: "Common usage data", 2: "Download My Data", 3: "Connect My Data",
    4: "Interval metering", 5: "Electricity interval metering",
    6: "Demand electricity metering", 7: "Net metering", 8: "Forward and reverse metering",
    9: "Register values", 10: "Gas interval metering", 11: "Water interval metering",
    12: "Cost of interval data", 13: "Security and privacy classes",
    14: "Authorization and authentication (legacy)", 15: "Usage summary",
    16: "Usage summary with cost", 17: "Power quality summary", 18: "Multiple usage points",
    19: "Partial update data",
    27: "Usage summary with demands and previous-day attributes",
    28: "Usage summary costs for the current billing period",
    29: "Temperature interval metering",
    31: "Authorization without pre-negotiated scope", 32: "Resource-level REST",
    34: "SFTP for bulk usage data", 35: "REST for bulk usage data",
    36: "Third-party application registration", 37: "Query parameters",
    38: "On-demand requests", 39: "Push notifications of new data",
    40: "Offline authorization", 41: "Manage application information",
    44: "Manage authorizations", 46: "Retail customer (legacy alias of 51)",
    47: "REST for retail customer bulk", 51: "Retail customer",
}

REQUESTABLE_FUNCTION_BLOCKS: dict[int, str] = {
    4: "Interval usage data (15-minute meter readings)",
    16: "Bills: usage summaries with cost",
    39: "Notifications when new data is available (push)",
    51: "Account details: name, account number, service address, meters",
}

LOOKUP_TYPES = ("account", "phone", "email", "address")
AUTH_TYPES = LOOKUP_TYPES + ("utility", "sso", "test")  # the last three: no value checks

DAY = 86400
YEAR_SECONDS = 365 * DAY                 # "y" in historical-/ongoing- durations
MONTH_SECONDS = int(30.4375 * DAY)       # "m": an average month, 2,629,800 s
_UNIT_SECONDS = {"y": YEAR_SECONDS, "m": MONTH_SECONDS, "d": DAY}
_UNIT_WORDS = {"y": "year", "m": "month", "d": "day"}

_KNOWN_PARAMS = ("FB", "HistoryLength", "PreferredAuthEndDate", "AdditionalScope",
                 "IntervalDuration", "BlockDuration", "SubscriptionFrequency",
                 "AccountCollection", "BR")
_CANONICAL = {name.lower(): name for name in _KNOWN_PARAMS}
_ITEM_STARTS = ("auth-", "historical-", "ongoing-", "meters-all", "sou-", "noedit")
_DIGITS = re.compile(r"[0-9]+")
_RELATIVE = re.compile(r"([0-9]{1,6})([ymd])")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_LOOKUP_WORDS = {"account": "account number", "phone": "phone number",
                 "email": "email address", "address": "billing address"}


class ScopeError(ValueError):
    """A scope that cannot be used; ``part``/``start``/``end`` locate the culprit."""

    def __init__(self, message: str, part: str = "", start: int = -1, end: int = -1):
        super().__init__(message)
        self.message = message
        self.part = part
        self.start = start
        self.end = end


def encode_value(value: str) -> str:
    """Percent-encode a value for use inside an AdditionalScope item."""
    try:
        return quote(value, safe="").replace("_", "%5F")
    except UnicodeEncodeError:
        raise ScopeError("The value contains characters that are not valid text", value) from None


def decode_value(text: str) -> str:
    """Undo :func:`encode_value`; unencoded text passes through unchanged."""
    return unquote(text)


def auth_item(lookup_type: str, value: str | None) -> str:
    """The item ``auth-{type}[-{encoded value}]``; an empty value means none."""
    if lookup_type not in AUTH_TYPES:
        raise ScopeError(_unknown_type_message(lookup_type), lookup_type)
    return f"auth-{lookup_type}-{encode_value(value)}" if value else f"auth-{lookup_type}"


def describe_function_block(n: int) -> str:
    """Plain words for a function block number."""
    return REQUESTABLE_FUNCTION_BLOCKS.get(n) or FUNCTION_BLOCKS.get(n) or f"Unknown function block {n}"


def history_length_months(seconds: int) -> float:
    """``HistoryLength`` seconds as average months (30.4375 days), one decimal."""
    return round(seconds / (30.4375 * DAY), 1)


def parse_relative(value: str) -> int | None:
    """Seconds for ``2y`` / ``18m`` / ``90d`` (y = 365 days, m = 30.4375 days, d = 1 day).

    Anything else (``none``, an ISO date, garbage) gives None.
    """
    match = _RELATIVE.fullmatch(value)
    if not match:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@dataclass(frozen=True)
class AdditionalItem:
    """One ``_``-separated AdditionalScope item."""

    kind: str            # auth, historical, ongoing, meters-all, sou, noedit, unknown
    name: str | None     # auth: the lookup type; sou: the id; else None
    value: str | None    # decoded auth value, historical/ongoing value, sou id; else None
    raw: str             # the item exactly as it appeared in the parsed text

    def canonical(self) -> str:
        """The item as :meth:`Scope.to_string` writes it (values re-encoded)."""
        if self.kind == "auth":
            return auth_item(self.name or "", self.value)
        if self.kind in ("historical", "ongoing"):
            return f"{self.kind}-{self.value}"
        if self.kind == "sou":
            return f"sou-{encode_value(self.value or '')}"
        return self.kind if self.kind in ("noedit", "meters-all") else self.raw

    def describe(self) -> str:
        """Plain words for customers and integrators."""
        if self.kind == "noedit":
            return "Customer cannot edit the request"
        if self.kind == "meters-all":
            return "Share all meters"
        if self.kind == "sou":
            if self.value == "default":
                return "Show the default scope of use statement"
            return f"Show scope of use statement '{self.value}'"
        if self.kind in ("historical", "ongoing"):
            return _describe_period(self.kind, self.value or "")
        if self.kind == "auth":
            return _describe_auth(self.name or "", self.value)
        return f"Unrecognised option '{self.raw}' (passed through unchanged)"


@dataclass(frozen=True)
class Scope:
    """A parsed scope. Build one with :func:`parse_scope` or :func:`build_scope`."""

    function_blocks: tuple[int, ...]
    history_length: int | None = None
    preferred_auth_end_date: int | None = None
    additional: tuple[AdditionalItem, ...] = ()
    extra: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def lookup(self) -> tuple[str, str] | None:
        """The first customer lookup prefill with a value, as ``(type, value)``."""
        for item in self.additional:
            if item.kind == "auth" and item.name in LOOKUP_TYPES and item.value:
                return item.name, item.value
        return None

    @property
    def lookup_type(self) -> str | None:
        """The first lookup type named by an ``auth-{type}`` item, with or without a value."""
        for item in self.additional:
            if item.kind == "auth" and item.name in LOOKUP_TYPES:
                return item.name
        return None

    @property
    def noedit(self) -> bool:
        return any(item.kind == "noedit" for item in self.additional)

    @property
    def meters_all(self) -> bool:
        return any(item.kind == "meters-all" for item in self.additional)

    def get(self, name: str) -> str | None:
        """The value of any parameter as written by :meth:`to_string`, or None."""
        wanted = _CANONICAL.get(name.lower(), name)
        if wanted == "FB":
            return "_".join(str(n) for n in self.function_blocks)
        if wanted == "HistoryLength":
            return None if self.history_length is None else str(self.history_length)
        if wanted == "PreferredAuthEndDate":
            return None if self.preferred_auth_end_date is None else str(self.preferred_auth_end_date)
        if wanted == "AdditionalScope":
            return "_".join(item.canonical() for item in self.additional) or None
        return next((value for key, value in self.extra if key == wanted), None)

    def to_string(self) -> str:
        """Canonical text: FB, HistoryLength, PreferredAuthEndDate, extras, AdditionalScope."""
        parts = [f"FB={self.get('FB')}"]
        if self.history_length is not None:
            parts.append(f"HistoryLength={self.history_length}")
        if self.preferred_auth_end_date is not None:
            parts.append(f"PreferredAuthEndDate={self.preferred_auth_end_date}")
        parts.extend(f"{key}={value}" for key, value in self.extra)
        if self.additional:
            parts.append(f"AdditionalScope={self.get('AdditionalScope')}")
        return ";".join(parts)

    def replace(self, **changes) -> Scope:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)


def parse_scope(text: str) -> Scope:
    """Parse and validate a scope string; raises :class:`ScopeError`."""
    text = text or ""
    body = text.strip()
    if not body:
        raise ScopeError("The scope is empty")
    try:
        body.encode("utf-8")
    except UnicodeEncodeError as exc:
        at = len(text) - len(text.lstrip()) + exc.start
        raise ScopeError("The scope contains characters that are not valid text",
                         text[at:at + 1], at, at + 1) from None
    segments = _split(body, ";", len(text) - len(text.lstrip()))
    if len(segments) > 1 and not segments[-1][0].strip():
        segments.pop()  # a trailing ';' (PG&E sends one)
    warnings: list[str] = []
    seen: set[str] = set()
    fields: dict = {}
    extra: list[tuple[str, str]] = []
    for segment, start in segments:
        if not segment.strip():
            at = start + len(segment)
            raise ScopeError("Empty parameter (two ';' in a row)", ";", at, at + 1)
        name_text, eq, value_text = segment.partition("=")
        name = name_text.strip()
        if not eq:
            raise ScopeError(f"Parameter '{name}' has no '=' (expected NAME=VALUE)",
                             segment, start, start + len(segment))
        if not name:
            raise ScopeError("Parameter name is missing before '='", segment, start, start + len(segment))
        canonical = _CANONICAL.get(name.lower(), name)
        if canonical in seen:
            raise ScopeError(f"Parameter '{canonical}' appears more than once",
                             segment, start, start + len(segment))
        seen.add(canonical)
        if canonical != name:
            warnings.append(f"Parameter '{name}' read as '{canonical}'")
        value = value_text.strip()
        vstart = start + len(name_text) + 1 + len(value_text) - len(value_text.lstrip())
        if canonical == "FB":
            if not value:
                raise ScopeError("FB is empty; list function block numbers like FB=4_16_51",
                                 segment, start, start + len(segment))
            fields["function_blocks"] = _parse_blocks(value, vstart, warnings)
        elif canonical == "HistoryLength":
            fields["history_length"] = _whole(
                value, vstart, f"HistoryLength must be a whole number of seconds, got '{value}'")
        elif canonical == "PreferredAuthEndDate":
            fields["preferred_auth_end_date"] = _whole(
                value, vstart, "PreferredAuthEndDate must be a Unix timestamp in whole seconds "
                f"(0 = until revoked), got '{value}'")
        elif canonical == "AdditionalScope":
            fields["additional"] = tuple(_parse_additional(value, vstart, warnings))
        else:
            if canonical == "AccountCollection":
                _whole(value, vstart, f"AccountCollection must be a whole number, got '{value}'")
            elif canonical not in _KNOWN_PARAMS:
                warnings.append(f"Unknown parameter '{name}' (kept as is)")
            extra.append((canonical, value))
    if "function_blocks" not in fields:
        raise ScopeError("FB is required: the function blocks to share, e.g. FB=4_16_51")
    lookups = [i for i in fields.get("additional", ())
               if i.kind == "auth" and i.name in LOOKUP_TYPES and i.value]
    if len(lookups) > 1:
        warnings.append("More than one customer lookup; the first one is used")
    return Scope(extra=tuple(extra), warnings=tuple(warnings), **fields)


def build_scope(function_blocks, *, history_length=None, preferred_auth_end_date=None,
                additional=(), lookup=None, extra=()) -> str:
    """Assemble, validate and return a canonical scope string.

    ``additional`` holds raw item strings or :class:`AdditionalItem`; ``lookup`` is a
    ``(type, value)`` pair appended as an auth item; ``extra`` is ``(name, value)``
    pairs or a mapping. Raises :class:`ScopeError`.
    """
    blocks = list(function_blocks)
    if not blocks:
        raise ScopeError("At least one function block is required")
    parts = ["FB=" + "_".join(str(n) for n in blocks)]
    if history_length is not None:
        parts.append(f"HistoryLength={history_length}")
    if preferred_auth_end_date is not None:
        parts.append(f"PreferredAuthEndDate={preferred_auth_end_date}")
    for name, value in (extra.items() if hasattr(extra, "items") else extra):
        name, value = str(name), str(value)
        if not name or any(c in name for c in ";=") or ";" in value:
            raise ScopeError(f"Parameter {name}={value} cannot contain ';' (or '=' in its name)",
                             f"{name}={value}")
        parts.append(f"{name}={value}")
    items = [i.canonical() if isinstance(i, AdditionalItem) else str(i) for i in additional]
    for item in items:
        if ";" in item:
            raise ScopeError(f"AdditionalScope item '{item}' cannot contain ';'", item)
    if lookup is not None:
        items.append(auth_item(*lookup))
    if items:
        parts.append("AdditionalScope=" + "_".join(items))
    return parse_scope(";".join(parts)).to_string()


# --- helpers ---------------------------------------------------------------

def _split(text: str, sep: str, offset: int) -> list[tuple[str, int]]:
    """Split on ``sep``, keeping each piece's offset into the original string."""
    pieces, pos = [], offset
    for piece in text.split(sep):
        pieces.append((piece, pos))
        pos += len(piece) + len(sep)
    return pieces


def _whole(value: str, start: int, message: str) -> int:
    """A non-negative integer written in ASCII digits (at most 18 of them)."""
    if not _DIGITS.fullmatch(value) or len(value.lstrip("0")) > 18:
        raise ScopeError(message, value, start, start + len(value))
    return _int(value)


def _parse_blocks(value: str, offset: int, warnings: list[str]) -> tuple[int, ...]:
    pieces = _split(value, "_", offset)
    blocks: list[int] = []
    for index, (piece, start) in enumerate(pieces):
        if not piece:
            at = start - 1 if index else start  # point at the '_' next to the gap
            raise ScopeError("FB has an empty item (two '_' in a row, or '_' at an end)", "_", at, at + 1)
        if not _DIGITS.fullmatch(piece):
            raise ScopeError(f"Function block '{piece}' is not a number", piece, start, start + len(piece))
        number = _int(piece) if len(piece.lstrip("0")) <= 2 else 0
        if number == 0:
            raise ScopeError(f"Function block {piece} is out of range (1-99)",
                             piece, start, start + len(piece))
        if number in blocks:
            warnings.append(f"Function block {number} is listed twice")
        elif number not in FUNCTION_BLOCKS:
            warnings.append(f"Function block {number} is not one this demo knows")
        blocks.append(number)
    return tuple(blocks)


def _parse_additional(value: str, offset: int, warnings: list[str]) -> list[AdditionalItem]:
    items: list[AdditionalItem] = []
    if not value:
        warnings.append("AdditionalScope is empty")
    for piece, start in _split(value, "_", offset) if value else ():
        prev = items[-1] if items else None
        bare = piece.strip()
        if prev and prev.kind == "auth" and len(prev.raw) > 5 + len(prev.name or "") \
                and not bare.startswith(_ITEM_STARTS):
            items[-1] = _auth(prev.raw + "_" + piece, prev.name or "")  # part of the value
        elif not bare:
            warnings.append("Empty AdditionalScope item ignored")
        else:
            items.append(_parse_item(bare, start + len(piece) - len(piece.lstrip()), warnings))
    return items


def _parse_item(piece: str, start: int, warnings: list[str]) -> AdditionalItem:
    if piece in ("noedit", "meters-all"):
        return AdditionalItem(piece, None, None, piece)
    if piece.startswith("sou-"):
        if piece == "sou-":
            raise ScopeError("sou- needs a scope of use id, e.g. sou-default", piece, start, start + 4)
        ident = decode_value(piece[4:])
        return AdditionalItem("sou", ident, ident, piece)
    for kind in ("historical", "ongoing"):
        if piece.startswith(kind + "-"):
            period = piece[len(kind) + 1:]
            if not _valid_period(period):
                at = start + len(kind) + 1
                raise ScopeError(f"{kind}- needs a date (YYYY-MM-DD), a length like 2y, 18m or 90d, "
                                 f"or none; got '{period}'", period, at, at + len(period))
            return AdditionalItem(kind, None, period, piece)
    if piece.startswith("auth-"):
        kind = piece[5:].partition("-")[0]
        if not kind:
            raise ScopeError("auth- needs a lookup type, e.g. auth-phone-1111111111",
                             piece, start, start + len(piece))
        if kind not in AUTH_TYPES:
            raise ScopeError(_unknown_type_message(kind), kind, start + 5, start + 5 + len(kind))
        return _auth(piece, kind)
    warnings.append(f"Unknown AdditionalScope item '{piece}' (kept as is)")
    return AdditionalItem("unknown", None, None, piece)


def _auth(raw: str, kind: str) -> AdditionalItem:
    """An auth item from its raw text; an empty value becomes None."""
    value = raw[len(kind) + 6:]
    return AdditionalItem("auth", kind, decode_value(value) if value else None, raw)


def _valid_period(period: str) -> bool:
    if period == "none" or _RELATIVE.fullmatch(period):
        return True
    if not _ISO_DATE.fullmatch(period):
        return False
    try:
        date.fromisoformat(period)
    except ValueError:
        return False
    return True


def _unknown_type_message(kind: str) -> str:
    return f"Unknown lookup type '{kind}'; expected account, phone, email or address"


def _describe_period(kind: str, period: str) -> str:
    if period == "none":
        return "No historical data" if kind == "historical" else "No ongoing data (past data only)"
    match = _RELATIVE.fullmatch(period)
    if match:
        count = int(match.group(1))
        span = f"{count} {_UNIT_WORDS[match.group(2)]}{'s' if count != 1 else ''}"
        return f"Historical data for the past {span}" if kind == "historical" else f"Ongoing data for {span}"
    return f"Historical data back to {period}" if kind == "historical" else f"Ongoing data until {period}"


def _describe_auth(kind: str, value: str | None) -> str:
    if kind in _LOOKUP_WORDS:
        words = _LOOKUP_WORDS[kind]
        if value:
            return f"Find the customer by {words} {value}"
        return f"Customer looks up their account by {words}"
    if kind == "utility":
        return f"Customer's utility: {value}" if value else "Customer picks their utility"
    if kind == "sso":
        return "Customer signs in with the utility's single sign-on"
    return f"Sign in as test scenario {value}" if value else "Sign in as a test scenario"


# --- explaining and comparing scopes (the run page's scope card, the /decode page) ---------

#: Parameters that appear in final (granted) scopes but cannot be requested (reference §2.3).
INFORMATIONAL = ("IntervalDuration", "BlockDuration", "SubscriptionFrequency", "AccountCollection", "BR")
_NAMED_FREQUENCIES = {"daily": "daily", "weekly": "weekly", "monthly": "monthly",
                      "billingperiod": "once per billing period", "hourly": "hourly"}


@dataclass(frozen=True)
class Explanation:
    """One ``NAME=VALUE`` of a scope in plain words; ``items`` explain list members (FB numbers,
    AdditionalScope items) one by one, so an integrator can read a scope without the spec."""

    name: str
    value: str
    meaning: str
    items: tuple[tuple[str, str], ...] = ()
    informational: bool = False       # only in final scopes; a third party cannot request it


@dataclass(frozen=True)
class Difference:
    """One line of a requested-vs-granted comparison.

    ``change`` is ``same``, ``added`` (by the utility), ``removed`` (not granted),
    ``shortened``/``lengthened`` (a period the customer or utility changed), ``changed``,
    ``request-only`` (consent-page instructions a final scope does not echo) or ``other``
    (not comparable, see ``note``). ``requested``/``granted`` are plain words or None.
    """

    topic: str
    requested: str | None
    granted: str | None
    change: str
    note: str = ""

    @property
    def differs(self) -> bool:
        return self.change not in ("same", "other", "request-only")


def explain(scope: Scope) -> list[Explanation]:
    """Every parameter of ``scope`` explained, in :meth:`Scope.to_string` order."""
    out = [Explanation("FB", scope.get("FB") or "", explain_param("FB", scope.get("FB") or ""),
                       tuple((str(n), describe_function_block(n)) for n in scope.function_blocks))]
    for name in ("HistoryLength", "PreferredAuthEndDate"):
        value = scope.get(name)
        if value is not None:
            out.append(Explanation(name, value, explain_param(name, value)))
    out.extend(Explanation(name, value, explain_param(name, value), informational=name in INFORMATIONAL)
               for name, value in scope.extra)
    if scope.additional:
        out.append(Explanation("AdditionalScope", scope.get("AdditionalScope") or "",
                               explain_param("AdditionalScope", scope.get("AdditionalScope") or ""),
                               tuple((item.raw, item.describe()) for item in scope.additional)))
    return out


def explain_param(name: str, value: str) -> str:
    """Plain words for one parameter (the name matched case-insensitively); never raises."""
    name = _CANONICAL.get(name.lower(), name)
    if name == "FB":
        count = len([p for p in value.split("_") if p])
        return f"{count} function block{'s' if count != 1 else ''}: the data and functions shared"
    number = _number(value)
    if name == "HistoryLength":
        return _history_words(number) if number is not None else "Not a number of seconds"
    if name == "PreferredAuthEndDate":
        return ("When the authorization ends: " + _end_words(number) if number is not None
                else "Not a Unix timestamp")
    if name == "AdditionalScope":
        count = len([p for p in value.split("_") if p])
        return f"Options for the consent page ({count} item{'s' if count != 1 else ''})"
    if name == "IntervalDuration":
        lengths = [p if _number(p) is None else _duration_words(_number(p)) for p in value.split("_") if p]
        return "Meter readings every " + " and every ".join(lengths) if lengths else "No interval length"
    if name == "BlockDuration":
        every = _frequency_words(value)
        return f"Interval readings come in {every} blocks (IntervalBlock size)"
    if name == "SubscriptionFrequency":
        return f"New-data notifications (FB 39) are sent {_frequency_words(value, adverb=True)}"
    if name == "AccountCollection":
        count = number
        if count is None:
            return "Number of meters covered (not a number)"
        return f"The authorization covers {count} meter{'s' if count != 1 else ''} (usage points)"
    if name == "BR":
        return f"Bulk id {value} for the Bulk API (client_credentials tokens)"
    return "Not a parameter this demo knows; the utility may ignore it"


def compare(requested: Scope | None, granted: Scope | None, *,
            authorized_period: dict | None = None) -> list[Difference]:
    """What changed between the scope asked for and the final scope, line by line.

    The authorize URL only pre-fills the consent form: the customer may shorten periods or
    untick data, and the utility adds platform blocks and informational parameters (reference
    §2.1). Final scopes do not echo consent-page options (AdditionalScope) nor, on UtilityAPI,
    the end date; ``authorized_period`` (``{"start", "duration"}`` from the ESPI Authorization,
    duration 0 = until revoked) stands in for the granted end when given. Either side None:
    nothing to compare (empty list).
    """
    if requested is None or granted is None:
        return []
    rows = _compare_blocks(requested, granted)
    rows.extend(_compare_history(requested, granted))
    rows.extend(_compare_end(requested, granted, authorized_period))
    rows.extend(_compare_extra(requested, granted))
    rows.extend(_compare_additional(requested, granted))
    return rows


def _compare_blocks(requested: Scope, granted: Scope) -> list[Difference]:
    asked, got = set(requested.function_blocks), set(granted.function_blocks)
    rows = []
    for n in sorted(asked | got):
        words = f"{n} · {describe_function_block(n)}"
        topic = f"FB {n}"
        if n in asked and n in got:
            rows.append(Difference(topic, words, words, "same"))
        elif n in got:
            if n == 51 and 46 in asked:
                rows.append(Difference(topic, None, words, "same", "Asked for as 46, its legacy alias"))
            elif n in REQUESTABLE_FUNCTION_BLOCKS:
                rows.append(Difference(topic, None, words, "added", "Granted although it was not requested"))
            else:
                rows.append(Difference(topic, None, words, "added",
                                       "Added by the utility: a platform block or a detail of what was asked"))
        elif n == 46 and 51 in got:
            rows.append(Difference(topic, words, None, "same", "Granted as 51 (46 is its legacy alias)"))
        elif n not in REQUESTABLE_FUNCTION_BLOCKS:
            rows.append(Difference(topic, words, None, "removed",
                                   "Not requestable in an authorization URL: the utility ignores it"))
        else:
            rows.append(Difference(topic, words, None, "removed",
                                   "Not granted: the customer unticked it on the consent page, "
                                   "or the utility does not share it"))
    return rows


def _requested_history(scope: Scope) -> tuple[int | None, str | None]:
    """Seconds (when known) and words for the history a request asked for."""
    if scope.history_length is not None:
        return scope.history_length, _seconds_and_months(scope.history_length)
    item = next((i for i in scope.additional if i.kind == "historical" and i.value), None)
    if item is None:
        return None, None
    if item.value == "none":
        return 0, f"{item.raw}: no past data"
    seconds = parse_relative(item.value or "")
    if seconds is not None:
        return seconds, f"{item.raw} ≈ {history_length_months(seconds)} months"
    return None, f"{item.raw}: back to {item.value}"


def _compare_history(requested: Scope, granted: Scope) -> list[Difference]:
    asked, asked_words = _requested_history(requested)
    got = granted.history_length
    got_words = None if got is None else _seconds_and_months(got)
    if asked_words is None and got is None:
        return []
    topic = "History (HistoryLength)"
    if asked_words is None:
        return [Difference(topic, None, got_words, "added",
                           "Not in the request: the utility's default (2 years) or the customer's choice")]
    if got is None:
        return [Difference(topic, asked_words, None, "request-only", "Not echoed in the final scope")]
    if asked is None:
        return [Difference(topic, asked_words, got_words, "other", "Requested as a date, granted as a length")]
    if got < asked:
        return [Difference(topic, asked_words, got_words, "shortened",
                           f"Shortened from {history_length_months(asked)} to {history_length_months(got)} "
                           "months, by the customer on the consent page")]
    if got > asked:
        return [Difference(topic, asked_words, got_words, "lengthened", "More history than requested")]
    return [Difference(topic, asked_words, got_words, "same")]


def _requested_end(scope: Scope, start: int | None) -> tuple[int | None, str | None]:
    """Epoch seconds (0 = until revoked; None when not computable) and words."""
    if scope.preferred_auth_end_date is not None:
        ts = scope.preferred_auth_end_date
        return ts, f"PreferredAuthEndDate {ts}: {_end_words(ts)}"
    item = next((i for i in scope.additional if i.kind == "ongoing" and i.value), None)
    if item is None:
        return None, None
    if item.value == "none":
        return start, f"{item.raw}: no ongoing data"
    seconds = parse_relative(item.value or "")
    if seconds is not None:
        return (None if start is None else start + seconds), f"{item.raw}: {item.describe().lower()}"
    ts = _date_ts(item.value or "")
    return ts, f"{item.raw}: until {item.value}"


def _compare_end(requested: Scope, granted: Scope, period: dict | None) -> list[Difference]:
    start = _int_or_none((period or {}).get("start"))
    asked, asked_words = _requested_end(requested, start)
    note_source = ""
    if granted.preferred_auth_end_date is not None:
        got: int | None = granted.preferred_auth_end_date
    elif period and start is not None:
        duration = _int_or_none(period.get("duration")) or 0
        got = start + duration if duration else 0
        note_source = "Granted end from the Authorization's authorizedPeriod. "
    else:
        got = None
    got_words = None if got is None else _end_words(got)
    if asked_words is None and got is None:
        return []
    topic = "Authorization end"
    if asked_words is None:
        return [Difference(topic, None, got_words, "added",
                           note_source + "Not in the request: the utility's default (3 years) "
                                         "or the customer's choice")]
    if got is None:
        return [Difference(topic, asked_words, None, "request-only",
                           "Not echoed in the final scope: the ESPI Authorization resource carries the end")]
    if asked is None:
        return [Difference(topic, asked_words, got_words, "other", note_source.strip())]
    forever = 2 ** 62
    a, g = asked or forever, got or forever
    if g < a - 3600:
        return [Difference(topic, asked_words, got_words, "shortened",
                           note_source + "Ends earlier than requested: the customer chose a shorter period")]
    if g > a + 3600:
        return [Difference(topic, asked_words, got_words, "lengthened", note_source + "Ends later than requested")]
    return [Difference(topic, asked_words, got_words, "same", note_source.strip())]


def _compare_extra(requested: Scope, granted: Scope) -> list[Difference]:
    names = [n for n, _v in granted.extra] + [n for n, _v in requested.extra
                                              if n not in {g for g, _ in granted.extra}]
    rows = []
    for name in names:
        asked, got = requested.get(name), granted.get(name)
        asked_words = None if asked is None else f"{asked}: {explain_param(name, asked)}"
        got_words = None if got is None else f"{got}: {explain_param(name, got)}"
        if asked == got:
            rows.append(Difference(name, asked_words, got_words, "same"))
        elif asked is None:
            note = ("Informational: the utility adds it to the final scope; it cannot be requested"
                    if name in INFORMATIONAL else "Added by the utility")
            rows.append(Difference(name, None, got_words, "added", note))
        elif got is None:
            rows.append(Difference(name, asked_words, None, "removed", "Not in the final scope"))
        else:
            rows.append(Difference(name, asked_words, got_words, "changed", f"Requested {asked}, granted {got}"))
    return rows


def _compare_additional(requested: Scope, granted: Scope) -> list[Difference]:
    got = {item.canonical(): item for item in granted.additional}
    asked = {item.canonical(): item for item in requested.additional}
    rows = []
    for key, item in asked.items():
        words = item.describe()
        if key in got:
            rows.append(Difference(f"AdditionalScope {item.raw}", words, words, "same"))
        elif not granted.additional:
            rows.append(Difference(f"AdditionalScope {item.raw}", words, None, "request-only",
                                   "An instruction for the consent page; final scopes do not echo it"))
        else:
            rows.append(Difference(f"AdditionalScope {item.raw}", words, None, "removed",
                                   "Not in the final scope"))
    rows.extend(Difference(f"AdditionalScope {item.raw}", None, item.describe(), "added", "Added by the utility")
                for key, item in got.items() if key not in asked)
    return rows


def _number(value: str) -> int | None:
    """A whole number written in ASCII digits (at most 18 significant ones, as :func:`_whole`
    accepts), else None: Python refuses to read integers of more than 4,300 digits."""
    return _int(value) if _DIGITS.fullmatch(value) and len(value.lstrip("0")) <= 18 else None


def _int(digits: str) -> int:
    """ASCII digits as an int, leading zeros ignored: Python refuses to read more than
    4,300 digits, and ``000…0004`` is as valid as ``4``."""
    return int(digits.lstrip("0") or "0")


def _int_or_none(value) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _date_ts(text: str) -> int | None:
    try:
        return int(datetime.strptime(text, "%Y-%m-%d").replace(tzinfo=UTC).timestamp())
    except ValueError:
        return None


def _duration_words(seconds: int) -> str:
    for unit, size in (("day", DAY), ("hour", 3600), ("minute", 60)):
        if seconds and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


def _frequency_words(value: str, adverb: bool = False) -> str:
    named = _NAMED_FREQUENCIES.get(value.lower())
    if named:
        return named
    number = _number(value)
    if number is not None:
        if adverb:   # SubscriptionFrequency: whole days (reference §2.2)
            return "every day" if number == 1 else f"every {number} days"
        return _duration_words(number)
    return f"'{value}'"


def _seconds_and_months(seconds: int) -> str:
    if seconds == 0:
        return "0 s: no past data"
    return f"{seconds:,} s ≈ {history_length_months(seconds)} months ({round(seconds / DAY)} days)"


def _history_words(seconds: int) -> str:
    if seconds == 0:
        return "No past data: only data from the authorization on"
    return f"Past data to share: {_seconds_and_months(seconds)}"


def _end_words(ts: int) -> str:
    """An end timestamp as a date; 0 = until revoked."""
    if ts == 0:
        return "until the customer revokes it"
    try:
        when = datetime.fromtimestamp(ts, UTC)
    except (OverflowError, OSError, ValueError):
        return f"{ts}: too far in the future to be a date"
    return when.strftime("%Y-%m-%d %H:%M UTC")

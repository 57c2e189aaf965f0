"""The meter page's numbers, free of Flask: what an integrator has to get right to turn
ESPI interval data into something a person can read.

* **Local time.** ESPI carries UTC epochs plus a ``LocalTimeParameters`` resource
  (``tzOffset``, ``dstOffset`` and two encoded DST rules). :class:`DstRule` decodes
  the rules, :class:`LocalClock` turns epochs into local wall-clock time with them.
  Daily and monthly totals are grouped by *local* calendar day, so a spring-forward
  day has 92 quarter hours and a fall-back day 100.
* **Units.** Raw integers become physical values with ``powerOfTenMultiplier`` and
  ``uom`` (72 = Wh -> kWh; the chart shows average kW per interval).
* **Flows.** flowDirection 1 is delivered energy, 19 is energy received from the
  customer (solar export); net = delivered - exported.
* **Size.** Two years of 15-minute data is ~70,000 readings per flow. The chart gets
  at most :data:`MAX_POINTS` buckets per series (mean, min and max per bucket), so the
  whole page stays small; small windows keep full resolution.
* **Bills.** UsageSummary money is in 1/100,000 of the currency unit.

It also fetches what the page shows (:func:`fetch_meter`, :func:`fetch_customer`),
through :func:`demo.site.client.fetch_xml` like the rest of the site.
"""
from __future__ import annotations

import math
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from urllib.parse import quote, urlencode

from lxml import etree

from ..espi.parse import EspiError, parse_document
from . import client as gbc

# ---------------------------------------------------------------- DST rules

#: The encoding (espi.xsd ``DstRuleType``, shared with IEEE 2030.5): a 32-bit hex value,
#: bits 0-11 seconds (0-3599), 12-16 hours, 17-19 day of week (1 = Monday .. 7 = Sunday,
#: 0 = n/a), 20-24 day of month (0 = n/a), 25-27 operator, 28-31 month. 0xFFFFFFFF = no DST.
#: Operators: 0 on the day of the month; 1 the weekday on or after the day of the month;
#: 2..6 the first..fifth such weekday of the month; 7 the last one.
NO_DST = 0xFFFFFFFF
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December")
_ORDINALS = {2: "first", 3: "second", 4: "third", 5: "fourth", 6: "fifth", 7: "last"}


class DstRuleError(ValueError):
    """A DST rule that cannot be decoded; the message says which part is wrong."""


@dataclass(frozen=True)
class DstRule:
    """One decoded ``dstStartRule``/``dstEndRule``: a date in any year and a wall-clock time."""

    month: int
    operator: int
    day_of_month: int
    day_of_week: int      # 1 = Monday .. 7 = Sunday, 0 = not applicable
    hour: int
    seconds: int          # seconds after the hour

    @classmethod
    def decode(cls, value: str | int) -> DstRule | None:
        """Decode a hex string (``360E2000``) or integer; None for ``FFFFFFFF`` (DST disabled)."""
        if isinstance(value, str):
            text = value.strip().removeprefix("0x").removeprefix("0X")
            if not re.fullmatch(r"[0-9A-Fa-f]{1,8}", text):
                raise DstRuleError(f"DST rule {value!r} is not a 32-bit hexadecimal value")
            value = int(text, 16)
        if value == NO_DST:
            return None
        rule = cls(month=value >> 28 & 0xF, operator=value >> 25 & 0x7, day_of_month=value >> 20 & 0x1F,
                   day_of_week=value >> 17 & 0x7, hour=value >> 12 & 0x1F, seconds=value & 0xFFF)
        rule._check(f"{value:08X}")
        return rule

    def _check(self, text: str) -> None:
        if not 1 <= self.month <= 12:
            raise DstRuleError(f"DST rule {text}: month {self.month} is not 1-12")
        if self.hour > 23 or self.seconds > 3599:
            raise DstRuleError(f"DST rule {text}: time {self.hour}h + {self.seconds}s is not a time of day")
        if self.operator <= 1 and not 1 <= self.day_of_month <= 31:
            raise DstRuleError(f"DST rule {text}: operator {self.operator} needs a day of the month")
        if self.operator >= 1 and not 1 <= self.day_of_week <= 7:
            raise DstRuleError(f"DST rule {text}: operator {self.operator} needs a day of the week (1-7)")

    def date_in(self, year: int) -> date:
        """The day the rule picks in ``year`` (a missing fifth weekday falls back to the last one)."""
        if self.operator == 0:
            return _clamped_date(year, self.month, self.day_of_month)
        weekday = self.day_of_week - 1   # Python: Monday = 0
        if self.operator == 1:
            d = _clamped_date(year, self.month, self.day_of_month)
            return d + timedelta(days=(weekday - d.weekday()) % 7)
        first = date(year, self.month, 1)
        first += timedelta(days=(weekday - first.weekday()) % 7)
        last = _month_end(year, self.month)
        last -= timedelta(days=(last.weekday() - weekday) % 7)
        if self.operator == 7:
            return last
        return min(first + timedelta(weeks=self.operator - 2), last)

    @property
    def seconds_after_midnight(self) -> int:
        return self.hour * 3600 + self.seconds

    def describe(self) -> str:
        """E.g. ``second Sunday of March at 02:00``."""
        at = f"{self.hour:02d}:{self.seconds // 60:02d}"
        if self.operator == 0:
            return f"{MONTHS[self.month - 1]} {self.day_of_month} at {at}"
        day = WEEKDAYS[self.day_of_week - 1]
        if self.operator == 1:
            return f"first {day} on or after {MONTHS[self.month - 1]} {self.day_of_month} at {at}"
        return f"{_ORDINALS[self.operator]} {day} of {MONTHS[self.month - 1]} at {at}"


def _month_end(year: int, month: int) -> date:
    return (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)


def _clamped_date(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, _month_end(year, month).day))


# ---------------------------------------------------------------- local time

_EPOCH_DAY = date(1970, 1, 1)


def _naive_epoch(d: date, seconds: int = 0) -> int:
    """Seconds from 1970-01-01 00:00 to ``d`` + ``seconds`` on a clock without offsets."""
    return (d - _EPOCH_DAY).days * 86400 + seconds


@dataclass(frozen=True)
class LocalClock:
    """Local wall-clock time as ESPI LocalTimeParameters define it.

    ``offset(ts)`` is ``tz_offset`` plus ``dst_offset`` while DST is in effect. The
    start rule's time is read on the standard clock and the end rule's on the daylight
    clock (US: 02:00 PST in March, 02:00 PDT in November), which is how the US and EU
    rules are written and what tz databases do. Without rules (or with 0xFFFFFFFF) the
    clock is a fixed offset.
    """

    tz_offset: int = 0
    dst_offset: int = 0
    dst_start: DstRule | None = None
    dst_end: DstRule | None = None

    @classmethod
    def from_parameters(cls, ltp: object | Mapping | None) -> LocalClock:
        """From a :class:`demo.espi.model.LocalTimeParameters`, the run page's dict form
        (``tz_offset``, ``dst_offset``, ``dst_start_rule``, ``dst_end_rule``) or None (UTC)."""
        if ltp is None:
            return cls()
        get = ltp.get if isinstance(ltp, Mapping) else lambda k: getattr(ltp, k, None)
        start_text, end_text = get("dst_start_rule"), get("dst_end_rule")
        try:
            start = DstRule.decode(start_text) if start_text else None
            end = DstRule.decode(end_text) if end_text else None
        except DstRuleError:   # a custodian's malformed rule: standard time all year, not a 500
            start = end = None
        dst = int(get("dst_offset") or 0)
        if start is None or end is None or not dst:
            start = end = None
            dst = 0
        return cls(tz_offset=int(get("tz_offset") or 0), dst_offset=dst, dst_start=start, dst_end=end)

    @property
    def has_dst(self) -> bool:
        return self.dst_start is not None and self.dst_end is not None and bool(self.dst_offset)

    def transitions(self, year: int) -> tuple[int, int] | None:
        """UTC epochs at which DST starts and ends in ``year`` (None without DST)."""
        if not self.has_dst:
            return None
        return _transitions(self, year)

    def offset(self, ts: int) -> int:
        """Seconds east of UTC at the instant ``ts``."""
        if not self.has_dst:
            return self.tz_offset
        year = _year_of(ts + self.tz_offset)
        start, end = _transitions(self, year)
        if start < end:
            in_dst = start <= ts < end
        else:   # southern hemisphere: DST spans the new year
            in_dst = ts >= start or ts < end
        return self.tz_offset + (self.dst_offset if in_dst else 0)

    def changes(self, lo: int, hi: int) -> list[tuple[int, int]]:
        """``[(epoch, offset from then on), ...]``: the offset at ``lo``, then every change up to ``hi``."""
        out = [(lo, self.offset(lo))]
        if self.has_dst:
            for year in range(_year_of(lo + self.tz_offset), _year_of(hi + self.tz_offset) + 1):
                for ts in sorted(_transitions(self, year)):
                    if lo < ts <= hi:
                        out.append((ts, self.offset(ts)))
        return out

    def offsets(self, lo: int, hi: int) -> Callable[[int], int]:
        """A fast ``offset`` for instants in ``[lo, hi]`` (one bisect instead of a rule evaluation)."""
        table = self.changes(lo, hi)
        points = [t for t, _ in table]
        values = [o for _, o in table]

        def offset(ts: int) -> int:
            i = bisect_right(points, ts) - 1
            return values[i] if i >= 0 else self.offset(ts)

        return offset

    def local(self, ts: int) -> datetime:
        """The local wall-clock time of ``ts``, aware (fixed offset at that instant)."""
        return datetime.fromtimestamp(ts, timezone(timedelta(seconds=self.offset(ts))))

    def local_date(self, ts: int) -> date:
        return _EPOCH_DAY + timedelta(days=(ts + self.offset(ts)) // 86400)

    def midnight(self, d: date) -> int:
        """Epoch of the local midnight that starts ``d`` (the later instant if midnight repeats,
        the first instant after it if a DST gap skips it)."""
        naive = _naive_epoch(d)
        candidates = [naive - o for o in {self.tz_offset, self.tz_offset + self.dst_offset}]
        valid = [ts for ts in candidates if ts + self.offset(ts) == naive]
        if valid:
            return max(valid)
        return min(candidates)

    def format(self, ts: int, *, seconds: bool = False) -> str:
        """``2025-03-09 03:00 −07:00``: local time with the offset in effect."""
        when = self.local(ts)
        return when.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M") + " " + _format_offset(
            self.offset(ts))

    def describe(self) -> str:
        """For people: ``UTC−08:00; DST +1 h from the second Sunday of March at 02:00 to …``."""
        text = "UTC" + _format_offset(self.tz_offset)
        if not self.has_dst:
            return text + ", no daylight saving time"
        hours = self.dst_offset / 3600
        amount = f"{hours:g} h" if hours != 1 else "1 h"
        return f"{text}; DST +{amount} from the {self.dst_start.describe()} to the {self.dst_end.describe()}"


def _format_offset(seconds: int) -> str:
    sign = "+" if seconds >= 0 else "−"
    hours, rest = divmod(abs(seconds), 3600)
    return f"{sign}{hours:02d}:{rest // 60:02d}"


def _year_of(naive_ts: int) -> int:
    return (_EPOCH_DAY + timedelta(days=naive_ts // 86400)).year


@lru_cache(maxsize=256)
def _transitions(clock: LocalClock, year: int) -> tuple[int, int]:
    start = _naive_epoch(clock.dst_start.date_in(year), clock.dst_start.seconds_after_midnight) - clock.tz_offset
    end = (_naive_epoch(clock.dst_end.date_in(year), clock.dst_end.seconds_after_midnight)
           - clock.tz_offset - clock.dst_offset)
    return start, end


# ---------------------------------------------------------------- units and flows

#: ESPI UnitSymbolKind codes the page names (the common ones for meters).
UOM = {0: "", 5: "A", 29: "V", 33: "Hz", 38: "W", 42: "m³", 61: "VA", 63: "VAr", 71: "VAh", 72: "Wh",
       73: "VArh", 119: "ft³", 128: "US gal", 169: "therm"}
#: energy units whose 'kilo' form the page uses, and the power unit of the same quantity
_KILO = {72: ("kWh", "kW"), 71: ("kVAh", "kVA"), 73: ("kVArh", "kVAr"), 38: ("kW", None), 61: ("kVA", None),
         63: ("kVAr", None)}
FLOW_NAMES = {1: "delivered (forward)", 19: "received (reverse)", 4: "net", 0: "none"}
ACCUMULATION = {1: "bulk quantity", 3: "cumulative", 4: "delta data", 6: "indicating", 9: "summation",
                12: "instantaneous"}
KINDS = {12: "energy", 37: "power", 8: "demand", 58: "volume"}
CURRENCIES = {840: "USD", 978: "EUR", 124: "CAD", 826: "GBP"}


@dataclass(frozen=True)
class Unit:
    """How to show one ReadingType's values: ``physical = raw * factor`` in ``label``;
    ``rate`` is the unit of the same quantity per hour (energy per interval -> average power)."""

    label: str
    factor: float
    rate: str | None = None

    @classmethod
    def of(cls, uom: int | None, multiplier: int | None) -> Unit:
        m = int(multiplier or 0)
        if uom in _KILO:
            label, rate = _KILO[uom]
            return cls(label, 10.0 ** (m - 3), rate)
        name = UOM.get(uom, f"uom {uom}" if uom is not None else "")
        return cls(name, 10.0 ** m)


def flow_key(flow: int | None) -> str:
    return {1: "forward", 19: "reverse", 4: "net"}.get(flow, f"flow{flow}")


FLOW_LABELS = {"forward": "Delivered", "reverse": "Exported", "net": "Net"}


@dataclass
class Channel:
    """All readings of one flow direction, sorted, scaled to ``unit`` (floats)."""

    key: str                 # forward | reverse | net | flow<n>
    label: str
    reading_type: object | None
    unit: Unit
    starts: list[int]
    durations: list[int]
    values: list[float]
    computed: bool = False   # net computed from forward - reverse

    def __len__(self) -> int:
        return len(self.starts)

    @property
    def interval(self) -> int:
        """The most common interval length (the ReadingType's, else the readings')."""
        rt = getattr(self.reading_type, "interval_length", None)
        if rt:
            return int(rt)
        return max(set(self.durations[:500]), key=self.durations[:500].count) if self.durations else 900


def channels(series: Iterable, *, lo: int | None = None, hi: int | None = None) -> tuple[list[Channel], int]:
    """Merge the reader's Series into one Channel per flow direction (several MeterReadings of a
    flow are joined; a start seen twice keeps the later value), keep readings starting in
    ``[lo, hi)``, and add a computed net channel when both flows 1 and 19 are there.

    Returns the channels (forward, reverse, net, others) and how many readings fell outside."""
    groups: dict[str, list] = {}
    for s in series:
        flow = getattr(s.reading_type, "flow_direction", None) if s.reading_type is not None else None
        groups.setdefault(flow_key(flow), []).append(s)
    out: list[Channel] = []
    dropped = 0
    for key, members in groups.items():
        rt = next((m.reading_type for m in members if m.reading_type is not None), None)
        unit = Unit.of(getattr(rt, "uom", None), getattr(rt, "power_of_ten_multiplier", 0))
        starts, durations, values, outside = _merge(members, lo, hi)
        dropped += outside
        factor = unit.factor
        label = FLOW_LABELS.get(key, key)
        out.append(Channel(key, label, rt, unit, starts, durations, [v * factor for v in values]))
    order = {"forward": 0, "reverse": 1, "net": 2}
    out.sort(key=lambda c: (order.get(c.key, 3), c.key))
    by_key = {c.key: c for c in out}
    fwd, rev = by_key.get("forward"), by_key.get("reverse")
    if fwd is not None and rev is not None and "net" not in by_key and fwd.unit.label == rev.unit.label:
        received = dict(zip(rev.starts, rev.values, strict=True))
        net = Channel("net", "Net", None, fwd.unit, list(fwd.starts), list(fwd.durations),
                      [v - received.get(t, 0.0) for t, v in zip(fwd.starts, fwd.values, strict=True)],
                      computed=True)
        out.insert(2, net)
    return out, dropped


def _merge(members: list, lo: int | None, hi: int | None) -> tuple[list[int], list[int], list[int], int]:
    """One flow's readings in start order within ``[lo, hi)``, and how many were left out.

    Custodians send one MeterReading per flow with its blocks in order, so the usual case is a
    slice of already sorted columns; anything else (several MeterReadings, overlaps, disorder)
    goes through a dict keyed by start, the later reading winning."""
    if len(members) == 1:
        m = members[0]
        starts = m.starts
        if all(a < b for a, b in zip(starts, starts[1:], strict=False)):
            i = 0 if lo is None else bisect_left(starts, lo)
            j = len(starts) if hi is None else bisect_left(starts, hi)
            return list(starts[i:j]), list(m.durations[i:j]), list(m.values[i:j]), len(starts) - (j - i)
    merged: dict[int, tuple[int, int]] = {}
    outside = 0
    for m in members:
        for start, duration, value in zip(m.starts, m.durations, m.values, strict=False):
            if (lo is not None and start < lo) or (hi is not None and start >= hi):
                outside += 1
                continue
            merged[start] = (duration, value)
    starts = sorted(merged)
    return starts, [merged[t][0] for t in starts], [merged[t][1] for t in starts], outside


def reading_type_rows(chs: list[Channel]) -> list[dict]:
    """The reading types table: what each flow's raw integers mean."""
    rows = []
    for ch in chs:
        if ch.computed:
            continue
        rt = ch.reading_type

        def get(name: str, rt=rt):
            return getattr(rt, name, None)

        uom = get("uom")
        rows.append({
            "channel": ch.label,
            "id": get("id"),
            "flow": f"{get('flow_direction')} · {FLOW_NAMES.get(get('flow_direction'), 'other')}"
                    if get("flow_direction") is not None else "—",
            "uom": f"{uom} · {UOM.get(uom, 'unknown')}" if uom is not None else "—",
            "multiplier": get("power_of_ten_multiplier"),
            "scaled_to": f"10^{get('power_of_ten_multiplier') or 0} → {ch.unit.label}",
            "interval": f"{get('interval_length')} s" if get("interval_length") else "—",
            "kind": _named(get("kind"), KINDS),
            "accumulation": _named(get("accumulation_behaviour"), ACCUMULATION),
            "readings": len(ch),
        })
    return rows


def _named(code: int | None, names: Mapping[int, str]) -> str:
    if code is None:
        return "—"
    return f"{code} · {names[code]}" if code in names else str(code)


# ---------------------------------------------------------------- totals


@dataclass
class Period:
    """Totals over a local day or month, per channel (in the channel's unit)."""

    label: str               # 2025-03-09 or 2025-03
    start: date
    intervals: int = 0        # readings of the primary channel
    expected: int | None = None   # what a full period holds at this interval length
    totals: dict[str, float] = field(default_factory=dict)
    peak: float | None = None       # highest rate (kW) of the primary channel
    peak_at: int | None = None
    days: int = 0
    hours: float | None = None       # length of the local day (23 / 24 / 25)
    month: bool = False              # a month row: ``expected`` counts days, not intervals

    @property
    def note(self) -> str:
        if self.hours is not None and self.hours != 24:
            return "DST starts (23 h)" if self.hours < 24 else "DST ends (25 h)"
        return ""

    @property
    def complete(self) -> bool:
        if self.expected is None:
            return True
        return (self.days if self.month else self.intervals) >= self.expected


def primary(chs: list[Channel]) -> Channel | None:
    """The channel counted and peaked: delivered energy if present."""
    return next((c for c in chs if c.key == "forward"), chs[0] if chs else None)


def daily_totals(chs: list[Channel], clock: LocalClock) -> list[Period]:
    """One row per local calendar day that has readings, oldest first."""
    if not chs or not any(len(c) for c in chs):
        return []
    lo = min(c.starts[0] for c in chs if len(c))
    hi = max(c.starts[-1] for c in chs if len(c))
    offset = clock.offsets(lo - 2 * 86400, hi + 2 * 86400)
    main = primary(chs)
    days: dict[int, Period] = {}
    for ch in chs:
        is_main = ch is main
        rated = ch.unit.rate is not None
        key = ch.key
        day_lo = day_hi = 0
        p = None
        for t, dur, v in zip(ch.starts, ch.durations, ch.values, strict=True):
            if not day_lo <= t < day_hi:   # readings are sorted: look the day up once per day
                idx = (t + offset(t)) // 86400
                p = days.get(idx)
                if p is None:
                    d = _EPOCH_DAY + timedelta(days=idx)
                    p = days[idx] = Period(d.isoformat(), d, days=1)
                day_lo, day_hi = clock.midnight(p.start), clock.midnight(p.start + timedelta(days=1))
                p.totals.setdefault(key, 0.0)
            p.totals[key] += v
            if is_main:
                p.intervals += 1
                rate = v * 3600 / dur if rated and dur else v
                if p.peak is None or rate > p.peak:
                    p.peak, p.peak_at = rate, t
    interval = main.interval if main else 900
    out = []
    for idx in sorted(days):
        p = days[idx]
        length = clock.midnight(p.start + timedelta(days=1)) - clock.midnight(p.start)
        p.hours = length / 3600
        p.expected = length // interval if interval else None
        out.append(p)
    return out


def monthly_totals(days: list[Period]) -> list[Period]:
    """Local calendar months from the daily rows (partial months say how many days they hold)."""
    months: dict[tuple[int, int], Period] = {}
    for d in days:
        key = (d.start.year, d.start.month)
        m = months.get(key)
        if m is None:
            m = months[key] = Period(f"{key[0]:04d}-{key[1]:02d}", date(key[0], key[1], 1), month=True)
        m.days += 1
        m.intervals += d.intervals
        for k, v in d.totals.items():
            m.totals[k] = m.totals.get(k, 0.0) + v
        if d.peak is not None and (m.peak is None or d.peak > m.peak):
            m.peak, m.peak_at = d.peak, d.peak_at
    for m in months.values():
        m.hours = None
        m.expected = _month_end(m.start.year, m.start.month).day
    return [months[k] for k in sorted(months)]


def window_totals(chs: list[Channel]) -> dict:
    """Totals over everything shown: per channel sum, the primary channel's peak and its time."""
    main = primary(chs)
    out = {"totals": {c.key: sum(c.values) for c in chs}, "peak": None, "peak_at": None}
    if main is not None and len(main):
        rated = main.unit.rate is not None
        best, at = None, None
        for t, dur, v in zip(main.starts, main.durations, main.values, strict=True):
            rate = v * 3600 / dur if rated and dur else v
            if best is None or rate > best:
                best, at = rate, t
        out["peak"], out["peak_at"] = best, at
    return out


# ---------------------------------------------------------------- chart data (downsampled)

#: Points per series the chart gets at most. Two years of 15-minute data (70,000 readings)
#: becomes 6-hour buckets; a month or less keeps every reading.
MAX_POINTS = 3000
#: Bucket lengths tried in order (seconds); the first that needs no more than MAX_POINTS wins.
BUCKETS = (300, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800, 2592000)


def bucket_for(span: int, interval: int, max_points: int = MAX_POINTS) -> int:
    """The smallest bucket (a multiple of the interval length) that keeps ``span`` within ``max_points``."""
    for b in BUCKETS:
        if b >= interval and b % interval == 0 and math.ceil(span / b) <= max_points:
            return b
    return max(interval, math.ceil(span / max_points / 86400) * 86400)


def _digits(values: Iterable[float]) -> int:
    """Decimals that keep ~3 significant digits of the largest value (a smaller page, same picture)."""
    biggest = max((abs(v) for v in values if v is not None), default=0.0)
    if biggest <= 0:
        return 3
    return max(0, min(6, 3 - math.floor(math.log10(biggest))))


def _scaled(values: list[float | None], digits: int) -> list[int | None]:
    """Values as integers in units of 10**-digits: ``268`` rather than ``0.268`` keeps the data
    island a third smaller; the browser divides by ``scale``."""
    factor = 10 ** digits
    return [None if v is None else int(round(v * factor)) for v in values]


def chart_data(chs: list[Channel], clock: LocalClock, *, lo: int | None = None, hi: int | None = None,
               max_points: int = MAX_POINTS) -> dict | None:
    """The chart's data island: a regular time grid ``t0 + i * step`` (UTC epochs, so DST never
    makes x go backwards) and, per channel, the mean (and per-bucket min/max when downsampled)
    of the rate (kW for energy) as integers in units of ``1/scale``; ``tz`` lists the UTC
    offsets in force, so the browser labels the axis in the meter's local time. None when
    there is nothing to draw."""
    shown = [c for c in chs if len(c)]
    if not shown:
        return None
    unit = shown[0].unit
    shown = [c for c in shown if c.unit.label == unit.label]
    interval = min(c.interval for c in shown)
    first = min(c.starts[0] for c in shown)
    last = max(c.starts[-1] + c.durations[-1] for c in shown)
    lo = first if lo is None else min(lo, first)
    hi = last if hi is None else max(min(hi, last), first + interval)
    step = bucket_for(hi - lo, interval, max_points)
    t0 = lo
    n = max(1, math.ceil((hi - t0) / step))
    full = step == interval
    out_series = []
    for ch in shown:
        sums = [0.0] * n
        counts = [0] * n
        mins: list[float | None] = [None] * n
        maxs: list[float | None] = [None] * n
        rated = ch.unit.rate is not None
        for t, dur, v in zip(ch.starts, ch.durations, ch.values, strict=True):
            i = (t - t0) // step
            if not 0 <= i < n:
                continue
            rate = v * 3600 / dur if rated and dur else v
            sums[i] += rate
            counts[i] += 1
            if mins[i] is None or rate < mins[i]:
                mins[i] = rate
            if maxs[i] is None or rate > maxs[i]:
                maxs[i] = rate
        means = [s / c if c else None for s, c in zip(sums, counts, strict=True)]
        digits = _digits(maxs + mins)
        entry = {"key": ch.key, "label": ch.label, "scale": 10 ** digits, "mean": _scaled(means, digits)}
        if not full and not ch.computed:   # net's band would only repeat the two flows' bands
            entry["min"] = _scaled(mins, digits)
            entry["max"] = _scaled(maxs, digits)
        out_series.append(entry)
    return {
        "t0": t0, "step": step, "n": n, "interval": interval, "full_resolution": full,
        "unit": unit.rate or unit.label, "quantity": "average power" if unit.rate else "value",
        "bucket": describe_seconds(step),
        "tz": [[t, o] for t, o in clock.changes(t0 - 86400, t0 + n * step + 86400)],
        "series": out_series,
    }


def describe_seconds(seconds: int) -> str:
    for size, name in ((604800, "week"), (86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {name}{'' if count == 1 else 's'}"
    return f"{seconds} s"


# ---------------------------------------------------------------- bills


@dataclass
class Bill:
    """One UsageSummary as a bills table row (money as Decimal in the currency unit)."""

    id: str | None
    first_day: date
    end_day: date               # the local day the period ends on (exclusive end)
    days: float
    consumption: float | None
    consumption_unit: str
    cost: Decimal | None
    currency: str
    tariff: str | None
    lines: list[tuple[str, Decimal | None, int | None]]
    intervals_total: float | None = None   # the same period summed from the interval data

    @property
    def lines_total(self) -> Decimal | None:
        amounts = [a for _, a, _ in self.lines if a is not None]
        return sum(amounts, Decimal(0)) if amounts else None

    @property
    def lines_match(self) -> bool | None:
        total = self.lines_total
        return None if total is None or self.cost is None else total == self.cost

    @property
    def intervals_match(self) -> bool | None:
        if self.intervals_total is None or self.consumption is None:
            return None
        return abs(self.intervals_total - self.consumption) < 0.0005 + 1e-9 * abs(self.consumption)


MONEY_SCALE = Decimal(100000)


def money(value: int | None) -> Decimal | None:
    """ESPI money (1/100,000 of the currency unit) as a Decimal in the unit."""
    return None if value is None else Decimal(int(value)) / MONEY_SCALE


def bills(summaries: Iterable, clock: LocalClock, forward: Channel | None = None) -> list[Bill]:
    """The bills table, newest first. When the interval data covers a bill's whole period,
    its delivered total is set beside the bill's consumption (they should agree)."""
    out = []
    covered = (forward.starts[0], forward.starts[-1] + forward.durations[-1]) if forward is not None and len(
        forward) else None
    for s in summaries:
        unit = Unit.of(s.consumption_uom, s.consumption_multiplier)
        consumption = None if s.consumption is None else s.consumption * unit.factor
        end = s.start + s.duration
        intervals_total = None
        if covered and covered[0] <= s.start and end <= covered[1] and unit.label == forward.unit.label:
            intervals_total = _sum_between(forward, s.start, end)
        out.append(Bill(
            id=s.id, first_day=clock.local_date(s.start), end_day=clock.local_date(end),
            days=round(s.duration / 86400, 2), consumption=consumption, consumption_unit=unit.label,
            cost=money(s.bill_last_period), currency=CURRENCIES.get(s.currency, str(s.currency or "")),
            tariff=s.tariff_profile,
            lines=[(li.note or "—", money(li.amount), li.item_kind) for li in s.line_items],
            intervals_total=intervals_total,
        ))
    out.sort(key=lambda b: b.first_day, reverse=True)
    return out


def _sum_between(ch: Channel, lo: int, hi: int) -> float:
    i, j = bisect_left(ch.starts, lo), bisect_left(ch.starts, hi)
    return sum(ch.values[i:j])


# ---------------------------------------------------------------- the date window


class WindowError(ValueError):
    """The date range asked for is not usable; the message says why."""


PRESETS = {"7d": 7, "30d": 30, "90d": 90, "365d": 365}
DEFAULT_DAYS = 90
EARLIEST = date(1990, 1, 1)


@dataclass(frozen=True)
class Window:
    """The local dates the page shows, inclusive (``first``/``last`` None = all the data)."""

    first: date | None
    last: date | None
    preset: str | None = None     # 7d/30d/90d/365d/all when chosen from a preset

    @property
    def all(self) -> bool:
        return self.first is None

    def bounds(self, clock: LocalClock) -> tuple[int, int] | None:
        """``[lo, hi)`` UTC epochs: local midnight of ``first`` to local midnight after ``last``."""
        if self.all:
            return None
        return clock.midnight(self.first), clock.midnight(self.last + timedelta(days=1))

    def query(self, clock: LocalClock, now: int | None = None) -> dict[str, str]:
        """``published-min``/``published-max`` for the window, in the meter's local offset.

        Custodians publish a day's readings once the day is over, so the window's readings are
        published in ``[lo, hi]``; a custodian that publishes earlier or later is covered by
        the page clipping what comes back to the window. ``published-max`` is never sent in the
        future (nothing is published there yet, and some custodians refuse it)."""
        b = self.bounds(clock)
        if b is None:
            return {}
        now = int(datetime.now(UTC).timestamp()) if now is None else now
        hi = max(b[0], min(b[1], now - now % 60))
        return {"published-min": _iso(b[0], clock), "published-max": _iso(hi, clock)}

    def args(self) -> dict[str, str]:
        """The page's own query string for this window (links to the XML download etc.)."""
        if self.all:
            return {"range": "all"}
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}

    def describe(self) -> str:
        if self.all:
            return "all the data the custodian has"
        days = (self.last - self.first).days + 1
        return f"{self.first.isoformat()} to {self.last.isoformat()} ({days} day{'' if days == 1 else 's'})"


def _iso(ts: int, clock: LocalClock) -> str:
    return clock.local(ts).isoformat()


def _parse_day(name: str, text: str) -> date:
    text = text.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        raise WindowError(f"“{name}” must be a date written YYYY-MM-DD, not {text[:40]!r}.")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise WindowError(f"“{name}” {text} is not a real date.") from None


def parse_window(args: Mapping[str, str], today: date) -> Window:
    """The window a meter page URL asks for: ``range=all|7d|30d|90d|365d`` or ``from``/``to``
    (YYYY-MM-DD, local to the meter); by default the last 90 days through ``today``."""
    preset = (args.get("range") or "").strip()
    if preset == "all":
        return Window(None, None, "all")
    if preset:
        if preset not in PRESETS:
            raise WindowError(f"Unknown range {preset[:20]!r}: use all, {', '.join(PRESETS)} or from/to dates.")
        return Window(today - timedelta(days=PRESETS[preset] - 1), today, preset)
    first_text, last_text = (args.get("from") or "").strip(), (args.get("to") or "").strip()
    if not first_text and not last_text:
        return Window(today - timedelta(days=DEFAULT_DAYS - 1), today, f"{DEFAULT_DAYS}d")
    last = _parse_day("to", last_text) if last_text else today
    first = _parse_day("from", first_text) if first_text else last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise WindowError(f"“from” ({first}) is after “to” ({last}).")
    if first < EARLIEST:
        raise WindowError(f"“from” ({first}) is before {EARLIEST}; Green Button data does not go back that far.")
    if last > today + timedelta(days=366):
        raise WindowError(f"“to” ({last}) is more than a year in the future.")
    return Window(first, last)


# ---------------------------------------------------------------- fetching


def meter_url(token: dict, usage_point_id: str, window: Window, clock: LocalClock) -> str:
    """``Batch/Subscription/{uid}/UsagePoint/{id}`` with the window's published range."""
    resource = token.get("resourceURI")
    if not resource:
        raise gbc.CustodianError("no_resource", "The token response has no resourceURI, so there is no "
                                 "subscription to read.", step="meter data")
    url = gbc.batch_url(resource).split("?", 1)[0].rstrip("/") + "/UsagePoint/" + quote(usage_point_id, safe="")
    query = window.query(clock)
    return url + ("?" + urlencode(query) if query else "")


def customer_url(token: dict) -> str | None:
    """``Batch/RetailCustomer/{uid}`` from the token's customerResourceURI (FB 51), if any."""
    uri = (token.get("customerResourceURI") or "").strip()
    if not uri:
        return None
    if "/Batch/RetailCustomer/" in uri:
        return uri
    return uri.replace("/RetailCustomer/", "/Batch/RetailCustomer/", 1)


def fetch(url: str, token: dict, *, step: str, timeout: float, http=None) -> bytes:
    """:func:`demo.site.client.fetch_xml` with the run's access token (recorded when ``http`` is given)."""
    kwargs = {"http": http} if http is not None else {}
    return gbc.fetch_xml(url, token["access_token"], step=step, timeout=timeout, **kwargs)


# ---------------------------------------------------------------- customer (FB 51)

_CUST = "{http://naesb.org/espi/customer}"
_ATOM = "{http://www.w3.org/2005/Atom}"


@dataclass
class CustomerInfo:
    """What the RetailCustomer batch says about the customer and this meter."""

    name: str | None = None
    kind: str | None = None
    account: str | None = None
    billing_address: str | None = None
    agreement: str | None = None
    service_address: str | None = None
    meter_serials: list[str] = field(default_factory=list)
    matched: bool = False         # a ServiceLocation named this usage point


def _address(el: etree._Element | None) -> str | None:
    if el is None:
        return None
    detail = el.find(_CUST + "streetDetail")
    street = None
    if detail is not None:
        street = (detail.findtext(_CUST + "addressGeneral") or "").strip() or " ".join(
            (detail.findtext(_CUST + n) or "").strip() for n in ("number", "name", "suffix")).strip() or None
    town = el.find(_CUST + "townDetail")
    place = None
    if town is not None:
        place = " ".join(p for p in ((town.findtext(_CUST + "name") or "").strip(),
                                     (town.findtext(_CUST + "stateOrProvince") or "").strip()) if p) or None
    postal = (el.findtext(_CUST + "postalCode") or "").strip() or None
    tail = " ".join(p for p in (place, postal) if p) or None
    parts = [p for p in (street, tail) if p]
    return ", ".join(parts) or None


def read_customer(data: bytes, usage_point_id: str) -> CustomerInfo:
    """Pick the customer, account, agreement, service location and meter serials of one
    usage point out of a ``Batch/RetailCustomer`` feed (parsed safely, namespace-tolerant).

    The ServiceLocation whose ``UsagePoints`` names ``…/UsagePoint/{id}`` is this meter's; its
    meters are the Meter entries below it, its agreement the CustomerAgreement above it."""
    root = parse_document(data)
    entries = [root] if root.tag == _ATOM + "entry" else root.findall(_ATOM + "entry")
    found: dict[str, list[tuple[str, etree._Element]]] = {}
    for entry in entries:
        content = entry.find(_ATOM + "content")
        payload = next(content.iterchildren(tag=etree.Element), None) if content is not None else None
        if payload is None or not payload.tag.startswith(_CUST):
            continue
        self_href = next((link.get("href", "") for link in entry.findall(_ATOM + "link")
                          if link.get("rel") == "self"), "")
        found.setdefault(etree.QName(payload).localname, []).append((self_href.rstrip("/"), payload))
    info = CustomerInfo()
    for _, el in found.get("Customer", [])[:1]:
        info.name = (el.findtext(".//" + _CUST + "customerName") or el.findtext(_CUST + "name") or "").strip() or None
        info.kind = (el.findtext(_CUST + "kind") or "").strip() or None
    for _, el in found.get("CustomerAccount", [])[:1]:
        info.account = (el.findtext(_CUST + "accountId") or "").strip() or None
        info.billing_address = _address(el.find(_CUST + "contactInfo/" + _CUST + "streetAddress"))
    suffix = "/UsagePoint/" + usage_point_id
    locations = found.get("ServiceLocation", [])
    mine = next(((href, el) for href, el in locations
                 if any((u.text or "").strip().rstrip("/").endswith(suffix)
                        for u in el.iter(_CUST + "UsagePoint"))), None)
    info.matched = mine is not None
    if mine is None and len(locations) == 1:
        mine = locations[0]
    if mine is not None:
        href, el = mine
        info.service_address = _address(el.find(_CUST + "mainAddress"))
        meters = [m for h, m in found.get("Meter", []) if href and h.startswith(href + "/")]
        if not meters and len(found.get("Meter", [])) == 1:
            meters = [found["Meter"][0][1]]
        info.meter_serials = [s for s in ((m.findtext(_CUST + "serialNumber") or "").strip() for m in meters) if s]
        agreement = next((a for h, a in found.get("CustomerAgreement", []) if h and href.startswith(h + "/")), None)
        if agreement is not None:
            info.agreement = (agreement.findtext(_CUST + "agreementId") or "").strip() or None
    return info


def customer_or_error(data: bytes, usage_point_id: str) -> tuple[CustomerInfo | None, str | None]:
    try:
        return read_customer(data, usage_point_id), None
    except EspiError as exc:
        return None, f"The RetailCustomer feed could not be read: {exc}"


# ---------------------------------------------------------------- the raw XML preview

PREVIEW_BUDGET = 128 * 1024   # bytes of escaped HTML the preview may add to the page


def preview(data: bytes, budget: int = PREVIEW_BUDGET) -> tuple[str, bool]:
    """The start of the document as text, cut so that once HTML-escaped it stays within
    ``budget`` bytes (tags inflate by a third when escaped), at the end of a line or tag.
    Returns (text, truncated)."""
    text = data[:budget].decode("utf-8", "replace")
    size = 0
    cut = len(text)
    for i, ch in enumerate(text):
        size += _ESCAPED.get(ch, 1)
        if size > budget:
            cut = i
            break
    truncated = cut < len(text) or len(data) > budget
    if cut < len(text):
        text = text[:cut]
    if truncated:
        end = max(text.rfind("\n"), text.rfind(">") + 1 if ">" in text else -1)
        if end > 0:
            text = text[:end]
    return text, truncated


_ESCAPED = {"<": 4, ">": 4, "&": 5, '"': 5, "'": 5}


def now_local_date(clock: LocalClock, now: datetime | None = None) -> date:
    now = now or datetime.now(UTC)
    return clock.local_date(int(now.timestamp()))


# ---------------------------------------------------------------- the whole page


@dataclass
class MeterPage:
    """Everything the meter page shows for one usage point and window (no Flask)."""

    meter: dict                       # the run's meter (usage_point_id, tariff, local_time, …)
    window: Window
    clock: LocalClock
    url: str | None = None            # what was fetched (the token is a header, never in it)
    size: int | None = None
    waiting: int | None = None        # seconds to wait: the custodian answered 202
    error: dict | None = None         # CustodianError.as_dict() or a reading error
    usage_point: object | None = None
    channels: list[Channel] = field(default_factory=list)
    dropped: int = 0
    reading_types: list[dict] = field(default_factory=list)
    days: list[Period] = field(default_factory=list)
    months: list[Period] = field(default_factory=list)
    totals: dict = field(default_factory=dict)
    chart: dict | None = None
    bills: list[Bill] = field(default_factory=list)
    customer: CustomerInfo | None = None
    customer_note: str | None = None
    preview: str = ""
    preview_truncated: bool = False
    warnings: list[str] = field(default_factory=list)   # what the reader found odd but readable
    first: int | None = None          # first reading's start, last reading's end
    last: int | None = None

    @property
    def keys(self) -> list[str]:
        return [c.key for c in self.channels]

    @property
    def labels(self) -> dict[str, str]:
        return {c.key: c.label for c in self.channels}

    @property
    def unit(self) -> str:
        return self.channels[0].unit.label if self.channels else ""

    @property
    def rate_unit(self) -> str:
        return (self.channels[0].unit.rate or self.channels[0].unit.label) if self.channels else ""


def _granted_blocks(token: dict) -> set[int] | None:
    from ..scope import ScopeError, parse_scope

    try:
        return set(parse_scope(token.get("scope") or "").function_blocks)
    except ScopeError:
        return None


def load_meter_page(token: dict, meter: dict, window: Window, *, timeout: float, http=None,
                    read: Callable | None = None) -> MeterPage:
    """Fetch ``Batch/Subscription/{uid}/UsagePoint/{id}`` for the window (and the RetailCustomer
    batch when FB 51 was granted), read it with the streaming reader, and build the page.

    A 202 sets ``waiting``; a custodian error or unreadable XML sets ``error`` (the page still
    shows what the run already knows about the meter)."""
    from ..espi.reader import read_usage

    read = read or read_usage
    up_id = meter["usage_point_id"]
    clock = LocalClock.from_parameters(meter.get("local_time"))
    page = MeterPage(meter=meter, window=window, clock=clock)
    try:
        page.url = meter_url(token, up_id, window, clock)
        data = fetch(page.url, token, step="meter data", timeout=timeout, http=http)
    except gbc.NotReady as exc:
        page.waiting = exc.retry_after if exc.retry_after is not None else 5
        return page
    except gbc.CustodianError as exc:
        page.error = exc.as_dict()
        return page
    page.size = len(data)
    page.preview, page.preview_truncated = preview(data)
    try:
        usage = read(data, usage_point=up_id)
    except EspiError as exc:
        page.error = {"error": "bad_xml", "step": "meter data", "status": None, "error_description": None,
                      "message": f"The meter data could not be read: {exc}"}
        return page
    page.warnings = list(getattr(usage, "warnings", None) or [])
    page.usage_point = next((u for u in usage.usage_points if u.id == up_id), None)
    if page.usage_point is not None and page.usage_point.local_time is not None:
        page.clock = clock = LocalClock.from_parameters(page.usage_point.local_time)
    bounds = window.bounds(clock)
    lo, hi = bounds if bounds else (None, None)
    page.channels, page.dropped = channels([s for s in usage.series if s.usage_point_id in (up_id, None, "")],
                                           lo=lo, hi=hi)
    page.reading_types = reading_type_rows(page.channels)
    starts = [c.starts[0] for c in page.channels if len(c)]
    if starts:
        page.first = min(starts)
        page.last = max(c.starts[-1] + c.durations[-1] for c in page.channels if len(c))
    page.days = daily_totals(page.channels, clock)
    page.months = monthly_totals(page.days)
    page.totals = window_totals(page.channels)
    page.chart = chart_data(page.channels, clock, lo=lo, hi=hi)
    forward = next((c for c in page.channels if c.key == "forward"), None)
    page.bills = bills([u for u in usage.summaries if u.usage_point_id in (up_id, None, "")], clock, forward)
    _load_customer(page, token, timeout=timeout, http=http)
    return page


def _load_customer(page: MeterPage, token: dict, *, timeout: float, http=None) -> None:
    url = customer_url(token)
    blocks = _granted_blocks(token)
    if url is None:
        page.customer_note = "The token response has no customerResourceURI (account details were not shared)."
        return
    if blocks is not None and 51 not in blocks:
        page.customer_note = "Not shared: the granted scope does not include FB 51 (account details)."
        return
    try:
        data = fetch(url, token, step="customer", timeout=timeout, http=http)
    except gbc.NotReady:
        page.customer_note = "The custodian is still preparing the account details (202 Accepted)."
        return
    except gbc.CustodianError as exc:
        page.customer_note = exc.message + (f" The custodian said: {exc.description}" if exc.description else "")
        return
    page.customer, page.customer_note = customer_or_error(data, page.meter["usage_point_id"])

"""The sandbox's synthetic meter data: 15-minute interval readings and monthly
bills for the test customers' meters (no Flask).

Everything is a pure function of the directory meter's uid (``service_uid``),
the flow direction and the time: the same interval has the same value on every
run and every machine, for every authorization that shares that meter, and in
both the ESPI feeds and the JSON API. Randomness comes from ``hashlib`` digests
of (meter, day), never from ``hash()`` or global random state.

Shapes follow the local Pacific clock, DST included (a spring-forward day has
92 intervals, a fall-back day 100):

* residential: night base load, a morning and an evening peak, summer air
  conditioning in hot afternoons, winter heating and earlier lighting;
* commercial (a bakery/cafe): ovens from early morning, business hours on
  weekdays, a shorter Saturday, a quiet Sunday and public holidays;
* a solar meter (``solar = true`` in the customer file): daytime generation
  (seasonal day length, cloudy days) lowers the delivered flow (1) and what
  exceeds the load is exported on the reverse flow (19).

The weather (temperature, cloud) is a function of the date alone, so every
meter sees the same hot or cloudy day.

Values are ESPI's: ReadingType ``uom`` 72 (Wh) with ``powerOfTenMultiplier``
-3, i.e. an integer number of mWh (kWh = value / 1e6), rounded to whole Wh as
real meters report them. Money is in 1/100,000 USD as in ESPI UsageSummary.

Bills run monthly from the meter's billing cycle day (1..28, fixed per meter) to
the same day next month; the statement date is the period's end. Line items
follow PG&E/PCE tariffs in spirit (rates are illustrative): residential E-TOU-C
as "PG&E Delivery" and "PCE Generation" by peak/off-peak plus a daily base
charge; commercial B-tariffs as in UtilityAPI's capture ("Customer Charge",
"Demand Charge - Max Peak/Max Demand", "Energy Charges - Peak/Part Peak/Off
Peak", "Energy Commission Tax"), an "NEM Export Credit" for solar. Summer rates
apply when the period's middle falls in June..September. Every cost is rounded
once per line, and the bill's cost is the sum of its lines.

Speed matters (the Batch feed streams ~350,000 readings for a commercial
2-year history): a day's values are built from a few cached 96-slot shape
vectors with one list comprehension, and bills add up cached per-day sums.
"""
from __future__ import annotations

import hashlib
import math
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from itertools import compress
from zoneinfo import ZoneInfo

from .. import lookup

TZ = ZoneInfo("America/Los_Angeles")
INTERVAL = 900
FORWARD, REVERSE = 1, 19
SLOTS = 96  # quarter hours of a 24-hour local day

#: kW -> ESPI value of one 15-minute interval in whole Wh x 1000 (kW * 0.25 h * 1000 Wh/kWh)
_WH_PER_KW_INTERVAL = 250.0


@dataclass(frozen=True)
class MeterProfile:
    """What determines a meter's data: its seed, kind, solar, tariff and flows."""

    service_uid: str          # the customer-directory meter uid (lookup.Meter.uid): the seed
    kind: str                 # "residential" | "commercial" (Customer.customer_kind)
    solar: bool               # lookup.Meter.solar
    tariff: str
    flows: tuple[int, ...]    # (1,) or (1, 19) with solar export

    def __hash__(self) -> int:
        # the profile keys several caches looked up once per day of data: hash the seed only
        return hash(self.service_uid)


def profile(customer: lookup.Customer, meter: lookup.Meter) -> MeterProfile:
    kind = "commercial" if customer.customer_kind == "commercial" else "residential"
    return MeterProfile(service_uid=meter.uid, kind=kind, solar=bool(meter.solar), tariff=meter.service_tariff,
                        flows=(FORWARD, REVERSE) if meter.solar else (FORWARD,))


# ---------------------------------------------------------------- local days


def midnight(day: date) -> int:
    """Epoch seconds of the Pacific local midnight that starts ``day``."""
    return _midnight(day.toordinal())


@lru_cache(maxsize=8192)
def _midnight(ordinal: int) -> int:
    d = date.fromordinal(ordinal)
    return int(datetime(d.year, d.month, d.day, tzinfo=TZ).timestamp())


def local_date(ts: int) -> date:
    return datetime.fromtimestamp(ts, TZ).date()


def _first_midnight_at_or_after(ts: int) -> int:
    d = local_date(ts)
    t = midnight(d)
    return t if t >= ts else midnight(d + timedelta(days=1))


def data_window(history_start: int, now: int) -> tuple[int, int]:
    """``[start, end)``: from the first local midnight at or after ``history_start``
    to the local midnight that starts today (data runs through yesterday)."""
    end = midnight(local_date(now))
    start = _first_midnight_at_or_after(history_start)
    return min(start, end), end


def day_starts(start: int, end: int) -> list[int]:
    """The Pacific local midnights in ``[start, end)``."""
    out = []
    if start >= end:
        return out
    d = local_date(start)
    t = midnight(d)
    if t < start:
        d += timedelta(days=1)
        t = midnight(d)
    while t < end:
        out.append(t)
        d += timedelta(days=1)
        t = midnight(d)
    return out


def _slots(day_start: int, day_end: int) -> tuple[int, ...]:
    """The local quarter-hour slot (0..95) of each interval of a day: ``range(96)``
    on most days; 2:00-3:00 missing on a spring-forward day, 1:00-2:00 twice on a
    fall-back day."""
    n = (day_end - day_start) // INTERVAL
    if n == SLOTS:
        return _ALL_SLOTS
    return _dst_slots(day_start, n)


@lru_cache(maxsize=64)
def _dst_slots(day_start: int, n: int) -> tuple[int, ...]:
    out = []
    for i in range(n):
        t = datetime.fromtimestamp(day_start + i * INTERVAL, TZ)
        out.append(t.hour * 4 + t.minute // 15)
    return tuple(out)


_ALL_SLOTS = tuple(range(SLOTS))

# ---------------------------------------------------------------- seeds and weather


def _digest(*parts: object, size: int = 32) -> bytes:
    text = "\x1f".join(str(p) for p in parts).encode()
    return hashlib.shake_128(text).digest(size)


def _unit(*parts: object) -> float:
    """A deterministic uniform number in [0, 1) for ``parts``."""
    return int.from_bytes(_digest(*parts, size=8), "big") / 2.0**64


def _uniforms(n: int, *parts: object) -> tuple[float, ...]:
    """``n`` deterministic uniforms in [0, 1) (16-bit resolution is plenty for noise)."""
    raw = _digest(*parts, size=2 * n)
    return tuple(v / 65536.0 for v in struct.unpack(f">{n}H", raw))


def _normal(*parts: object) -> float:
    """A deterministic standard normal number (Box-Muller on two uniforms)."""
    u1, u2 = _uniforms(2, *parts)
    return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(2 * math.pi * u2)


@dataclass(frozen=True)
class Weather:
    """One day's weather on the Peninsula (shared by every meter)."""

    temp: float        # daily mean temperature, deg C
    clearness: float   # 0 (overcast) .. 1 (clear sky)
    patchy: bool       # broken clouds: generation varies within the day


@lru_cache(maxsize=4096)
def weather(ordinal: int) -> Weather:
    d = date.fromordinal(ordinal)
    doy = d.timetuple().tm_yday
    season = math.cos(2 * math.pi * (doy - 220) / 365.25)   # +1 in early August, -1 in early February
    # mild coast: ~10 C in winter, ~19 C in late summer; weather systems last a few days
    noise = 0.5 * _normal("temp", ordinal) + 0.3 * _normal("temp", ordinal - 1) + 0.2 * _normal("temp", ordinal - 2)
    temp = 14.5 + 4.5 * season + 3.2 * noise
    cloudy_odds = 0.30 - 0.22 * season    # ~52% of winter days, ~8% of summer days
    u = _unit("cloud", ordinal)
    if u < cloudy_odds:
        clearness = 0.15 + 0.5 * _unit("cloud-depth", ordinal)
        patchy = _unit("cloud-patchy", ordinal) < 0.6
    else:
        clearness = 0.88 + 0.12 * _unit("cloud-depth", ordinal)
        patchy = False
    return Weather(round(temp, 2), clearness, patchy)


def _day_length(doy: int) -> float:
    """Hours of daylight at 37.5 deg N."""
    return 12.0 + 2.45 * math.sin(2 * math.pi * (doy - 80) / 365.25)


_HOLIDAYS = {(1, 1), (7, 4), (12, 25)}


def _is_holiday(d: date) -> bool:
    if (d.month, d.day) in _HOLIDAYS:
        return True
    if d.month == 11 and d.weekday() == 3 and 22 <= d.day <= 28:  # Thanksgiving
        return True
    return False


def _daytype(d: date) -> str:
    """``weekday``, ``saturday`` or ``sunday`` (holidays count as Sunday)."""
    if _is_holiday(d) or d.weekday() == 6:
        return "sunday"
    return "saturday" if d.weekday() == 5 else "weekday"


# ---------------------------------------------------------------- shapes (96 local slots)


def _bump(center: float, width: float) -> tuple[float, ...]:
    """A smooth bump over the local day, 1 at ``center`` hours, ``width`` hours wide."""
    return tuple(math.exp(-0.5 * (((s + 0.5) / 4 - center) / width) ** 2) for s in range(SLOTS))


def _ramp(points: list[tuple[float, float]]) -> tuple[float, ...]:
    """Piecewise-linear level over the day through ``(hour, level)`` points."""
    out = []
    for s in range(SLOTS):
        h = (s + 0.5) / 4
        for (h0, v0), (h1, v1) in zip(points, points[1:], strict=False):
            if h0 <= h <= h1:
                out.append(v0 + (v1 - v0) * (h - h0) / (h1 - h0))
                break
        else:
            out.append(points[-1][1])
    return tuple(out)


def _add(*vectors: tuple[float, ...], weights: tuple[float, ...] | None = None) -> tuple[float, ...]:
    weights = weights or (1.0,) * len(vectors)
    return tuple(sum(w * v[s] for w, v in zip(weights, vectors, strict=True)) for s in range(SLOTS))


@lru_cache(maxsize=16)
def _residential_shapes(daytype: str) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(static load kW, cooling shape, heating shape) for a typical home."""
    if daytype == "weekday":
        static = _add(_bump(7.0, 0.9), _bump(12.5, 2.5), _bump(19.0, 1.8), weights=(0.55, 0.12, 0.95))
    else:
        static = _add(_bump(9.0, 1.4), _bump(13.0, 2.5), _bump(18.8, 2.0), weights=(0.55, 0.3, 0.9))
    static = tuple(0.17 + v for v in static)
    cooling = _bump(16.5, 2.6)
    heating = _add(_bump(7.0, 1.3), _bump(19.5, 2.2), weights=(0.8, 1.0))
    return static, cooling, heating


@lru_cache(maxsize=16)
def _commercial_shapes(daytype: str) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """(static load as a fraction of the meter's capacity, cooling shape, heating shape)."""
    if daytype == "weekday":
        static = _ramp([(0, 0.16), (4.25, 0.17), (5.5, 0.78), (7, 0.88), (11.5, 0.85), (13.5, 0.8),
                        (15, 0.62), (17, 0.48), (19, 0.26), (21, 0.17), (24, 0.16)])
        open_hours = _ramp([(0, 0), (6, 0), (7, 1), (18, 1), (19, 0), (24, 0)])
    elif daytype == "saturday":
        static = _ramp([(0, 0.16), (5.25, 0.16), (6.5, 0.55), (8, 0.6), (13, 0.55), (15, 0.3),
                        (16, 0.18), (24, 0.16)])
        open_hours = _ramp([(0, 0), (7, 0), (8, 1), (14, 1), (15, 0), (24, 0)])
    else:
        static = _ramp([(0, 0.15), (7, 0.15), (8, 0.3), (12, 0.3), (13, 0.16), (24, 0.15)])
        open_hours = _ramp([(0, 0), (8, 0), (9, 0.3), (12, 0.3), (13, 0), (24, 0)])
    heating = tuple(o * m for o, m in zip(open_hours, _ramp([(0, 0), (6, 1), (11, 0.7), (15, 0.2), (24, 0)]),
                                          strict=True))
    return static, open_hours, heating


@lru_cache(maxsize=512)
def _lighting(sunset_q: int) -> tuple[float, ...]:
    """Evening lights from sunset (in quarter hours) until bedtime."""
    sunset = sunset_q / 4
    return tuple(0.3 if sunset <= (s + 0.5) / 4 < 23 else 0.05 for s in range(SLOTS))


@lru_cache(maxsize=1024)
def _sun(sunrise_q: int, sunset_q: int, dst: bool) -> tuple[float, ...]:
    """Clear-sky generation per local slot (0..1), sunrise/sunset in standard-time quarter hours."""
    rise, down = sunrise_q / 4, sunset_q / 4
    shift = 1.0 if dst else 0.0
    out = []
    for s in range(SLOTS):
        h = (s + 0.5) / 4 - shift   # standard time
        out.append(math.sin(math.pi * (h - rise) / (down - rise)) ** 1.4 if rise < h < down else 0.0)
    return tuple(out)


_TARIFF_CAPACITY = {"19": 62.0, "10": 26.0, "1": 8.5, "6": 9.0}   # commercial peak kW by B-tariff number
_B_TARIFF = re.compile(r"^\s*[A-Z]-?(\d+)")


@lru_cache(maxsize=256)
def _capacity(p: MeterProfile) -> float:
    """Peak load in kW (commercial) or a scale around 1 (residential), varied per meter."""
    spread = 0.85 + 0.3 * _unit("scale", p.service_uid)
    if p.kind == "residential":
        return spread
    m = _B_TARIFF.match(p.tariff.upper())
    return _TARIFF_CAPACITY.get(m.group(1) if m else "", 15.0) * spread


@lru_cache(maxsize=256)
def _solar_kwp(p: MeterProfile) -> float:
    if not p.solar:
        return 0.0
    base = 5.5 if p.kind == "residential" else 1.25 * _capacity(p)
    return base * (0.9 + 0.2 * _unit("kwp", p.service_uid))


# ---------------------------------------------------------------- one day


@dataclass(frozen=True)
class _DayInfo:
    """What a local day's shapes depend on, shared by every meter."""

    ordinal: int
    doy: int
    month: int
    daytype: str
    dst: bool
    sunrise_q: int      # sunrise and sunset, standard time, in quarter hours
    sunset_q: int
    weather: Weather


@lru_cache(maxsize=4096)
def _day_info(day_start: int) -> _DayInfo:
    d = local_date(day_start)
    doy = d.timetuple().tm_yday
    daylen = _day_length(doy)
    return _DayInfo(
        ordinal=d.toordinal(), doy=doy, month=d.month, daytype=_daytype(d),
        dst=bool(datetime.fromtimestamp(day_start + 43200, TZ).dst()),
        sunrise_q=round((12.15 - daylen / 2) * 4), sunset_q=round((12.15 + daylen / 2) * 4),  # solar noon ~12:09
        weather=weather(d.toordinal()),
    )


_U16 = 1.0 / 65536.0


@lru_cache(maxsize=1024)
def _residential_base(daytype: str, lights_q: int) -> tuple[float, ...]:
    """A home's static load plus evening lights, per local slot (kW)."""
    static = _residential_shapes(daytype)[0]
    return tuple(st + li for st, li in zip(static, _lighting(lights_q), strict=True))


def _load(p: MeterProfile, info: _DayInfo, wh: float, rounded: bool) -> list:
    """The meter's load over the 96 local slots in Wh per interval; ``rounded``: as
    ESPI values (whole Wh x 1000), else floats.

    One list comprehension per day does the shape, the noise and the rounding;
    weather terms are only added on days that need them (most days have neither
    heating nor cooling)."""
    w = info.weather
    ordinal = info.ordinal
    if p.kind == "residential":
        base = _residential_base(info.daytype, info.sunset_q + (4 if info.dst else 0))
        _, cooling, heating = _residential_shapes(info.daytype)
        cool = max(0.0, w.temp - 19.5) * 0.32
        heat = max(0.0, 12.5 - w.temp) * 0.14
        if cool or heat:
            base = [b + cool * c + heat * h for b, c, h in zip(base, cooling, heating, strict=True)]
        noise = struct.unpack(">192H", _digest("load", p.service_uid, ordinal, size=4 * SLOTS))
        spike = (1.6 + 2.0 * _unit("spike-kw", p.service_uid, ordinal)) * _WH_PER_KW_INTERVAL
        a, b = 0.72 * wh, 0.56 * wh * _U16     # +-28% noise around the shape, appliances now and then
        if rounded:
            up = spike + 0.5
            return [int(v * (a + b * u) + (up if e > 63900 else 0.5)) * 1000
                    for v, u, e in zip(base, noise[:SLOTS], noise[SLOTS:], strict=True)]
        return [v * (a + b * u) + (spike if e > 63900 else 0.0)
                for v, u, e in zip(base, noise[:SLOTS], noise[SLOTS:], strict=True)]
    static, open_hours, heating = _commercial_shapes(info.daytype)
    cool = max(0.0, w.temp - 18.0) * 0.028
    heat = max(0.0, 12.0 - w.temp) * 0.02
    noise = struct.unpack(">96H", _digest("load", p.service_uid, ordinal, size=2 * SLOTS))
    a, b = 0.91 * wh, 0.18 * wh * _U16         # +-9%
    if rounded and not (cool or heat):
        return [int(v * (a + b * u) + 0.5) * 1000 for v, u in zip(static, noise, strict=True)]
    if rounded:
        return [int((v + cool * o + heat * h) * (a + b * u) + 0.5) * 1000
                for v, o, h, u in zip(static, open_hours, heating, noise, strict=True)]
    return [(v + cool * o + heat * h) * (a + b * u) for v, o, h, u in zip(static, open_hours, heating, noise,
                                                                          strict=True)]


@lru_cache(maxsize=32)
def _day(p: MeterProfile, day_start: int, day_end: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Both flows of one local day: (delivered, received) values per interval.

    Loads are worked out in Wh per interval over the 96 local slots, then mapped
    onto the day's intervals (92 or 100 on DST days) and rounded to whole Wh.
    """
    info = _day_info(day_start)
    slots = _slots(day_start, day_end)
    load = _load(p, info, _capacity(p) * _WH_PER_KW_INTERVAL, rounded=not p.solar)
    if slots is not _ALL_SLOTS:
        load = [load[s] for s in slots]
    if not p.solar:
        return tuple(load), (0,) * len(slots)

    w = info.weather
    sun = _sun(info.sunrise_q, info.sunset_q, info.dst)
    kwp = _solar_kwp(p) * (0.8 + 0.2 * math.sin(2 * math.pi * (info.doy - 80) / 365.25))   # higher summer sun
    peak = kwp * _WH_PER_KW_INTERVAL
    if w.patchy:   # broken clouds: each quarter hour between 40% and 100%+ of the day's clearness
        passing = struct.unpack(">96H", _digest("clouds", info.ordinal, size=2 * SLOTS))
        gen = [peak * s * min(1.0, w.clearness * (0.4 + 1.4 * _U16 * u)) for s, u in zip(sun, passing, strict=True)]
    else:
        k = peak * w.clearness
        gen = [k * s for s in sun]
    if slots is not _ALL_SLOTS:
        gen = [gen[s] for s in slots]
    fwd = tuple([int(v - g + 0.5) * 1000 if v > g else 0 for v, g in zip(load, gen, strict=True)])
    rev = tuple([int(g - v + 0.5) * 1000 if g > v else 0 for v, g in zip(load, gen, strict=True)])
    return fwd, rev


def day_values(p: MeterProfile, flow: int, day_start: int, day_end: int) -> list[int]:
    """The values of one whole local day ``[day_start, day_end)`` (the fast path:
    interval ``i`` starts at ``day_start + 900 * i``). Flow 19 of a meter without
    solar is all zeros."""
    if flow not in (FORWARD, REVERSE):
        raise ValueError(f"flow direction {flow} is not served (1 delivered, 19 received)")
    fwd, rev = _day(p, day_start, day_end)
    _day_sum(p, day_start, day_end)   # while the day is at hand: bills over it will not recompute it
    return list(fwd if flow == FORWARD else rev)


def readings(p: MeterProfile, flow: int, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Every 900-s interval lying inside ``[start, end)``: ``(interval start, value)``;
    value in Wh x 10^-3 (kWh = value / 1e6)."""
    if start >= end:
        return
    d = local_date(start)
    while True:
        ds = midnight(d)
        if ds >= end:
            return
        d += timedelta(days=1)
        de = midnight(d)
        if de <= start:
            continue
        values = day_values(p, flow, ds, de)
        if ds >= start and de <= end:
            yield from zip(range(ds, de, INTERVAL), values, strict=True)
        else:
            for t, v in zip(range(ds, de, INTERVAL), values, strict=True):
                if t >= start and t + INTERVAL <= end:
                    yield t, v


# ---------------------------------------------------------------- bills


@dataclass(frozen=True)
class LineItem:
    """One bill line. ``cost`` in 1/100,000 USD; ``rate`` in USD per kWh (energy), per kW
    (demand, with ``demand_kw``) or per day (fixed); ``volume_kwh`` for energy lines."""

    name: str
    kind: str            # "fixed" | "use" | "demand" | "tax" | "credit"
    volume_kwh: float | None
    rate: float | None
    cost: int
    demand_kw: float | None = None


@dataclass(frozen=True)
class Bill:
    uid: str
    start: int            # local midnight
    end: int              # local midnight, exclusive
    statement: int        # local midnight: the statement date (= end, the meter read day)
    consumption: int      # Wh x 10^-3, sum of flow-1 readings in [start, end)
    export: int           # sum of flow-19 readings (0 without solar)
    cost: int             # 1/100,000 USD, = sum of line_items costs
    line_items: tuple[LineItem, ...]

    @property
    def kwh(self) -> float:
        return self.consumption / 1e6

    @property
    def export_kwh(self) -> float:
        return self.export / 1e6

    @property
    def cost_usd(self) -> float:
        return self.cost / 1e5

    @property
    def days(self) -> int:
        return len(day_starts(self.start, self.end))


def billing_day(p: MeterProfile) -> int:
    """The meter's billing cycle day of the month (1..28), fixed per meter."""
    return 1 + int(_unit("cycle", p.service_uid) * 28)


#: TOU periods per local slot: 0 off-peak, 1 part-peak, 2 peak
@lru_cache(maxsize=16)
def _tou_table(kind: str, daytype: str) -> tuple[int, ...]:
    out = []
    for s in range(SLOTS):
        h = s / 4
        if kind == "residential":   # E-TOU-C: 4-9 pm every day
            out.append(2 if 16 <= h < 21 else 0)
        elif daytype != "weekday":  # B tariffs: weekends and holidays are off-peak
            out.append(0)
        elif 16 <= h < 21:
            out.append(2)
        elif 14 <= h < 16 or 21 <= h < 23:
            out.append(1)
        else:
            out.append(0)
    return tuple(out)


@dataclass(frozen=True)
class _DaySum:
    fwd: int
    rev: int
    tou: tuple[int, int, int]   # delivered in off-peak, part-peak, peak
    max_value: int              # highest delivered 15-min value (demand)
    max_peak_value: int         # highest delivered 15-min value in peak hours


@lru_cache(maxsize=64)
def _tou_masks(kind: str, daytype: str, slots: tuple[int, ...]) -> tuple[tuple[bool, ...], ...]:
    """Per TOU period (off, part, peak), which of the day's intervals fall in it."""
    table = _tou_table(kind, daytype)
    return tuple(tuple(table[s] == period for s in slots) for period in (0, 1, 2))


@lru_cache(maxsize=16384)
def _day_sum(p: MeterProfile, day_start: int, day_end: int) -> _DaySum:
    """A day's totals for bills (small, so thousands are cached: bills never recompute days)."""
    fwd, rev = _day(p, day_start, day_end)
    off, part, peak = _tou_masks(p.kind, _day_info(day_start).daytype, _slots(day_start, day_end))
    peak_values = list(compress(fwd, peak))
    return _DaySum(sum(fwd), sum(rev), (sum(compress(fwd, off)), sum(compress(fwd, part)), sum(peak_values)),
                   max(fwd, default=0), max(peak_values, default=0))


#: USD: (summer, winter) rates. Summer = June..September, as PG&E's tariffs.
_RESIDENTIAL = {
    "base": 0.40,                                    # per day
    "delivery": {2: (0.301, 0.242), 0: (0.236, 0.221)},
    "generation": {2: (0.171, 0.128), 0: (0.112, 0.101)},
}
_COMMERCIAL = {
    # tariff number: customer $/day, demand $/kW (max, max peak), energy $/kWh by TOU (summer, winter)
    "19": {"customer": 8.21, "demand": (29.84, (21.63, 2.30)),
           "energy": {2: (0.212, 0.171), 1: (0.168, 0.152), 0: (0.139, 0.131)}},
    "10": {"customer": 4.93, "demand": (18.74, None), "energy": {2: (0.263, 0.214), 0: (0.203, 0.184)}},
    "1": {"customer": 0.82, "demand": None, "energy": {2: (0.381, 0.302), 0: (0.291, 0.262)}},
    "6": {"customer": 0.82, "demand": None, "energy": {2: (0.447, 0.321), 0: (0.258, 0.251)}},
}
_ENERGY_COMMISSION_TAX = 0.0003   # $/kWh
_EXPORT_CREDIT = (-0.094, -0.081)  # $/kWh received (NEM: the generation part of the rate)
_TOU_NAMES = {2: "Peak", 1: "Part Peak", 0: "Off Peak"}


def _usd(value: float) -> int:
    """USD -> 1/100,000 USD, rounded to whole cents as on a bill (CED: 44605000 = $446.05)."""
    return int(round(value * 100)) * 1000


def _energy_item(name: str, kind: str, value: int, rate: float) -> LineItem:
    # value (mWh) * rate ($/kWh) = value / 1e6 * rate dollars
    return LineItem(name, kind, round(value / 1e6, 6), rate, _usd(value * rate / 1e6))


def _tariff_plan(p: MeterProfile) -> dict:
    m = _B_TARIFF.match(p.tariff.upper())
    number = m.group(1) if m else ""
    if p.kind == "commercial":
        return _COMMERCIAL.get(number, _COMMERCIAL["1"])
    return {}


def _bill(p: MeterProfile, start: int, end: int) -> Bill:
    days = day_starts(start, end)
    sums = [_day_sum(p, ds, de) for ds, de in zip(days, days[1:] + [end], strict=True)]
    fwd = sum(s.fwd for s in sums)
    rev = sum(s.rev for s in sums)
    tou = [sum(s.tou[i] for s in sums) for i in range(3)]
    middle = local_date((start + end) // 2)
    season = 0 if 6 <= middle.month <= 9 else 1
    items: list[LineItem] = []
    if p.kind == "residential":
        plan = _RESIDENTIAL
        items.append(LineItem("Base Services Charge", "fixed", None, plan["base"], _usd(plan["base"] * len(days))))
        for period in (2, 0):
            items.append(_energy_item(f"PG&E Delivery - {_TOU_NAMES[period]}", "use", tou[period],
                                      plan["delivery"][period][season]))
        for period in (2, 0):
            items.append(_energy_item(f"PCE Generation - {_TOU_NAMES[period]}", "use", tou[period],
                                      plan["generation"][period][season]))
    else:
        plan = _tariff_plan(p)
        items.append(LineItem("Customer Charge", "fixed", None, plan["customer"],
                              _usd(plan["customer"] * len(days))))
        if plan["demand"]:
            max_rate, peak_rates = plan["demand"]
            if peak_rates:
                kw = round(max(s.max_peak_value for s in sums) * 4 / 1e6, 3)
                items.append(LineItem("Demand Charge - Max Peak", "demand", None, peak_rates[season],
                                      _usd(kw * peak_rates[season]), demand_kw=kw))
            kw = round(max(s.max_value for s in sums) * 4 / 1e6, 3)
            items.append(LineItem("Demand Charge - Max Demand", "demand", None, max_rate, _usd(kw * max_rate),
                                  demand_kw=kw))
        energy = plan["energy"]
        if 1 not in energy:   # no part-peak on this tariff: it is off-peak
            tou = [tou[0] + tou[1], 0, tou[2]]
        for period in (2, 1, 0):
            if period in energy:
                items.append(_energy_item(f"Energy Charges - {_TOU_NAMES[period]}", "use", tou[period],
                                          energy[period][season]))
    if p.solar:
        items.append(_energy_item("NEM Export Credit", "credit", rev, _EXPORT_CREDIT[season]))
    items.append(_energy_item("Energy Commission Tax", "tax", fwd, _ENERGY_COMMISSION_TAX))
    uid = str(10_000_000 + int.from_bytes(_digest("bill", p.service_uid, start, size=8), "big") % 90_000_000)
    return Bill(uid=uid, start=start, end=end, statement=end, consumption=fwd, export=rev,
                cost=sum(i.cost for i in items), line_items=tuple(items))


def billing_periods(p: MeterProfile, start: int, end: int) -> list[tuple[int, int]]:
    """Monthly ``(start, end)`` periods (cycle day to cycle day) lying inside ``[start, end)``."""
    if start >= end:
        return []
    cycle = billing_day(p)
    first = local_date(start)
    y, m = first.year, first.month - 1
    if m == 0:
        y, m = y - 1, 12
    out = []
    while True:
        ps = midnight(date(y, m, cycle))
        y2, m2 = (y + 1, 1) if m == 12 else (y, m + 1)
        pe = midnight(date(y2, m2, cycle))
        if ps >= end:
            return out
        if ps >= start and pe <= end:
            out.append((ps, pe))
        y, m = y2, m2


def bills(p: MeterProfile, start: int, end: int) -> list[Bill]:
    """Complete monthly billing periods inside ``[start, end)``, oldest first."""
    return [_bill(p, ps, pe) for ps, pe in billing_periods(p, start, end)]

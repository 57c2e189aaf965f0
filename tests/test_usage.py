"""The meter page's numbers (demo.site.usage): ESPI DST rules and local time, units, daily and
monthly totals on DST days, chart downsampling bounds, bills, the date window, the customer."""
from __future__ import annotations

import array
import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest

from demo.espi.model import LocalTimeParameters
from demo.espi.reader import CostItem, ReadingType, Series, UsageSummary
from demo.site import usage
from demo.site.usage import DstRule, DstRuleError, LocalClock, Window, WindowError

PACIFIC = LocalTimeParameters(tz_offset=-28800, dst_offset=3600, dst_start_rule="360E2000",
                              dst_end_rule="B40E2000")
LA = ZoneInfo("America/Los_Angeles")
WH = ReadingType(id="rt1", flow_direction=1, uom=72, power_of_ten_multiplier=-3, interval_length=900, kind=12,
                 accumulation_behaviour=4, commodity=1, currency=840)
WH_REV = ReadingType(id="rt19", flow_direction=19, uom=72, power_of_ten_multiplier=-3, interval_length=900)


def clock() -> LocalClock:
    return LocalClock.from_parameters(PACIFIC)


def la_midnight(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=LA).timestamp())


def series(rt: ReadingType | None, start: int, values: list[int], up: str = "up1", step: int = 900) -> Series:
    s = Series(usage_point_id=up, meter_reading_id=f"mr{getattr(rt, 'flow_direction', 0)}", reading_type=rt)
    s.starts = array.array("q", (start + i * step for i in range(len(values))))
    s.durations = array.array("q", [step] * len(values))
    s.values = array.array("q", values)
    return s


# ---------------------------------------------------------------- DST rules


def test_us_rules_decode_to_second_sunday_of_march_and_first_sunday_of_november():
    start, end = DstRule.decode("360E2000"), DstRule.decode("B40E2000")
    assert (start.month, start.operator, start.day_of_week, start.hour, start.seconds) == (3, 3, 7, 2, 0)
    assert (end.month, end.operator, end.day_of_week, end.hour, end.seconds) == (11, 2, 7, 2, 0)
    assert start.describe() == "second Sunday of March at 02:00"
    assert end.describe() == "first Sunday of November at 02:00"
    assert [start.date_in(y) for y in (2024, 2025, 2026)] == [date(2024, 3, 10), date(2025, 3, 9), date(2026, 3, 8)]
    assert [end.date_in(y) for y in (2024, 2025, 2026)] == [date(2024, 11, 3), date(2025, 11, 2), date(2026, 11, 1)]


def test_rule_operators_and_the_spec_example():
    # the schema's own example: third Friday of March at 01:45 (seconds 2700, hours 1, dow 5, op 4)
    value = (3 << 28) | (4 << 25) | (0 << 20) | (5 << 17) | (1 << 12) | 2700
    rule = DstRule.decode(f"{value:08X}")
    assert rule.date_in(2025) == date(2025, 3, 21) and rule.describe() == "third Friday of March at 01:45"
    # EU: last Sunday of March / October at 01:00 (UTC-based in reality; the encoding is what matters)
    last = DstRule.decode(f"{(3 << 28) | (7 << 25) | (7 << 17) | (1 << 12):08X}")
    assert last.date_in(2025) == date(2025, 3, 30)
    # operator 0: a fixed day; operator 1: the weekday on or after a day
    fixed = DstRule.decode(f"{(4 << 28) | (0 << 25) | (15 << 20) | (2 << 12):08X}")
    assert fixed.date_in(2025) == date(2025, 4, 15)
    on_after = DstRule.decode(f"{(3 << 28) | (1 << 25) | (8 << 20) | (7 << 17) | (2 << 12):08X}")
    assert on_after.date_in(2025) == date(2025, 3, 9) and on_after.date_in(2026) == date(2026, 3, 8)
    # a fifth Sunday that does not exist falls back to the last one
    fifth = DstRule.decode(f"{(2 << 28) | (6 << 25) | (7 << 17):08X}")
    assert fifth.date_in(2025) == date(2025, 2, 23)


def test_disabled_and_malformed_rules():
    assert DstRule.decode("FFFFFFFF") is None
    assert DstRule.decode(0xFFFFFFFF) is None
    for bad in ("xyz", "", "1234567890", "0E2000"):   # not hex, empty, too long, month 0
        with pytest.raises(DstRuleError):
            DstRule.decode(bad)
    with pytest.raises(DstRuleError, match="day of the week"):
        DstRule.decode(f"{(3 << 28) | (3 << 25):08X}")


# ---------------------------------------------------------------- local time


def test_the_clock_matches_the_tz_database_for_us_pacific_since_2007():
    c = clock()
    lo, hi = (int(datetime(y, 1, 1, tzinfo=UTC).timestamp()) for y in (2007, 2031))
    for ts in range(lo, hi, 7 * 3600 + 13 * 60):
        assert c.offset(ts) == datetime.fromtimestamp(ts, LA).utcoffset().total_seconds(), ts
    for year, day in ((2024, 10), (2025, 9), (2026, 8)):
        start, end = c.transitions(year)
        assert datetime.fromtimestamp(start, LA).strftime("%m-%d %H:%M %Z") == f"03-{day:02d} 03:00 PDT"
        assert datetime.fromtimestamp(start - 1, LA).strftime("%H:%M:%S %Z") == "01:59:59 PST"
        assert datetime.fromtimestamp(end, LA).strftime("%H:%M %Z") == "01:00 PST"
        assert datetime.fromtimestamp(end - 1, LA).strftime("%H:%M:%S %Z") == "01:59:59 PDT"


def test_midnights_and_day_lengths_on_dst_days():
    c = clock()
    for d in (date(2025, 3, 9), date(2025, 11, 2), date(2025, 7, 1), date(2026, 1, 1)):
        assert c.midnight(d) == la_midnight(d)
    assert (c.midnight(date(2025, 3, 10)) - c.midnight(date(2025, 3, 9))) // 900 == 92
    assert (c.midnight(date(2025, 11, 3)) - c.midnight(date(2025, 11, 2))) // 900 == 100
    assert c.local_date(la_midnight(date(2025, 11, 2)) + 99 * 900) == date(2025, 11, 2)
    assert c.format(c.transitions(2025)[0]) == "2025-03-09 03:00 −07:00"
    assert c.describe() == ("UTC−08:00; DST +1 h from the second Sunday of March at 02:00 "
                            "to the first Sunday of November at 02:00")


def test_fixed_offset_and_missing_parameters():
    assert LocalClock.from_parameters(None).offset(1_700_000_000) == 0
    no_dst = LocalClock.from_parameters({"tz_offset": -18000, "dst_offset": 0, "dst_start_rule": "360E2000",
                                         "dst_end_rule": "B40E2000"})
    assert not no_dst.has_dst and no_dst.offset(1_720_000_000) == -18000
    assert no_dst.describe() == "UTC−05:00, no daylight saving time"
    disabled = LocalClock.from_parameters({"tz_offset": 3600, "dst_offset": 3600, "dst_start_rule": "FFFFFFFF",
                                           "dst_end_rule": "FFFFFFFF"})
    assert not disabled.has_dst and disabled.offset(1_720_000_000) == 3600


def test_southern_hemisphere_rules_wrap_the_year():
    # Sydney-like: DST from the first Sunday of October to the first Sunday of April, 02:00/03:00
    start = f"{(10 << 28) | (2 << 25) | (7 << 17) | (2 << 12):08X}"
    end = f"{(4 << 28) | (2 << 25) | (7 << 17) | (3 << 12):08X}"
    c = LocalClock.from_parameters({"tz_offset": 36000, "dst_offset": 3600, "dst_start_rule": start,
                                    "dst_end_rule": end})
    sydney = ZoneInfo("Australia/Sydney")
    lo, hi = (int(datetime(y, 1, 1, tzinfo=UTC).timestamp()) for y in (2024, 2026))
    for ts in range(lo, hi, 5 * 3600 + 7 * 60):
        assert c.offset(ts) == datetime.fromtimestamp(ts, sydney).utcoffset().total_seconds(), ts


# ---------------------------------------------------------------- units, flows, totals


def test_units_scale_by_the_power_of_ten_multiplier():
    assert usage.Unit.of(72, -3) == usage.Unit("kWh", 1e-6, "kW")
    assert usage.Unit.of(72, 0).factor == pytest.approx(1e-3)
    assert usage.Unit.of(38, 3) == usage.Unit("kW", 1.0, None)
    assert usage.Unit.of(169, -2).label == "therm" and usage.Unit.of(169, -2).factor == pytest.approx(0.01)
    assert usage.Unit.of(999, 0).label == "uom 999"


def _two_days(flow_values) -> list[Series]:
    """Readings across the spring-forward day 2025-03-09 and the day after."""
    start = la_midnight(date(2025, 3, 9))
    return [series(rt, start, vals) for rt, vals in flow_values]


def test_daily_totals_follow_local_days_with_92_and_100_intervals():
    c = clock()
    spring = la_midnight(date(2025, 3, 9))
    fall = la_midnight(date(2025, 11, 2))
    n_spring = (la_midnight(date(2025, 3, 11)) - spring) // 900     # 92 + 96
    n_fall = (la_midnight(date(2025, 11, 4)) - fall) // 900         # 100 + 96
    chs, dropped = usage.channels([series(WH, spring, [250_000] * n_spring), series(WH, fall, [500_000] * n_fall)])
    assert dropped == 0 and [c.key for c in chs] == ["forward"]
    days = usage.daily_totals(chs, c)
    assert [(d.label, d.intervals, d.expected, d.hours, d.note) for d in days] == [
        ("2025-03-09", 92, 92, 23.0, "DST starts (23 h)"),
        ("2025-03-10", 96, 96, 24.0, ""),
        ("2025-11-02", 100, 100, 25.0, "DST ends (25 h)"),
        ("2025-11-03", 96, 96, 24.0, ""),
    ]
    assert days[0].totals["forward"] == pytest.approx(92 * 0.25)      # 250 Wh per quarter hour
    assert days[2].totals["forward"] == pytest.approx(100 * 0.5)
    assert days[0].peak == pytest.approx(1.0) and days[2].peak == pytest.approx(2.0)   # kW
    months = usage.monthly_totals(days)
    assert [(m.label, m.days, m.intervals, m.expected) for m in months] == [("2025-03", 2, 188, 31),
                                                                          ("2025-11", 2, 196, 30)]
    assert not months[0].complete and days[0].complete and days[1].complete


def test_export_and_net_when_a_reverse_flow_is_present():
    c = clock()
    start = la_midnight(date(2025, 6, 1))
    fwd = [1000_000] * 96
    rev = [0] * 40 + [3000_000] * 16 + [0] * 40      # midday export
    chs, _ = usage.channels([series(WH, start, fwd), series(WH_REV, start, rev)])
    assert [(ch.key, ch.label, ch.computed) for ch in chs] == [
        ("forward", "Delivered", False), ("reverse", "Exported", False), ("net", "Net", True)]
    total = usage.window_totals(chs)["totals"]
    assert total == {"forward": pytest.approx(96.0), "reverse": pytest.approx(48.0), "net": pytest.approx(48.0)}
    net = chs[2]
    assert min(net.values) == pytest.approx(-2.0) and max(net.values) == pytest.approx(1.0)
    days = usage.daily_totals(chs, c)
    assert days[0].totals == {"forward": pytest.approx(96.0), "reverse": pytest.approx(48.0),
                              "net": pytest.approx(48.0)}
    rows = usage.reading_type_rows(chs)
    assert [r["flow"] for r in rows] == ["1 · delivered (forward)", "19 · received (reverse)"]
    assert rows[0]["scaled_to"] == "10^-3 → kWh" and rows[0]["readings"] == 96


def test_channels_clip_to_the_window_and_merge_meter_readings():
    start = la_midnight(date(2025, 6, 1))
    a = series(WH, start, [1, 2, 3, 4])
    b = series(WH, start + 2 * 900, [30, 40, 50])          # overlaps a: the later reading wins
    chs, dropped = usage.channels([a, b], lo=start + 900, hi=start + 4 * 900)
    assert chs[0].starts == [start + 900, start + 1800, start + 2700]
    assert [round(v * 1e6) for v in chs[0].values] == [2, 30, 40]
    assert dropped == 2                                     # t0 of a, t4 of b
    # one sorted series: a slice
    chs, dropped = usage.channels([series(WH, start, list(range(10)))], lo=start + 900, hi=start + 3 * 900)
    assert len(chs[0]) == 2 and dropped == 8


# ---------------------------------------------------------------- chart downsampling


def test_bucket_sizes_keep_the_chart_small():
    assert usage.bucket_for(31 * 86400, 900) == 900                 # a month: every reading
    assert usage.bucket_for(90 * 86400, 900) == 3600
    assert usage.bucket_for(731 * 86400, 900) == 21600
    assert usage.bucket_for(731 * 86400, 3600) == 21600
    for days in (1, 7, 30, 31, 32, 90, 365, 731, 3650):
        b = usage.bucket_for(days * 86400, 900)
        assert b % 900 == 0 and -(-days * 86400 // b) <= usage.MAX_POINTS


def test_two_years_downsample_to_at_most_max_points_with_min_max_mean():
    c = clock()
    start = la_midnight(date(2024, 11, 1))
    end = la_midnight(date(2026, 11, 1))
    n = (end - start) // 900
    values = [((i % 96) * 10_000) for i in range(n)]           # a daily ramp 0 .. 950 Wh
    rev = [((i + 48) % 96) * 1000 for i in range(n)]
    chs, _ = usage.channels([series(WH, start, values), series(WH_REV, start, rev)])
    chart = usage.chart_data(chs, c, lo=start, hi=end)
    assert chart["step"] == 21600 and chart["n"] <= usage.MAX_POINTS and not chart["full_resolution"]
    assert chart["unit"] == "kW"
    forward = chart["series"][0]
    assert forward["key"] == "forward" and len(forward["mean"]) == chart["n"]
    scale = forward["scale"]
    assert max(forward["max"]) / scale == pytest.approx(3.8)              # 950 Wh in 15 min = 3.8 kW
    assert min(forward["min"]) / scale == pytest.approx(0.0)
    assert all(lo <= m <= hi for lo, m, hi in zip(forward["min"], forward["mean"], forward["max"], strict=True)
               if m is not None)
    net = chart["series"][2]
    assert net["key"] == "net" and "min" not in net          # net: the mean only
    # compact: well under 200 KB for 2 years of two flows
    assert len(json.dumps(chart, separators=(",", ":"))) < 150_000
    # the time zone table lets the browser label local time
    assert chart["tz"][0][1] in (-28800, -25200) and len(chart["tz"]) >= 5


def test_small_windows_keep_every_reading():
    c = clock()
    start = la_midnight(date(2025, 3, 1))
    chs, _ = usage.channels([series(WH, start, [100_000 + i for i in range(14 * 96)])])
    chart = usage.chart_data(chs, c, lo=start, hi=start + 14 * 86400)
    assert chart["full_resolution"] and chart["step"] == 900 and chart["n"] == 14 * 96
    assert "min" not in chart["series"][0]
    assert chart["series"][0]["mean"][0] / chart["series"][0]["scale"] == pytest.approx(0.4)
    assert usage.chart_data([], c) is None


def test_gaps_stay_gaps():
    c = clock()
    start = la_midnight(date(2025, 5, 1))
    s = series(WH, start, [100_000] * 8)
    s.starts = array.array("q", list(s.starts[:4]) + [t + 3600 for t in s.starts[4:]])
    chs, _ = usage.channels([s])
    chart = usage.chart_data(chs, c)
    assert chart["series"][0]["mean"].count(None) == 4


# ---------------------------------------------------------------- bills


def _bill(start: int, days: int, cost: int, kwh_milli: int, lines=()) -> UsageSummary:
    return UsageSummary(id="b1", usage_point_id="up1", start=start, duration=days * 86400, bill_last_period=cost,
                        consumption=kwh_milli, consumption_uom=72, consumption_multiplier=-3, currency=840,
                        tariff_profile="E-TOU-C", line_items=tuple(lines))


def test_bills_in_local_dates_with_money_from_hundred_thousandths():
    c = clock()
    start = la_midnight(date(2025, 1, 15))
    lines = [CostItem("PG&E Delivery", 30_000_000, 10), CostItem("PCE Generation", 14_605_000, 10)]
    rows = usage.bills([_bill(start, 31, 44_605_000, 2_315_074_000, lines)], c)
    bill = rows[0]
    assert (bill.first_day, bill.end_day, bill.days) == (date(2025, 1, 15), date(2025, 2, 15), 31)
    assert bill.cost == Decimal("446.05") and bill.currency == "USD"
    assert bill.consumption == pytest.approx(2315.074) and bill.consumption_unit == "kWh"
    assert bill.lines == [("PG&E Delivery", Decimal("300"), 10), ("PCE Generation", Decimal("146.05"), 10)]
    assert bill.lines_total == Decimal("446.05") and bill.lines_match is True
    assert bill.intervals_match is None                         # no interval data given


def test_bills_are_checked_against_the_interval_data_they_cover():
    c = clock()
    start = la_midnight(date(2025, 3, 1))
    days = 31
    n = (la_midnight(date(2025, 4, 1)) - start) // 900        # 31 days, one of them 23 h
    chs, _ = usage.channels([series(WH, start - 86400, [250_000] * (n + 2 * 96))])
    fwd = chs[0]
    good = _bill(start, days, 1_000_000, n * 250_000)
    good = UsageSummary(**{**good.__dict__, "duration": la_midnight(date(2025, 4, 1)) - start})
    bad = UsageSummary(**{**good.__dict__, "consumption": n * 250_000 + 5_000_000})
    outside = UsageSummary(**{**good.__dict__, "start": start - 40 * 86400})
    rows = usage.bills([good, bad, outside], c, fwd)
    by_start = {b.first_day: b for b in rows}
    assert [b.intervals_match for b in rows if b.first_day == date(2025, 3, 1)] == [True, False]
    assert by_start[date(2025, 1, 20)].intervals_match is None
    assert rows[0].first_day == date(2025, 3, 1)            # newest first


def test_money_is_exact():
    assert usage.money(1) == Decimal("0.00001")
    assert usage.money(-250_000) == Decimal("-2.5")
    assert usage.money(None) is None


# ---------------------------------------------------------------- the date window


def test_window_defaults_presets_and_dates():
    today = date(2025, 11, 27)
    w = usage.parse_window({}, today)
    assert (w.first, w.last, w.preset) == (date(2025, 8, 30), today, "90d")
    assert usage.parse_window({"range": "all"}, today).all
    assert usage.parse_window({"range": "7d"}, today).first == date(2025, 11, 21)
    w = usage.parse_window({"from": "2025-03-01", "to": "2025-03-31"}, today)
    assert (w.first, w.last) == (date(2025, 3, 1), date(2025, 3, 31))
    assert w.describe() == "2025-03-01 to 2025-03-31 (31 days)"
    assert w.args() == {"from": "2025-03-01", "to": "2025-03-31"}
    assert usage.parse_window({"to": "2025-03-31"}, today).first == date(2025, 1, 1)


def test_window_query_uses_local_midnights():
    c = clock()
    w = Window(date(2025, 3, 9), date(2025, 3, 9))
    assert w.query(c) == {"published-min": "2025-03-09T00:00:00-08:00", "published-max": "2025-03-10T00:00:00-07:00"}
    lo, hi = w.bounds(c)
    assert (hi - lo) // 900 == 92
    assert Window(None, None, "all").query(c) == {}
    # never a published-max in the future: today's window stops at the current minute
    now = la_midnight(date(2025, 6, 1)) + 9 * 3600 + 59
    today = Window(date(2025, 5, 31), date(2025, 6, 1)).query(c, now=now)
    assert today == {"published-min": "2025-05-31T00:00:00-07:00", "published-max": "2025-06-01T09:00:00-07:00"}


@pytest.mark.parametrize("args, message", [
    ({"from": "2025-02-30"}, "not a real date"),
    ({"from": "03/01/2025"}, "YYYY-MM-DD"),
    ({"to": "yesterday"}, "YYYY-MM-DD"),
    ({"from": "2025-05-01", "to": "2025-04-01"}, "is after"),
    ({"from": "1899-01-01", "to": "2025-04-01"}, "before 1990"),
    ({"to": "2099-01-01"}, "future"),
    ({"range": "forever"}, "Unknown range"),
])
def test_bad_windows_say_why(args, message):
    with pytest.raises(WindowError, match=message):
        usage.parse_window(args, date(2025, 11, 27))


def test_urls_from_the_token():
    token = {"resourceURI": "https://dc.example/espi/1_1/resource/Subscription/77",
             "customerResourceURI": "https://dc.example/espi/1_1/resource/RetailCustomer/77"}
    url = usage.meter_url(token, "123", Window(date(2025, 1, 1), date(2025, 1, 31)), clock())
    assert url == ("https://dc.example/espi/1_1/resource/Batch/Subscription/77/UsagePoint/123"
                   "?published-min=2025-01-01T00%3A00%3A00-08%3A00&published-max=2025-02-01T00%3A00%3A00-08%3A00")
    assert usage.meter_url(token, "123", Window(None, None), clock()).endswith("/Batch/Subscription/77/UsagePoint/123")
    assert usage.customer_url(token) == "https://dc.example/espi/1_1/resource/Batch/RetailCustomer/77"
    assert usage.customer_url({}) is None


# ---------------------------------------------------------------- customer and preview

CUSTOMER_FEED = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
 <entry><link rel="self" href="http://x/RetailCustomer/9/Customer/c1"/>
  <content><Customer xmlns="http://naesb.org/espi/customer"><kind>residential</kind>
   <customerName>RILEY RESIDENTIAL</customerName></Customer></content></entry>
 <entry><link rel="self" href="http://x/RetailCustomer/9/Customer/c1/CustomerAccount/a1"/>
  <content><CustomerAccount xmlns="http://naesb.org/espi/customer"><contactInfo><streetAddress>
   <streetDetail><addressGeneral>333 W EL CAMINO REAL STE 600</addressGeneral></streetDetail>
   <townDetail><name>SUNNYVALE</name><stateOrProvince>CA</stateOrProvince></townDetail>
   <postalCode>94087</postalCode></streetAddress></contactInfo><accountId>111111111-1</accountId>
  </CustomerAccount></content></entry>
 <entry><link rel="self" href="http://x/RetailCustomer/9/Customer/c1/CustomerAccount/a1/CustomerAgreement/55"/>
  <content><CustomerAgreement xmlns="http://naesb.org/espi/customer"><agreementId>11100-00000</agreementId>
  </CustomerAgreement></content></entry>
 <entry><link rel="self" href="http://x/RetailCustomer/9/Customer/c1/CustomerAccount/a1/CustomerAgreement/56"/>
  <content><CustomerAgreement xmlns="http://naesb.org/espi/customer"><agreementId>22200-00000</agreementId>
  </CustomerAgreement></content></entry>
 <entry><link rel="self" href="http://x/RetailCustomer/9/Customer/c1/CustomerAccount/a1/CustomerAgreement/55/ServiceLocation/l1"/>
  <content><ServiceLocation xmlns="http://naesb.org/espi/customer"><mainAddress>
   <streetDetail><addressGeneral>1420 OAK GROVE AVE</addressGeneral></streetDetail>
   <townDetail><name>SAN MATEO</name><stateOrProvince>CA</stateOrProvince></townDetail><postalCode>94402</postalCode>
   </mainAddress><UsagePoints><UsagePoint>http://x/Subscription/9/UsagePoint/55</UsagePoint></UsagePoints>
  </ServiceLocation></content></entry>
 <entry><link rel="self" href="http://x/RetailCustomer/9/Customer/c1/CustomerAccount/a1/CustomerAgreement/56/ServiceLocation/l2"/>
  <content><ServiceLocation xmlns="http://naesb.org/espi/customer"><mainAddress>
   <streetDetail><addressGeneral>1 OTHER ST</addressGeneral></streetDetail></mainAddress>
   <UsagePoints><UsagePoint>http://x/Subscription/9/UsagePoint/56</UsagePoint></UsagePoints>
  </ServiceLocation></content></entry>
 <entry><link rel="self" href="http://x/RetailCustomer/9/Customer/c1/CustomerAccount/a1/CustomerAgreement/55/ServiceLocation/l1/Meter/m1"/>
  <content><Meter xmlns="http://naesb.org/espi/customer"><serialNumber>1009876543</serialNumber></Meter></content></entry>
 <entry><link rel="self" href="http://x/RetailCustomer/9/Customer/c1/CustomerAccount/a1/CustomerAgreement/56/ServiceLocation/l2/Meter/m2"/>
  <content><Meter xmlns="http://naesb.org/espi/customer"><serialNumber>2000000002</serialNumber></Meter></content></entry>
</feed>"""


def test_customer_of_one_usage_point():
    info = usage.read_customer(CUSTOMER_FEED, "55")
    assert info.name == "RILEY RESIDENTIAL" and info.kind == "residential" and info.account == "111111111-1"
    assert info.billing_address == "333 W EL CAMINO REAL STE 600, SUNNYVALE CA 94087"
    assert info.service_address == "1420 OAK GROVE AVE, SAN MATEO CA 94402"
    assert info.meter_serials == ["1009876543"] and info.agreement == "11100-00000" and info.matched
    other = usage.read_customer(CUSTOMER_FEED, "56")
    assert other.meter_serials == ["2000000002"] and other.service_address == "1 OTHER ST"
    assert not usage.read_customer(CUSTOMER_FEED, "99").matched


def test_customer_feed_is_parsed_safely():
    evil = b'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY x "boom">]><feed xmlns="http://www.w3.org/2005/Atom"/>'
    info, error = usage.customer_or_error(evil, "1")
    assert info is None and "DOCTYPE" in error


def test_preview_stays_within_its_budget_once_escaped():
    from markupsafe import escape

    doc = b"<feed>" + b"".join(b'<entry a="1">%d</entry>\n' % i for i in range(40_000)) + b"</feed>"
    text, truncated = usage.preview(doc, budget=100_000)
    assert truncated and text.endswith((">", "\n")) and len(str(escape(text))) <= 100_000
    small, cut = usage.preview(b"<a>hi</a>")
    assert small == "<a>hi</a>" and not cut


def test_load_meter_page_with_a_fake_custodian(monkeypatch):
    """The page model end to end without HTTP: fetch -> read -> totals, chart and bills; 202 and errors."""
    from demo.site import client as gbc

    start = la_midnight(date(2025, 3, 1))
    fwd = series(WH, start, [200_000] * (31 * 96 - 4), up="55")
    calls = []

    def fake_fetch(url, token, *, step, timeout, http=None):
        calls.append((step, url))
        if step == "customer":
            return CUSTOMER_FEED
        return b"<feed/>"

    def fake_read(data, usage_point):
        up = SimpleNamespace(id="55", local_time=PACIFIC)
        bill = _bill(start, 31, 5_000_000, (31 * 96 - 4) * 200_000)
        bill = UsageSummary(**{**bill.__dict__, "usage_point_id": "55",
                               "duration": la_midnight(date(2025, 4, 1)) - start})
        return SimpleNamespace(usage_points=[up], series=[fwd], summaries=[bill], customer=None)

    monkeypatch.setattr(usage, "fetch", fake_fetch)
    token = {"access_token": "t", "resourceURI": "http://x/Subscription/9", "scope": "FB=4_16_51",
             "customerResourceURI": "http://x/RetailCustomer/9"}
    meter = {"usage_point_id": "55", "local_time": {"tz_offset": -28800, "dst_offset": 3600,
                                                    "dst_start_rule": "360E2000", "dst_end_rule": "B40E2000"}}
    page = usage.load_meter_page(token, meter, Window(date(2025, 3, 1), date(2025, 3, 31)), timeout=5,
                                 read=fake_read)
    assert page.error is None and page.waiting is None
    assert [d.intervals for d in page.days if d.note] == [92]
    assert page.months[0].totals["forward"] == pytest.approx((31 * 96 - 4) * 0.2)
    assert page.bills[0].intervals_match is True
    assert page.chart["full_resolution"]
    assert page.customer.name == "RILEY RESIDENTIAL"
    assert [s for s, _ in calls] == ["meter data", "customer"]

    # without FB 51 the customer feed is not asked for
    calls.clear()
    page = usage.load_meter_page({**token, "scope": "FB=4_16"}, meter, Window(None, None), timeout=5, read=fake_read)
    assert page.customer is None and "FB 51" in page.customer_note and [s for s, _ in calls] == ["meter data"]

    def not_ready(*args, **kwargs):
        raise gbc.NotReady(7)

    monkeypatch.setattr(usage, "fetch", not_ready)
    assert usage.load_meter_page(token, meter, Window(None, None), timeout=5, read=fake_read).waiting == 7

    def refused(*args, **kwargs):
        raise gbc.CustodianError("http", "answered HTTP 401.", step="meter data", status=401, description="expired")

    monkeypatch.setattr(usage, "fetch", refused)
    page = usage.load_meter_page(token, meter, Window(None, None), timeout=5, read=fake_read)
    assert page.error["status"] == 401 and page.error["error_description"] == "expired"


def test_local_day_of_each_reading_matches_the_tz_database():
    c = clock()
    start = la_midnight(date(2025, 10, 30))
    for i in range(6 * 96):
        ts = start + i * 900
        assert c.local_date(ts) == datetime.fromtimestamp(ts, LA).date()
    assert c.local(start).isoformat() == "2025-10-30T00:00:00-07:00"
    assert c.local(start + 5 * 86400).utcoffset() == timedelta(hours=-8)


def test_a_malformed_dst_rule_falls_back_to_standard_time():
    from demo.site.usage import LocalClock

    clock = LocalClock.from_parameters({"tz_offset": -28800, "dst_offset": 3600,
                                        "dst_start_rule": "00000000", "dst_end_rule": "not-hex"})
    assert not clock.has_dst and clock.tz_offset == -28800

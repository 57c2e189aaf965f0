"""demo.sandbox.meterdata: the sandbox's synthetic interval data and bills are
deterministic, follow the Pacific clock (DST days of 92 and 100 intervals),
look like homes, businesses and a solar roof, and bills add up."""
from __future__ import annotations

import ast
import dataclasses
import hashlib
import os
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from statistics import mean

import pytest

from demo.lookup import CustomerDirectory
from demo.sandbox import meterdata as md

ROOT = Path(__file__).resolve().parents[1]
DIRECTORY = CustomerDirectory.from_file(ROOT / "config" / "pce-customers.toml")
RESIDENTIAL = DIRECTORY.scenario("residential")
COMMERCIAL = DIRECTORY.scenario("commercial")
HOME = md.profile(RESIDENTIAL, RESIDENTIAL.meters[0])
SHOP = md.profile(COMMERCIAL, COMMERCIAL.meters[0])
SOLAR = md.profile(COMMERCIAL, next(m for m in COMMERCIAL.meters if m.solar))


def day(d: date) -> tuple[int, int]:
    return md.midnight(d), md.midnight(d + timedelta(days=1))


def values(p: md.MeterProfile, d: date, flow: int = md.FORWARD) -> list[int]:
    return md.day_values(p, flow, *day(d))


def by_hour(p: md.MeterProfile, d: date, flow: int = md.FORWARD) -> dict[int, list[int]]:
    """Values of a normal (96-interval) day keyed by local hour."""
    vals = values(p, d, flow)
    assert len(vals) == 96
    out: dict[int, list[int]] = {}
    for i, v in enumerate(vals):
        out.setdefault(i // 4, []).append(v)
    return out


def hours_mean(p, days, hours, flow=md.FORWARD) -> float:
    return mean(v for d in days for h in hours for v in by_hour(p, d, flow)[h])


def dates(start: date, n: int, step: int = 1) -> list[date]:
    return [start + timedelta(days=i * step) for i in range(n)]


# ---------------------------------------------------------------- profiles


def test_profiles_of_the_test_customers():
    assert HOME == md.MeterProfile("1901001", "residential", False, HOME.tariff, (1,))
    assert SHOP.kind == "commercial" and SHOP.flows == (1,)
    assert SOLAR.solar and SOLAR.flows == (md.FORWARD, md.REVERSE) == (1, 19)
    assert md.TZ.key == "America/Los_Angeles" and md.INTERVAL == 900


# ---------------------------------------------------------------- determinism


def _checksum() -> str:
    h = hashlib.sha256()
    start, end = day(date(2025, 3, 1))
    for p in (HOME, SHOP, SOLAR):
        for flow in p.flows:
            for t, v in md.readings(p, flow, start, end + 20 * 86400):
                h.update(b"%d:%d;" % (t, v))
        for bill in md.bills(p, md.midnight(date(2024, 1, 1)), md.midnight(date(2024, 5, 1))):
            h.update(repr(bill).encode())
    return h.hexdigest()


def test_values_are_a_pure_function_of_meter_flow_and_time():
    first = _checksum()
    md._day.cache_clear()
    md._day_sum.cache_clear()
    md.weather.cache_clear()
    assert _checksum() == first
    # another process with another hash seed computes the same numbers (no hash(), no global random state)
    code = "import sys; sys.path.insert(0, 'tests'); import test_meterdata as t; print(t._checksum())"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert out.stdout.strip() == first


def test_same_directory_meter_same_data_whatever_the_profile_object():
    copy = dataclasses.replace(SHOP)
    assert copy is not SHOP
    assert values(copy, date(2025, 5, 6)) == values(SHOP, date(2025, 5, 6))
    assert values(HOME, date(2025, 5, 6)) != values(SHOP, date(2025, 5, 6))


def test_values_are_whole_wh_and_not_negative():
    for p in (HOME, SHOP, SOLAR):
        for flow in p.flows:
            for d in dates(date(2025, 1, 1), 12, 30):
                vals = values(p, d, flow)
                assert all(v >= 0 and v % 1000 == 0 for v in vals)


def test_readings_cover_every_interval_inside_the_window():
    start, end = day(date(2025, 6, 10))
    got = list(md.readings(SHOP, 1, start, end + 86400))
    assert len(got) == 192
    assert [t for t, _ in got] == list(range(start, end + 86400, 900))
    assert [v for _, v in got[:96]] == values(SHOP, date(2025, 6, 10))
    # a window off the grid keeps only whole intervals inside it
    partial = list(md.readings(SHOP, 1, start + 100, start + 3600 + 450))
    assert [t for t, _ in partial] == [start + 900, start + 1800, start + 2700]
    assert list(md.readings(SHOP, 1, end, start)) == []


def test_unknown_flows_are_refused_and_no_solar_means_no_export():
    with pytest.raises(ValueError):
        md.day_values(SHOP, 4, *day(date(2025, 6, 10)))
    assert set(values(SHOP, date(2025, 6, 10), md.REVERSE)) == {0}


# ---------------------------------------------------------------- the Pacific clock


def test_dst_days_have_92_and_100_intervals():
    for p in (HOME, SHOP, SOLAR):
        for flow in p.flows:
            assert len(values(p, date(2025, 3, 9), flow)) == 92      # spring forward
            assert len(values(p, date(2025, 11, 2), flow)) == 100    # fall back
            assert len(values(p, date(2025, 11, 3), flow)) == 96
    spring = list(md.readings(HOME, 1, *day(date(2025, 3, 9))))
    assert len(spring) == 92 and spring[-1][0] + 900 == md.midnight(date(2025, 3, 10))


def test_day_starts_are_local_midnights_across_dst():
    starts = md.day_starts(md.midnight(date(2025, 3, 7)), md.midnight(date(2025, 3, 11)))
    assert [datetime.fromtimestamp(t, md.TZ).strftime("%Y-%m-%d %H:%M") for t in starts] == [
        "2025-03-07 00:00", "2025-03-08 00:00", "2025-03-09 00:00", "2025-03-10 00:00"]
    assert [b - a for a, b in zip(starts, starts[1:], strict=False)] == [86400, 86400, 82800]
    # a start that is not a midnight begins at the next one
    assert md.day_starts(starts[0] + 1, starts[2] + 1) == starts[1:3]
    assert md.day_starts(starts[2], starts[2]) == []


def test_data_window_runs_from_history_start_through_yesterday():
    now = int(datetime(2025, 7, 15, 9, 30, tzinfo=md.TZ).timestamp())
    history = int(datetime(2024, 7, 15, 9, 30, tzinfo=md.TZ).timestamp())
    assert md.data_window(history, now) == (md.midnight(date(2024, 7, 16)), md.midnight(date(2025, 7, 15)))
    exact = md.midnight(date(2024, 7, 15))
    assert md.data_window(exact, now)[0] == exact
    # a history that starts today (or later) has no data yet: an empty window
    start, end = md.data_window(now - 60, now)
    assert start == end == md.midnight(date(2025, 7, 15))
    # midnight after a DST change is still a local midnight
    dst_now = int(datetime(2025, 11, 2, 23, 0, tzinfo=md.TZ).timestamp())
    assert datetime.fromtimestamp(md.data_window(0, dst_now)[1], md.TZ).hour == 0


# ---------------------------------------------------------------- shapes


WEEKDAYS = [d for d in dates(date(2025, 4, 1), 60) if d.weekday() < 5 and d not in (date(2025, 5, 26),)]
SUNDAYS = [d for d in dates(date(2025, 4, 6), 8, 7)]


def test_residential_has_morning_and_evening_peaks():
    night = hours_mean(HOME, WEEKDAYS, range(1, 5))
    assert hours_mean(HOME, WEEKDAYS, range(6, 9)) > 1.5 * night
    evening = hours_mean(HOME, WEEKDAYS, range(18, 21))
    assert evening > 2.5 * night
    assert evening > hours_mean(HOME, WEEKDAYS, range(11, 15))


def test_residential_seasons_cooling_on_hot_days_heating_and_lights_in_winter():
    year = dates(date(2025, 1, 1), 365)
    hot = sorted(year, key=lambda d: -md.weather(d.toordinal()).temp)[:12]
    mild = [d for d in year if 15 <= md.weather(d.toordinal()).temp <= 17][:12]
    assert hours_mean(HOME, hot, range(14, 19)) > 1.3 * hours_mean(HOME, mild, range(14, 19))
    january = sum(sum(values(HOME, d)) for d in dates(date(2025, 1, 1), 31))
    may = sum(sum(values(HOME, d)) for d in dates(date(2025, 5, 1), 31))
    assert january > 1.1 * may


def test_commercial_business_hours_on_weekdays_quiet_nights_and_sundays():
    open_ = hours_mean(SHOP, WEEKDAYS, range(7, 14))
    assert open_ > 3 * hours_mean(SHOP, WEEKDAYS, range(0, 4))
    assert open_ > 2 * hours_mean(SHOP, SUNDAYS, range(7, 14))
    assert hours_mean(SHOP, WEEKDAYS, range(22, 24)) < 0.3 * open_
    # Christmas is as quiet as a Sunday
    assert mean(values(SHOP, date(2025, 12, 25))) < 0.5 * mean(values(SHOP, date(2025, 12, 23)))


def test_solar_exports_by_day_only_more_in_summer_with_cloudy_days():
    year = dates(date(2025, 1, 1), 365)
    for d in year:
        hours = by_hour(SOLAR, d, md.REVERSE) if len(values(SOLAR, d)) == 96 else None
        if hours:
            assert all(v == 0 for h in (*range(0, 5), *range(21, 24)) for v in hours[h]), d
    june = [sum(values(SOLAR, d, md.REVERSE)) for d in dates(date(2025, 6, 1), 30)]
    december = [sum(values(SOLAR, d, md.REVERSE)) for d in dates(date(2025, 12, 1), 31)]
    assert sum(june) > 2 * sum(december)
    assert min(june) < 0.6 * max(june) or min(december) < 0.6 * max(december)   # cloudy days
    assert sum(1 for e in june if e > 0) >= 25


def test_solar_lowers_daytime_delivery_against_the_same_load_without_panels():
    plain = dataclasses.replace(SOLAR, solar=False, flows=(1,))
    for d in dates(date(2025, 6, 2), 10):
        with_panels, without = values(SOLAR, d), values(plain, d)
        assert all(a <= b for a, b in zip(with_panels, without, strict=True))
        assert sum(with_panels[44:56]) < 0.5 * sum(without[44:56])          # 11:00-14:00
        assert with_panels[:16] == without[:16]                             # nights are unchanged
        exported = values(SOLAR, d, md.REVERSE)
        assert all(not (f and r) for f, r in zip(with_panels, exported, strict=True))   # never both at once


# ---------------------------------------------------------------- bills


TWO_YEARS = (md.midnight(date(2023, 7, 1)), md.midnight(date(2025, 7, 1)))


@pytest.mark.parametrize("p", [HOME, SHOP, SOLAR], ids=["residential", "commercial", "solar"])
def test_bills_are_monthly_contiguous_and_add_up(p):
    bills = md.bills(p, *TWO_YEARS)
    assert 22 <= len(bills) <= 24
    cycle = md.billing_day(p)
    for bill in bills:
        assert md.local_date(bill.start).day == cycle and md.local_date(bill.end).day == cycle
        assert 28 <= bill.days <= 31 and bill.statement == bill.end
        assert TWO_YEARS[0] <= bill.start < bill.end <= TWO_YEARS[1]
        assert bill.consumption == sum(v for _, v in md.readings(p, 1, bill.start, bill.end))
        assert bill.export == sum(v for _, v in md.readings(p, 19, bill.start, bill.end))
        assert bill.cost == sum(item.cost for item in bill.line_items)
        assert bill.kwh == bill.consumption / 1e6 and bill.cost_usd == bill.cost / 1e5
        energy = [i for i in bill.line_items if i.kind == "use"]
        if p.kind == "residential":   # delivery and generation each bill every kWh once
            assert sum(i.volume_kwh for i in energy) == pytest.approx(2 * bill.kwh, abs=1e-3)
        else:
            assert sum(i.volume_kwh for i in energy) == pytest.approx(bill.kwh, abs=1e-3)
        for item in bill.line_items:
            if item.volume_kwh is not None:
                assert item.cost == round(item.volume_kwh * item.rate * 100) * 1000   # whole cents
    assert [b.end for b in bills[:-1]] == [b.start for b in bills[1:]]
    assert all(b.uid.isdigit() and len(b.uid) == 8 for b in bills)
    assert len({b.uid for b in bills}) == len(bills)
    assert md.bills(p, *TWO_YEARS) == bills


def test_commercial_line_items_like_the_utilityapi_capture():
    bill = md.bills(SHOP, *TWO_YEARS)[-1]
    names = [i.name for i in bill.line_items]
    assert names[0] == "Customer Charge" and names[-1] == "Energy Commission Tax"
    assert "Demand Charge - Max Demand" in names and "Energy Charges - Peak" in names
    assert "Energy Charges - Off Peak" in names
    demand = next(i for i in bill.line_items if i.name == "Demand Charge - Max Demand")
    assert demand.demand_kw == pytest.approx(max(v for _, v in md.readings(SHOP, 1, bill.start, bill.end)) * 4 / 1e6)
    credit = next(i for i in md.bills(SOLAR, *TWO_YEARS)[-1].line_items if i.kind == "credit")
    assert credit.cost < 0 and credit.volume_kwh > 0
    home = [i.name for i in md.bills(HOME, *TWO_YEARS)[-1].line_items]
    assert any(n.startswith("PG&E Delivery") for n in home) and any(n.startswith("PCE Generation") for n in home)


def test_only_complete_periods_inside_the_window():
    bills = md.bills(HOME, *TWO_YEARS)
    inner = md.bills(HOME, bills[3].start + 1, bills[6].end)
    assert [b.uid for b in inner] == [b.uid for b in bills[4:7]]
    assert md.bills(HOME, bills[3].start, bills[3].end - 1) == []
    assert md.bills(HOME, TWO_YEARS[1], TWO_YEARS[0]) == []


@pytest.mark.parametrize("path", [
    "demo/sandbox/meterdata.py", "demo/sandbox/resources.py", "demo/espi/build.py", "demo/espi/stream.py",
    "demo/espi/model.py", "demo/espi/parse.py", "demo/sandbox/jsonapi.py", "demo/sandbox/lifecycle.py",
    "demo/sandbox/credentials.py", "demo/sandbox/registrations.py", "demo/sandbox/webhooks.py",
    "demo/sandbox/testsubmit.py", "demo/sandbox/portal.py", "demo/sandbox/custodian.py",
])
def test_framework_free_modules_do_not_import_flask(path):
    """(``demo.sandbox``'s package init builds the Flask app, so this reads the imports.)"""
    tree = ast.parse((ROOT / path).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] in ("flask", "werkzeug")}

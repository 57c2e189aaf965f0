"""The meter page over real HTTP, against the live sandbox: one usage point of a run with its
interval data in local time, totals, bills, export and the customer; the size of a 2-year page;
bad dates; another visitor; a custodian that is still collecting or refuses the token."""
from __future__ import annotations

import json
from datetime import date, timedelta
from urllib.parse import urljoin

import pytest

from demo.site import usage
from demo.site.models import Run

from conftest import Visitor
from flow import full_flow, token_of

PACIFIC = usage.LocalClock.from_parameters({"tz_offset": -28800, "dst_offset": 3600, "dst_start_rule": "360E2000",
                                            "dst_end_rule": "B40E2000"})


def _run(visitor, live, scenario: str):
    page = full_flow(visitor, live, scenario, "phone")
    assert page.status == 200 and "/runs/" in page.url, page.text[:500]
    return page


@pytest.fixture(scope="module")
def residential(live):
    """One residential run shared by the read-only tests (a flow costs a few tenths of a second)."""
    v = Visitor()
    yield v, _run(v, live, "residential")
    v.http.close()


@pytest.fixture(scope="module")
def commercial(live):
    v = Visitor()
    yield v, _run(v, live, "commercial")
    v.http.close()


def _meter_links(run_page) -> dict[str, str]:
    """usage point id -> meter page URL, from the run page's meters table."""
    links = run_page.doc.cssselect("#meters tbody td a")
    assert links, "the meters table links to the meter pages"
    return {a.text_content().strip(): urljoin(run_page.url, a.get("href")) for a in links}


def _meters(visitor, run_page) -> list[dict]:
    return json.loads(visitor.get(run_page.url + ".json").text)["meters"]


def _rows(page, table_id: str) -> list[list[str]]:
    return [[" ".join(c.text_content().split()) for c in tr.xpath("./th|./td")]
            for tr in page.doc.cssselect(f"#{table_id} tbody tr")]


def _chart(page) -> dict:
    island = page.doc.get_element_by_id("meter-chart-data")
    return json.loads(island.text)


def _dst_window() -> tuple[date, date, date]:
    """70 days that hold the latest fall-back day (a 25-hour local day) already in the data."""
    today = usage.now_local_date(PACIFIC)
    end_rule = usage.DstRule.decode("B40E2000")
    fall = max(d for d in (end_rule.date_in(today.year), end_rule.date_in(today.year - 1)) if d < today)
    last = min(fall + timedelta(days=30), today - timedelta(days=1))
    return last - timedelta(days=69), last, fall


def test_residential_meter_page_shows_local_days_totals_bills_and_customer(residential):
    visitor, run = residential
    (up, url), = _meter_links(run).items()
    first, last, fall = _dst_window()
    page = visitor.get(url, params={"from": first.isoformat(), "to": last.isoformat()})
    assert page.status == 200, page.text[:500]
    assert page.response.headers["Cache-Control"] == "no-store"
    assert f"Meter {up}" in page.text_of("main")
    assert "readings for" in page.text_of("status")
    assert "Delivered" in page.text_of("totals") and "kWh" in page.text_of("totals")

    # local days: the fall-back day has 100 quarter hours, the others 96
    days = {row[0]: row for row in _rows(page, "daily-totals")}
    assert len(days) == (last - first).days + 1
    assert days[fall.isoformat()][1] == "100" and "DST ends" in days[fall.isoformat()][-1]
    assert {row[1] for d, row in days.items() if d != fall.isoformat()} == {"96"}
    assert _rows(page, "monthly-totals")

    # bills in dollars, checked against the interval data they cover
    bills = page.doc.cssselect("table.bills tbody tr")
    assert bills and all("$" in " ".join(b.text_content().split()) for b in bills)
    assert any("✓" in b.text_content() for b in bills), "a bill covered by the data agrees with the intervals"
    assert not page.doc.cssselect("table.bills .bad")

    # FB 51: the customer, account, service address and meter serial of this usage point
    customer = page.text_of("customer")
    for expected in ("RILEY RESIDENTIAL", "111111111-1", "1420 OAK GROVE AVE", "1009876543"):
        assert expected in customer

    # the chart's data island: downsampled, in kW, with both UTC offsets of the window
    chart = _chart(page)
    assert chart["unit"] == "kW" and chart["series"][0]["key"] == "forward" and chart["n"] <= usage.MAX_POINTS
    assert {o for _, o in chart["tz"]} == {-25200, -28800}
    assert "LocalTimeParameters" in page.text and "360E2000" in page.text

    # the raw XML: what was fetched (token never in the URL), a preview and a download
    assert "published-min=" in page.text_of("raw-xml") and "access_token" not in page.text_of("raw-xml")
    assert page.doc.cssselect("#xml-preview pre code")[0].text_content().startswith("<?xml")
    download = visitor.get(urljoin(page.url, page.doc.get_element_by_id("download-xml").get("href")))
    assert download.status == 200
    assert download.response.headers["Content-Type"].startswith("application/atom+xml")
    assert "attachment" in download.response.headers["Content-Disposition"]
    assert download.response.content.startswith(b"<?xml") and b"<IntervalReading>" in download.response.content


def test_commercial_solar_meter_shows_export_and_net(commercial):
    visitor, run = commercial
    meters = _meters(visitor, run)
    assert len(meters) == 4
    solar = next(m for m in meters if "solar" in (m["tariff"] or ""))
    page = visitor.get(_meter_links(run)[solar["usage_point_id"]])       # default: the last 90 days
    assert page.status == 200, page.text[:500]
    totals = page.text_of("totals")
    assert "Delivered" in totals and "Exported" in totals and "Net" in totals
    types = page.text_of("reading-types")
    assert "19 · received (reverse)" in types and "1 · delivered (forward)" in types
    chart = _chart(page)
    assert [s["key"] for s in chart["series"]] == ["forward", "reverse", "net"]
    assert max(v for v in chart["series"][1]["max"] if v is not None) > 0, "solar export shows in the chart"
    header = [" ".join(th.text_content().split()) for th in page.doc.cssselect("#monthly-totals thead th")]
    assert "Exported kWh" in header and "Net kWh" in header
    assert page.doc.cssselect("table.bills tbody tr")
    assert "COASTSIDE BAKERY" in page.text_of("customer") and "1020000004" in page.text_of("customer")

    # other meters of the run have only the delivered flow
    other = next(m for m in meters if m is not solar)
    plain = visitor.get(_meter_links(run)[other["usage_point_id"]], params={"range": "7d"})
    assert plain.status == 200 and [s["key"] for s in _chart(plain)["series"]] == ["forward"]
    assert _chart(plain)["full_resolution"]


def test_two_years_of_the_solar_meter_stay_under_500_kb(commercial):
    visitor, run = commercial
    solar = next(m for m in _meters(visitor, run) if "solar" in (m["tariff"] or ""))
    page = visitor.get(_meter_links(run)[solar["usage_point_id"]], params={"range": "all"})
    assert page.status == 200, page.text[:500]
    size = len(page.response.content)
    assert size < 500_000, f"the 2-year page is {size:,} bytes"
    chart = _chart(page)
    assert chart["n"] <= usage.MAX_POINTS and not chart["full_resolution"]
    readings = sum(int(row[-1].replace(",", "")) for row in _rows_of_types(page))
    assert readings > 2 * 69_000                      # two flows, two years of quarter hours
    assert len(_rows(page, "daily-totals")) >= 729
    assert len(page.doc.cssselect("table.bills tbody tr")) >= 22


def _rows_of_types(page) -> list[list[str]]:
    return [[" ".join(c.text_content().split()) for c in tr.xpath("./th|./td")]
            for tr in page.doc.cssselect("#reading-types tbody tr")]


BAD_DATES = [
    ({"from": "2025-02-30"}, "not a real date"),
    ({"from": "2025-05-01", "to": "2025-04-01"}, "is after"),
    ({"to": "tomorrow"}, "YYYY-MM-DD"),
    ({"range": "forever"}, "Unknown range"),
]


def test_bad_dates_are_refused_with_a_clear_message(residential):
    visitor, run = residential
    (url,) = _meter_links(run).values()
    for query, message in BAD_DATES:
        page = visitor.get(url, params=query)
        assert page.status == 400, query
        assert message in page.text_of("range-error") and message in page.text_of("status")
        assert page.doc.cssselect("#range-from")[0].get("aria-invalid") == "true"
        assert page.doc.cssselect("#meter-chart") == []
        assert visitor.get(url + "/data.xml", params=query).status == 400


def test_another_visitor_and_unknown_meters_get_404(live, residential):
    visitor, run = residential
    (url,) = _meter_links(run).values()
    stranger = Visitor()
    try:
        assert stranger.get(url).status == 404
        assert stranger.get(url + "/data.xml").status == 404
    finally:
        stranger.http.close()
    assert visitor.get(run.url + "/meters/0000000").status == 404
    assert visitor.get(live.site_url + "/runs/nosuchrun/meters/1").status == 404


def test_a_refused_token_shows_what_the_custodian_said(live, visitor):
    run = _run(visitor, live, "residential")
    (url,) = _meter_links(run).values()
    ctx = live.site_app.extensions["gbc_site"]
    with ctx.db.session() as s:
        row = s.get(Run, run.url.rsplit("/", 1)[1])
        token = json.loads(ctx.vault.decrypt(row.token_enc))
        row.token_enc = ctx.vault.encrypt(json.dumps({**token, "access_token": "not-a-valid-token"}))
    page = visitor.get(url)
    assert page.status == 200
    status = page.text_of("status")
    assert "HTTP 401" in status and "Custodian said" in status
    assert page.doc.cssselect("#meter-chart") == []


def test_data_being_collected_polls(live, visitor):
    """Right after an authorization the custodian answers 202 + Retry-After: the page says so and
    reloads itself (here the sandbox's collection time is pushed a minute into the future)."""
    from demo.sandbox.models import AuthorizationRow
    from demo.storage import utcnow

    run = _run(visitor, live, "residential")
    (url,) = _meter_links(run).values()
    uid = token_of(live, run)["resourceURI"].rstrip("/").rsplit("/", 1)[1]
    with live.sandbox_app.extensions["gbc_sandbox"].db.session() as s:
        s.get(AuthorizationRow, uid).ready_at = utcnow() + timedelta(seconds=60)
    page = visitor.get(url)
    assert page.status == 200
    assert "being collected" in page.text_of("status") and "202 Accepted" in page.text_of("status")
    refresh = page.doc.cssselect('meta[http-equiv="refresh"]')
    assert refresh and 1 <= int(refresh[0].get("content")) <= 60
    download = visitor.get(url + "/data.xml")
    assert download.status == 503 and download.response.headers["Retry-After"].isdigit()

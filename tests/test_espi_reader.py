"""demo.espi.reader: the streaming ESPI reader, against every real-world fixture (valid and
deliberately broken), everything the embedded sandbox serves, XML attacks and odd shapes.

Expected counts are hard-coded (what the fixture README and a read of each file say) and
cross-checked against a plain lxml XPath count over the same file, so a reader bug cannot
agree with itself. Memory flatness is measured by ``benchmarks/espi_parse.py``, not here.
"""
from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime
from pathlib import Path

import pytest
from lxml import etree

from demo.espi import build, stream
from demo.espi import reader as reader_module
from demo.espi.parse import parse_usage_points, safe_parser
from demo.espi.reader import EspiError, ReadingType, iter_interval_readings, read_usage
from demo.lookup import CustomerDirectory
from demo.sandbox import meterdata, resources

from conftest import FIXTURES

ESPI = FIXTURES / "espi"
NS = {"a": "http://www.w3.org/2005/Atom", "e": "http://naesb.org/espi", "c": "http://naesb.org/espi/customer"}
ROOT = Path(__file__).resolve().parents[1]


def fixture_path(rel: str) -> Path:
    path = ESPI / rel
    if not path.is_file():
        pytest.skip(f"fixture {rel} not found under {ESPI} (set GBC_FIXTURES)")
    return path


def xpath_count(path: Path, expr: str) -> int:
    """An independent count: the whole file as one tree, a plain XPath."""
    root = etree.parse(str(path), safe_parser()).getroot()
    return int(root.xpath(f"count({expr})", namespaces=NS))


# ---------------------------------------------------------------- real-world fixtures

#: file -> (UsagePoints, readings per series, UsageSummaries)
VALID = {
    "eddie/Batch.xml": (1, [67], 0),
    "eddie/BatchWithoutIntervalBlock.xml": (1, [0], 0),      # no data yet: the MeterReading, empty
    "eddie/BatchWithoutSelfLink.xml": (1, [67], 0),          # linked by its up link, with a warning
    "eddie/UsagePoint.xml": (1, [], 0),
    "eddie/UsagePointWithJsonContentType.xml": (1, [], 0),   # XML in a "json" content: read, with a warning
    "eddie/UsagePointWithoutType.xml": (1, [], 0),
    "eddie/accounting_point_data.xml": (0, [], 0),
    "cityssm-parser/entryOnly.xml": (0, [], 0),
    "cityssm-parser/intervals_APUC000000_electric.xml": (1, [300], 0),
    "cityssm-parser/namespace.xml": (1, [], 0),
    "openespi/ApplicationInformation-Entry-Anonymized.xml": (0, [], 0),
    "openespi/Authorization-Entry-Anonymized.xml": (0, [], 0),
    "openespi/Customer-Subscription-Feed-Anonymized.xml": (0, [], 0),
    "openespi/Multiple-Authorization-Feed-Anonymized.xml": (0, [], 0),
    "openespi/Usage-Subscription-Feed-Anonymized.xml": (1, [0], 0),
    "verdigris/PGEAuthorization.xml": (0, [], 0),
    "verdigris/PGEUsagePoint.xml": (1, [], 0),
    "verdigris/PGELocalTimeParameters.xml": (0, [], 0),
    "verdigris/ESPIUsagePoints.xml": (43, [], 0),
    "verdigris/BulkSCEUsageSummaryAndIntervalBlock.xml": (1, [3], 7),   # 2 identical MeterReading entries
    "open-energy-view/2019-10-16.xml": (1, [48], 0),
    "open-energy-view/2019-11-02.xml": (1, [49], 0),
    "open-energy-view/PGE-notify-bulk-response.xml": (1, [1], 0),
    "greenbutton-objects/Coastal_Multi_Family_Jan_1_2011_to_Jan_1_2012_RetailCustomer_5.xml": (1, [8760], 1),
    "greenbutton-objects/ngma_natural_gas_billing_billing_data_Service_1_1_2021-05-26_to_2024-04-25.xml":
        (1, [35], 0),
    "canada-energy-dashboard/utilityapi-live-commercial-sanitized.xml": (2, [184, 106], 6),
}

#: file -> what the EspiError must say (substrings)
BROKEN = {
    "eddie/BatchWithInvalidIntervalBlock.xml":
        ["Entry 5 (IntervalBlock) has text ('INVALID') in its <content>", "ESPI resource element"],
    "eddie/BatchWithInvalidSelfLink.xml":
        ["Entry 5 (IntervalBlock): its self link", "/UsagePoint/1669851/INVALID/", "is not inside its up link",
         "which MeterReading"],
    "eddie/BatchWithWrongContentForIntervalBlock.xml":
        ["Entry 5 is labelled IntervalBlock (self link type espi-entry/IntervalBlock)", "holds <ReadingType>"],
    "eddie/BatchWithoutContentForIntervalBlock.xml": ["Entry 5 (IntervalBlock) has no <content>"],
    "eddie/UsagePointWithInvalidPayload.xml": ["Not XML: line 1", "Start tag expected"],
    "open-energy-view/PGE-notify-2020-05-10.xml": ["Not XML: line 1, column 38"],
    "verdigris/PGEUsageSummary.xml": ["Not XML: line 1", "Namespace prefix ns1 on entry is not defined"],
}


def test_every_fixture_file_is_classified():
    if not ESPI.is_dir():
        pytest.skip(f"no fixtures under {ESPI} (set GBC_FIXTURES)")
    found = {p.relative_to(ESPI).as_posix() for p in ESPI.rglob("*.xml")}
    assert found == set(VALID) | set(BROKEN), "a fixture was added or removed: classify it here"


@pytest.mark.parametrize("rel", sorted(VALID))
def test_valid_fixture_counts(rel):
    path = fixture_path(rel)
    points, readings, summaries = VALID[rel]
    usage = read_usage(path.read_bytes())
    assert len(usage.usage_points) == points == xpath_count(path, "//a:entry/a:content/e:UsagePoint")
    assert [len(s) for s in usage.series] == readings
    assert sum(readings) == xpath_count(path, "//e:IntervalBlock/e:IntervalReading")
    assert len(usage.summaries) == summaries == xpath_count(
        path, "//a:content/e:UsageSummary | //a:content/e:ElectricPowerUsageSummary")
    for series in usage.series:
        assert len(series.starts) == len(series.durations) == len(series.values)
    # the same from a file object, and the lowest-level API agrees reading for reading
    with path.open("rb") as fh:
        assert read_usage(fh) == usage
    flat = [(s.usage_point_id, s.meter_reading_id, t, d, v) for s in usage.series
            for t, d, v in zip(s.starts, s.durations, s.values, strict=True)]
    assert sorted(iter_interval_readings(path.read_bytes())) == sorted(flat)


@pytest.mark.parametrize("rel", sorted(BROKEN))
def test_broken_fixture_says_what_is_wrong(rel):
    data = fixture_path(rel).read_bytes()
    with pytest.raises(EspiError) as err:
        read_usage(data)
    for part in BROKEN[rel]:
        assert part in str(err.value)
    with pytest.raises(EspiError) as again:
        list(iter_interval_readings(data))
    assert str(again.value) == str(err.value)


def test_eddie_batch_in_detail():
    usage = read_usage(fixture_path("eddie/Batch.xml").read_bytes())
    (point,) = usage.usage_points
    assert point.id == "1669851" and point.tariff_profile == "RES-2-TIER" and point.local_time.tz_offset == -18000
    (series,) = usage.series
    assert series.usage_point_id == "1669851"
    assert series.meter_reading_id == "1669851-1725408000-1725321600_kwh_19"
    assert series.reading_type == ReadingType(
        id="467189_1669851_1669851-1725408000-1725321600_kwh_19", flow_direction=19, uom=72,
        power_of_ten_multiplier=-3, interval_length=900, kind=12, commodity=1, accumulation_behaviour=4,
        currency=840)
    assert set(series.durations) == {900}
    assert series.starts[0] == 1725321600 and all(b > a for a, b in itertools.pairwise(series.starts))
    assert usage.warnings == []


def test_missing_self_link_is_read_with_a_warning():
    usage = read_usage(fixture_path("eddie/BatchWithoutSelfLink.xml").read_bytes())
    reference = read_usage(fixture_path("eddie/Batch.xml").read_bytes())
    assert usage.series == reference.series
    assert usage.warnings == ["Entry 5 (IntervalBlock) has no self link; linked to its MeterReading by its "
                              "other links"]


def test_json_content_type_is_read_with_a_warning():
    usage = read_usage(fixture_path("eddie/UsagePointWithJsonContentType.xml").read_bytes())
    assert usage.usage_points[0].id == "1669851"
    assert usage.warnings == ["Entry 1 (UsagePoint) has <content type='atom+json'> but holds XML; read as XML"]


def test_lower_case_service_delivery_point_and_bills():
    usage = read_usage(fixture_path("canada-energy-dashboard/utilityapi-live-commercial-sanitized.xml").read_bytes())
    assert [p.tariff_profile for p in usage.usage_points] == [
        "E19S Medium General Demand-Metered TOU Service", "A10SX Medium General Demand-Metered Service - TOU"]
    assert [p.local_time.tz_offset for p in usage.usage_points] == [-28800, -28800]
    assert [s.usage_point_id for s in usage.summaries] == ["usage-point-2"] * 3 + ["usage-point-10"] * 3
    first = usage.summaries[0]
    assert (first.start, first.duration, first.bill_last_period, first.currency) == (1767225600, 2678400, 44605000,
                                                                                       840)
    assert first.line_items[0].note == "Customer Charge" and first.line_items[0].amount == 12667000
    assert first.line_items[0].item_kind == 10
    assert sum(len(s.line_items) for s in usage.summaries) == 46
    assert first.tariff_profile == "E19S Medium General Demand-Metered TOU Service"


def test_pge_prefixes_and_dst_day():
    usage = read_usage(fixture_path("open-energy-view/2019-11-02.xml").read_bytes())
    (series,) = usage.series
    assert series.usage_point_id == "5391320451"
    assert series.reading_type.interval_length == 3600 and series.reading_type.power_of_ten_multiplier == -3
    assert set(series.durations) == {3600}
    # the fall-back day has 25 hours: 24 + 25 readings, one hour apart throughout
    assert all(b - a == 3600 for a, b in itertools.pairwise(series.starts))


def test_gas_billing_and_mixed_paths():
    usage = read_usage(fixture_path(
        "greenbutton-objects/ngma_natural_gas_billing_billing_data_Service_1_1_2021-05-26_to_2024-04-25.xml"
    ).read_bytes())
    (point,) = usage.usage_points
    assert point.id == "NET_USAGE" and point.service_kind == 1
    (series,) = usage.series
    # the MeterReading lives under User/…, the UsagePoint under BillingAccount/…: matched by its id
    assert series.usage_point_id == "NET_USAGE"
    assert series.reading_type.uom == 169 and series.reading_type.power_of_ten_multiplier == -3
    assert min(series.durations) >= 27 * 86400 and max(series.durations) <= 35 * 86400


def test_relative_links_and_descending_readings():
    usage = read_usage(fixture_path("cityssm-parser/intervals_APUC000000_electric.xml").read_bytes())
    (series,) = usage.series
    assert series.usage_point_id == "1402026" and series.meter_reading_id == "01"
    assert series.reading_type.id == "01" and series.reading_type.uom == 72     # its related link, not order
    assert series.starts[0] > series.starts[-1]                                 # kept in document order


def test_nested_reading_type_and_older_summary_name():
    usage = read_usage(fixture_path("openespi/Usage-Subscription-Feed-Anonymized.xml").read_bytes())
    assert usage.series[0].reading_type.interval_length == 3600
    coastal = read_usage(fixture_path(
        "greenbutton-objects/Coastal_Multi_Family_Jan_1_2011_to_Jan_1_2012_RetailCustomer_5.xml").read_bytes())
    (bill,) = coastal.summaries
    assert (bill.start, bill.duration, bill.consumption, bill.consumption_uom) == (1320130800, 2592000, 768032, 72)
    assert bill.usage_point_id == "1"


def test_repeated_meter_reading_is_one_series():
    usage = read_usage(fixture_path("verdigris/BulkSCEUsageSummaryAndIntervalBlock.xml").read_bytes())
    assert len(usage.series) == 1 and usage.series[0].usage_point_id == "NB6WRU"
    assert "repeats the MeterReading" in usage.warnings[0]
    assert sum(len(s.line_items) for s in usage.summaries) == 35


def test_customer_feeds():
    eddie = read_usage(fixture_path("eddie/accounting_point_data.xml").read_bytes()).customer
    assert eddie["name"] == "HEATHER HOMEOWNER" and eddie["account_id"] == "111111111-1"
    assert eddie["address"] == "111 ANYWHERE ST, ANYTOWN NY 12345"
    assert eddie["meter_serials"] == ["1130000000", "1120000000", "1110000000"]
    assert [loc["usage_point_ids"] for loc in eddie["service_locations"]] == [["1902731"], ["1902730"], ["1902729"]]
    openespi = read_usage(fixture_path("openespi/Customer-Subscription-Feed-Anonymized.xml").read_bytes()).customer
    assert openespi["kind"] == "residential" and openespi["address"].startswith("123 Test Street")


def test_usage_point_filter_on_a_fixture():
    path = fixture_path("canada-energy-dashboard/utilityapi-live-commercial-sanitized.xml")
    usage = read_usage(path.read_bytes(), usage_point="usage-point-10")
    assert [p.id for p in usage.usage_points] == ["usage-point-10"]
    assert [len(s) for s in usage.series] == [106] and len(usage.summaries) == 3
    with pytest.raises(EspiError, match="no UsagePoint 'nope'.*usage-point-10, usage-point-2"):
        read_usage(path.read_bytes(), usage_point="nope")


# ---------------------------------------------------------------- what the sandbox serves

NOW = 1_760_000_000          # 2025-10-09: fixed, so the windows and values are the same every run
BASE = resources.resource_base("http://127.0.0.1:5001")
WHEN = datetime.fromtimestamp(NOW, UTC)


@pytest.fixture(scope="module")
def served() -> resources.Served:
    """The commercial test customer's authorization, 40 days of history (bills included), built
    directly from the sandbox's framework-free parts (no server, no database)."""
    customer = CustomerDirectory.from_file(ROOT / "config" / "pce-customers.toml").scenario("commercial")
    meters = tuple(resources.ServedMeter(f"190900{i}", m, meterdata.profile(customer, m),
                                         resources.meter_resource(f"190900{i}", m))
                   for i, m in enumerate(customer.meters, 1))
    return resources.Served(uid="424242", client_id="PCE_ccccccccc", scope="FB=1_3_4_5_13_16_51", status=1,
                            created=WHEN, account_number=customer.account_number, customer=customer, meters=meters,
                            window=meterdata.data_window(NOW - 40 * 86400, NOW), intervals=True)


def batch(served, meters=None, path="Batch/Subscription/424242") -> bytes:
    return b"".join(stream.batch_feed(BASE, path, resources.subscription_data(served, meters=meters), updated=WHEN))


def expected_series(served, meter):
    out = []
    for mr, rt, flow, window in resources.meter_readings(served, meter):
        starts, durations, values = [], [], []
        for block in resources.interval_blocks(meter.profile, flow, window, served.window):
            for i, value in enumerate(block.values):
                starts.append(block.start + i * block.interval_length)
                durations.append(block.interval_length)
                values.append(value)
        out.append((meter.uid, mr, rt, flow, starts, durations, values))
    return out


def test_sandbox_batch_subscription(served):
    data = batch(served)
    usage = read_usage(data)
    assert [p.id for p in usage.usage_points] == [m.uid for m in served.meters]
    assert [p.local_time.tz_offset for p in usage.usage_points] == [-28800] * 4
    assert usage.usage_points == parse_usage_points(data)          # the same meters as the site's reader
    expected = [e for m in served.meters for e in expected_series(served, m)]
    assert len(usage.series) == len(expected) == 5                  # the solar meter has flows 1 and 19
    for series, (point, mr, rt_id, flow, starts, durations, values) in zip(usage.series, expected, strict=True):
        assert (series.usage_point_id, series.meter_reading_id) == (point, mr)
        assert series.reading_type.id == rt_id and series.reading_type.flow_direction == flow
        assert (series.reading_type.uom, series.reading_type.power_of_ten_multiplier) == (72, -3)
        assert series.reading_type.interval_length == 900
        assert list(series.starts) == starts and list(series.durations) == durations
        assert list(series.values) == values
    bills = [s for m in served.meters for s in resources.usage_summaries(served, m)]
    assert len(usage.summaries) == len(bills) > 0
    for got, bill in zip(usage.summaries, bills, strict=True):
        assert (got.id, got.start, got.duration) == (bill.id, bill.billing_period.start, bill.billing_period.duration)
        assert got.bill_last_period == bill.bill_last_period and got.consumption == bill.consumption.value
        assert (got.consumption_uom, got.consumption_multiplier, got.currency) == (72, -3, 840)
        assert [(i.note, i.amount, i.item_kind) for i in got.line_items] == [
            (i.note, i.amount, i.item_kind) for i in bill.line_items]
        assert got.tariff_profile == bill.tariff_profile
    assert usage.warnings == []
    assert sum(len(s) for s in usage.series) == data.count(b"<IntervalReading>")


def test_sandbox_batch_usage_point_and_filter(served):
    solar = served.meters[3]
    one = read_usage(batch(served, (solar,), f"Batch/Subscription/424242/UsagePoint/{solar.uid}"))
    assert [p.id for p in one.usage_points] == [solar.uid]
    assert [s.reading_type.flow_direction for s in one.series] == [1, 19]
    filtered = read_usage(batch(served), usage_point=solar.uid)
    assert filtered == one


def test_sandbox_interval_block_feed_and_entry(served):
    meter = served.meters[0]
    mr, _rt, flow, window = resources.meter_readings(served, meter)[0]
    blocks = list(resources.interval_blocks(meter.profile, flow, window, served.window))
    feed = b"".join(stream.interval_block_feed(BASE, "424242", meter.uid, mr, blocks, updated=WHEN))
    usage = read_usage(feed)
    assert usage.usage_points == [] and len(usage.series) == 1
    (series,) = usage.series
    assert (series.usage_point_id, series.meter_reading_id, series.reading_type) == (meter.uid, mr, None)
    assert list(series.values) == [v for b in blocks for v in b.values]
    entry = stream.interval_block_entry(BASE, "424242", meter.uid, mr, blocks[3])
    assert [(p, m, v) for p, m, _, _, v in iter_interval_readings(entry)] == [(meter.uid, mr, v)
                                                                             for v in blocks[3].values]


def test_sandbox_usage_summary_usage_point_and_customer_feeds(served):
    meter = served.meters[1]
    bills = resources.usage_summaries(served, meter)
    usage = read_usage(build.usage_summary_feed(BASE, "424242", meter.uid, bills, updated=WHEN))
    assert [(s.usage_point_id, s.id) for s in usage.summaries] == [(meter.uid, b.id) for b in bills]
    points = read_usage(build.usage_point_feed(BASE, "424242", [m.resource for m in served.meters], updated=WHEN,
                                               published=WHEN)).usage_points
    assert [p.id for p in points] == [m.uid for m in served.meters]
    cust = read_usage(build.retail_customer_batch(BASE, resources.customer_resource(served), published=WHEN,
                                                  updated=WHEN)).customer
    assert cust["name"] == served.customer.name and cust["account_id"] == served.customer.account_number
    assert cust["meter_serials"] == [m.service.meter_number for m in served.meters]
    assert [loc["usage_point_ids"] for loc in cust["service_locations"]] == [[m.uid] for m in served.meters]
    assert cust["service_addresses"][0] == "500 MAIN ST, HALF MOON BAY CA 94019"


def test_chunk_boundaries_and_draining_change_nothing(served, monkeypatch):
    data = batch(served, served.meters[3:])
    whole = read_usage(data)
    monkeypatch.setattr(reader_module, "CHUNK", 997)          # boundaries everywhere, mid-tag included
    monkeypatch.setattr(reader_module, "DRAIN_AT", 7)          # and open blocks drained all the time
    assert read_usage(io.BytesIO(data)) == whole
    assert list(iter_interval_readings(data)) == [
        (s.usage_point_id, s.meter_reading_id, t, d, v) for s in whole.series
        for t, d, v in zip(s.starts, s.durations, s.values, strict=True)]


# ---------------------------------------------------------------- hand-made shapes

ATOM = "http://www.w3.org/2005/Atom"
R = "https://example.com/espi/1_1/resource/Subscription/9/UsagePoint/7"


def doc(*entries: str, prefix: str = "") -> bytes:
    return (f'<feed xmlns="{ATOM}"><id>urn:x</id><title>t</title>' + "".join(entries) + "</feed>").encode()


def entry(payload: str, self_href: str | None = None, up: str | None = None, related: tuple[str, ...] = (),
          self_type: str | None = None) -> str:
    links = ""
    if self_href:
        links += f'<link rel="self" href="{self_href}"' + (f' type="{self_type}"' if self_type else "") + "/>"
    if up:
        links += f'<link rel="up" href="{up}"/>'
    links += "".join(f'<link rel="related" href="{h}"/>' for h in related)
    return f"<entry><id>urn:e</id>{links}<content>{payload}</content></entry>"


def readings(*rows: tuple[str, str, str], block_start: int = 0) -> str:
    inner = "".join(f"<IntervalReading><timePeriod><duration>{d}</duration><start>{s}</start></timePeriod>"
                    f"<value>{v}</value></IntervalReading>" for s, d, v in rows)
    return (f'<IntervalBlock xmlns="http://naesb.org/espi"><interval><duration>900</duration>'
            f"<start>{block_start}</start></interval>{inner}</IntervalBlock>")


UP = entry('<espi:UsagePoint xmlns:espi="http://naesb.org/espi"><espi:ServiceCategory><espi:kind>0</espi:kind>'
           "</espi:ServiceCategory></espi:UsagePoint>", R)
MR = entry('<MeterReading xmlns="http://naesb.org/espi"/>', f"{R}/MeterReading/m1")


def test_blocks_without_links_go_to_the_meter_reading_before_them():
    data = doc(UP, MR, entry(readings(("100", "900", "5"))), entry(readings(("1000", "900", "6"))))
    usage = read_usage(data)
    assert [(s.usage_point_id, s.meter_reading_id, list(s.values)) for s in usage.series] == [("7", "m1", [5, 6])]
    assert "taken to belong to the MeterReading before it (and 1 more like it)" in usage.warnings[-1]


def test_reading_messages_name_the_entry_and_reading():
    block = f"{R}/MeterReading/m1/IntervalBlock"
    cases = {
        readings(("1", "900", "5"), ("2", "900", "12.5")):
            "Entry 3 (IntervalBlock): IntervalReading 2 <value> should be a whole number, got '12.5'",
        readings(("1", "900", "5"), ("2", "900", "6")).replace("<value>6</value>", ""):
            "Entry 3 (IntervalBlock): IntervalReading 2 has no <value>",
        readings(("1", "900", "5")).replace("<start>1</start>", ""):
            "Entry 3 (IntervalBlock): IntervalReading 1 has no <timePeriod><start>",
    }
    for payload, message in cases.items():
        with pytest.raises(EspiError) as err:
            read_usage(doc(UP, MR, entry(payload, f"{block}/1", block)))
        assert str(err.value) == message


def test_a_bad_reading_deep_in_a_drained_block_is_named(monkeypatch):
    monkeypatch.setattr(reader_module, "CHUNK", 4096)
    monkeypatch.setattr(reader_module, "DRAIN_AT", 50)
    rows = [(str(900 * i), "900", str(i)) for i in range(3000)]
    rows[2500] = ("2250000", "900", "x")
    with pytest.raises(EspiError, match=r"^Entry 3 \(IntervalBlock\): IntervalReading 2501 <value> should be"):
        read_usage(doc(UP, MR, entry(readings(*rows))))
    rows[2500] = ("2250000", "900", "2500")
    usage = read_usage(doc(UP, MR, entry(readings(*rows))))
    assert list(usage.series[0].values) == list(range(3000))


def test_other_resource_problems():
    with pytest.raises(EspiError, match=r"Entry 1 \(UsageSummary\) has no <billingPeriod>"):
        read_usage(doc(entry('<UsageSummary xmlns="http://naesb.org/espi"><billLastPeriod>1</billLastPeriod>'
                             "</UsageSummary>")))
    with pytest.raises(EspiError, match=r"Entry 1 \(UsagePoint\): <UsagePoint> is not in the ESPI namespace"):
        read_usage(doc(entry("<UsagePoint><ServiceCategory><kind>0</kind></ServiceCategory></UsagePoint>")))
    with pytest.raises(EspiError, match=r"Entry 1 \(ReadingType\): <uom> in ReadingType should be a whole number"):
        read_usage(doc(entry('<ReadingType xmlns="http://naesb.org/espi"><uom>Wh</uom></ReadingType>')))
    with pytest.raises(EspiError, match=r"Expected an Atom feed or entry, got <BatchList>"):
        read_usage(b'<BatchList xmlns="http://naesb.org/espi"><resources>x</resources></BatchList>')
    quiet = read_usage(doc(entry("")))
    assert quiet.warnings == ["Entry 1 (untitled) has an empty <content>; skipped"]


def test_milliseconds_are_kept_and_flagged():
    block = f"{R}/MeterReading/m1/IntervalBlock"
    usage = read_usage(doc(UP, MR, entry(readings(("1440585200000", "900000", "5")), f"{block}/1", block)))
    assert list(usage.series[0].starts) == [1440585200000] and list(usage.series[0].durations) == [900000]
    assert usage.warnings == ["Entry 3 (IntervalBlock): reading start 1440585200000 looks like milliseconds; "
                              "starts and durations are kept as given"]


def test_prefixes_and_default_namespaces_mix():
    prefixed = entry('<ns0:IntervalBlock xmlns:ns0="http://naesb.org/espi"><ns0:IntervalReading><ns0:timePeriod>'
                     "<ns0:duration>900</ns0:duration><ns0:start>10</ns0:start></ns0:timePeriod>"
                     "<ns0:value>3</ns0:value></ns0:IntervalReading></ns0:IntervalBlock>",
                     f"{R}/MeterReading/m1/IntervalBlock/1", f"{R}/MeterReading/m1/IntervalBlock")
    data = doc(UP, MR, prefixed).replace(b'<feed xmlns="http://www.w3.org/2005/Atom">',
                                         b'<a:feed xmlns:a="http://www.w3.org/2005/Atom">')
    data = data.replace(b"</feed>", b"</a:feed>").replace(b"<id>urn:x</id><title>t</title>", b"")
    data = data.replace(b"<entry>", b'<entry xmlns="http://www.w3.org/2005/Atom">')
    assert list(iter_interval_readings(data)) == [("7", "m1", 10, 900, 3)]


# ---------------------------------------------------------------- input limits and XML attacks


def test_input_limits_and_types():
    data = fixture_bytes_or_sample()
    with pytest.raises(EspiError, match=f"more than the limit of {len(data) - 1:,} bytes"):
        read_usage(data, max_bytes=len(data) - 1)
    with pytest.raises(EspiError, match="larger than the limit of 100 bytes"):
        read_usage(io.BytesIO(data), max_bytes=100)
    assert read_usage(io.BytesIO(data), max_bytes=len(data)) == read_usage(data)
    with pytest.raises(EspiError, match="The document is empty"):
        read_usage(b"  \n")
    with pytest.raises(EspiError, match="The document is empty"):
        read_usage(io.BytesIO(b""))
    with pytest.raises(TypeError):
        read_usage(data.decode())
    with pytest.raises(TypeError, match="binary mode"):
        read_usage(io.StringIO(data.decode()))


def fixture_bytes_or_sample() -> bytes:
    return doc(UP, MR, entry(readings(("100", "900", "5"))))


ATTACKS = {
    "internal entity": b'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY x "boom">]><feed xmlns="%s">&x;</feed>',
    "billion laughs": b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
                      b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
                      b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
                      b'<feed xmlns="%s">&lol3;</feed>',
    "external entity": b'<?xml version="1.0"?><!DOCTYPE feed [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                       b'<feed xmlns="%s"><title>&xxe;</title></feed>',
    "external DTD": b'<!DOCTYPE feed SYSTEM "http://127.0.0.1:9/evil.dtd"><feed xmlns="%s"/>',
    "DOCTYPE after a long prolog": b"<?xml version='1.0'?>" + b"<!--" + b"x" * 300_000 + b"-->"
                                   + b'<!DOCTYPE feed [<!ENTITY x "y">]><feed xmlns="%s">&x;</feed>',
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_doctype_attacks_are_refused(name, monkeypatch):
    data = ATTACKS[name].replace(b"%s", ATOM.encode())
    for chunk in (reader_module.CHUNK, 7):
        monkeypatch.setattr(reader_module, "CHUNK", chunk)
        with pytest.raises(EspiError, match="has a DOCTYPE; Green Button XML never needs one"):
            read_usage(data)
        with pytest.raises(EspiError, match="DOCTYPE"):
            list(iter_interval_readings(io.BytesIO(data)))


def test_undeclared_entities_and_deep_nesting_are_not_xml():
    with pytest.raises(EspiError, match="Not XML: line 1, column .*: Entity 'xxe' not defined"):
        read_usage(f'<feed xmlns="{ATOM}"><title>&xxe;</title></feed>'.encode())
    deep = f'<feed xmlns="{ATOM}">'.encode() + b"<a>" * 300 + b"</a>" * 300 + b"</feed>"
    with pytest.raises(EspiError, match="Not XML"):
        read_usage(deep)

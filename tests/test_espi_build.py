"""demo.espi.build: the sandbox's ESPI writer (round trip, espi.xsd, link structure)."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from demo.espi.build import (
    ATOM_NS,
    CERT_LINK,
    ESPI_NS,
    MeterResource,
    atom_id,
    authorization_entry,
    authorization_feed,
    batch_subscription_feed,
)
from demo.espi.model import Authorization, DateTimeInterval, LocalTimeParameters, UsagePoint
from demo.espi.parse import parse_authorization, parse_authorizations, parse_document, parse_usage_points

FIXTURES = Path(os.environ.get("GBC_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
ESPI_XSD = FIXTURES / "xsd" / "espi.xsd"

A = "{%s}" % ATOM_NS
E = "{%s}" % ESPI_NS
BASE = "https://sandbox.example/DataCustodian/espi/1_1/resource"
UPDATED = datetime(2024, 9, 4, 8, 2, 15, 281809, tzinfo=UTC)
PUBLISHED = datetime(2024, 9, 4, 7, 55, 48, tzinfo=UTC)

FULL_AUTH = Authorization(
    uid="467189",
    status=1,
    scope="FB=1_3_4_5_13_14_15_16_18_19_27_28_31_32_33_34_35_37_38_39_41_44_46_47_51;"
    "IntervalDuration=900_3600;BlockDuration=Daily;HistoryLength=63072000;SubscriptionFrequency=Daily;",
    authorized_period=DateTimeInterval(start=1690904231, duration=202551769),
    published_period=DateTimeInterval(start=1659368231, duration=234087769),
    expires_at=1893456000,
    grant_type="authorization_code",
    resource_uri=f"{BASE}/Batch/Subscription/467189",
    authorization_uri=f"{BASE}/Authorization/467189",
    customer_resource_uri=f"{BASE}/Batch/RetailCustomer/467189",
)

AUTH_ORDER = [
    "authorizedPeriod", "publishedPeriod", "status", "expires_at", "grant_type", "scope",
    "token_type", "resourceURI", "authorizationURI", "customerResourceURI",
]

COMMERCIAL = [
    MeterResource(uid="3001001", tariff="B-10 Medium General Service"),
    MeterResource(uid="3001002", tariff="B-19 Medium General Demand-Metered TOU"),
    MeterResource(uid="3001003", tariff="G-NR1", service_kind=1, title="Gas meter"),
    MeterResource(uid="3001004", tariff="A-1", local_time=LocalTimeParameters(tz_offset=-18000)),
]


@pytest.fixture(scope="module")
def espi_schema() -> etree.XMLSchema:
    if not ESPI_XSD.is_file():
        pytest.skip(f"espi.xsd not found under {FIXTURES} (set GBC_FIXTURES)")
    doc = etree.parse(str(ESPI_XSD))
    # Content children never use Atom types, so drop the unresolvable atom.xsd import.
    for imp in doc.getroot().findall("{http://www.w3.org/2001/XMLSchema}import"):
        imp.getparent().remove(imp)
    return etree.XMLSchema(doc)


def contents(xml: bytes) -> list[etree._Element]:
    root = parse_document(xml)
    return [el for content in root.iter(A + "content") for el in content if isinstance(el.tag, str)]


def entries(xml: bytes) -> list[etree._Element]:
    root = parse_document(xml)
    return [root] if root.tag == A + "entry" else root.findall(A + "entry")


def links(el: etree._Element) -> list[tuple[str, str, str]]:
    return [(link.get("rel"), link.get("href"), link.get("type")) for link in el.findall(A + "link")]


def local(el: etree._Element) -> list[str]:
    return [etree.QName(child).localname for child in el]


def assert_valid(schema: etree.XMLSchema, xml: bytes) -> None:
    children = contents(xml)
    assert children, "no <content> children"
    for el in children:
        assert schema.validate(el), f"{etree.QName(el).localname}: {schema.error_log}"


# ---------------------------------------------------------------- Authorization


def test_authorization_entry_round_trip():
    xml = authorization_entry(BASE, FULL_AUTH, updated=UPDATED, published=PUBLISHED)
    assert parse_authorization(xml) == FULL_AUTH


def test_authorization_entry_defaults_uris_and_skips_optional_fields(espi_schema):
    auth = Authorization(uid="9", status=0, scope="FB=1", expires_at=1700000000)
    xml = authorization_entry(BASE, auth, updated=UPDATED, published=PUBLISHED)
    parsed = parse_authorization(xml)
    assert parsed == dataclasses.replace(
        auth, resource_uri=f"{BASE}/Batch/Subscription/9", authorization_uri=f"{BASE}/Authorization/9"
    )
    assert parsed.status_name == "revoked"
    (payload,) = contents(xml)
    assert local(payload) == ["status", "expires_at", "scope", "token_type", "resourceURI", "authorizationURI"]
    assert_valid(espi_schema, xml)


def test_authorization_element_order_follows_xsd(espi_schema):
    xml = authorization_entry(BASE, FULL_AUTH, updated=UPDATED, published=PUBLISHED)
    (payload,) = contents(xml)
    assert payload.tag == E + "Authorization"
    assert payload.nsmap == {None: ESPI_NS}
    assert local(payload) == AUTH_ORDER
    assert local(payload[0]) == ["duration", "start"]
    assert_valid(espi_schema, xml)


def test_authorization_entry_envelope_like_entry_only_capture():
    xml = authorization_entry(BASE, FULL_AUTH, updated=UPDATED, published=PUBLISHED)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<entry xmlns="http://www.w3.org/2005/Atom">')
    (entry,) = entries(xml)
    assert local(entry) == ["id", "link", "link", "link", "published", "updated", "title", "content"]
    assert entry.findtext(A + "id") == atom_id("Authorization/467189")
    assert links(entry) == [
        ("self", f"{BASE}/Authorization/467189", "espi-entry/Authorization"),
        ("up", f"{BASE}/Authorization", "espi-feed/Authorization"),
        ("related", CERT_LINK, "text/html"),
    ]
    assert entry.findtext(A + "title") == "Authorization"
    assert entry.findtext(A + "published") == "2024-09-04T07:55:48Z"
    assert entry.findtext(A + "updated") == "2024-09-04T08:02:15Z"
    assert entry.find(A + "content").get("type") is None  # bare <content>, as captured


def test_authorization_feed_round_trip(espi_schema):
    auths = [
        FULL_AUTH,
        Authorization(uid="467190", status=2, scope="FB=1_3", expires_at=1800000000, grant_type="authorization_code"),
        Authorization(uid="467191", status=0, scope="FB=1", expires_at=1800000000,
                      authorized_period=DateTimeInterval(1700000000, 0)),
    ]
    xml = authorization_feed(BASE, auths, updated=UPDATED)
    parsed = parse_authorizations(xml)
    assert [a.uid for a in parsed] == ["467189", "467190", "467191"]
    assert parsed[0] == FULL_AUTH
    assert [a.status_name for a in parsed] == ["active", "denied", "revoked"]
    assert parsed[2].authorized_period == DateTimeInterval(1700000000, 0)
    root = parse_document(xml)
    assert root.tag == A + "feed"
    assert links(root) == [
        ("self", f"{BASE}/Authorization", "espi-feed/Authorization"),
        ("related", CERT_LINK, "text/html"),
    ]
    assert [e.findtext(A + "published") for e in root.findall(A + "entry")] == ["2024-09-04T08:02:15Z"] * 3
    assert_valid(espi_schema, xml)


def test_empty_authorization_feed():
    xml = authorization_feed(BASE, [], updated=UPDATED)
    assert parse_authorizations(xml) == []
    assert parse_document(xml).findall(A + "entry") == []


# ---------------------------------------------------------------- Batch/Subscription


def test_batch_round_trip_residential():
    meter = MeterResource(uid="1669851", tariff="E-1")
    xml = batch_subscription_feed(BASE, "467189", [meter], updated=UPDATED, published=PUBLISHED)
    up = f"{BASE}/Subscription/467189/UsagePoint/1669851"
    assert parse_usage_points(xml) == [
        UsagePoint(
            id="1669851",
            self_uri=up,
            title="UsagePoint",
            service_kind=0,
            tariff_profile="E-1",
            local_time=LocalTimeParameters(tz_offset=-28800),
            related=(
                f"{up}/MeterReading",
                f"{up}/UsageSummary",
                f"{up}/ElectricPowerQualitySummary",
                f"{BASE}/LocalTimeParameters/TIMEZONE_467189_1669851",
            ),
        )
    ]


def test_batch_feed_structure_like_batch_capture():
    meter = MeterResource(uid="1669851", tariff="E-1")
    xml = batch_subscription_feed(BASE, "467189", [meter], updated=UPDATED, published=PUBLISHED)
    root = parse_document(xml)
    assert root.tag == A + "feed" and root.nsmap == {None: ATOM_NS}
    assert local(root) == ["id", "link", "link", "title", "updated", "entry", "entry"]
    assert root.findtext(A + "id") == atom_id("Batch/Subscription/467189")
    assert links(root) == [
        ("self", f"{BASE}/Batch/Subscription/467189", "espi-feed/Subscription"),
        ("related", CERT_LINK, "text/html"),
    ]
    assert root.findtext(A + "title") == "Subscription"
    assert root.findtext(A + "updated") == "2024-09-04T08:02:15Z"

    usage_point, ltp = root.findall(A + "entry")
    up = f"{BASE}/Subscription/467189/UsagePoint/1669851"
    ltp_href = f"{BASE}/LocalTimeParameters/TIMEZONE_467189_1669851"
    assert local(usage_point) == ["id"] + ["link"] * 6 + ["published", "updated", "title", "content"]
    assert links(usage_point) == [
        ("self", up, "espi-entry/UsagePoint"),
        ("up", f"{BASE}/Subscription/467189/UsagePoint", "espi-feed/UsagePoint"),
        ("related", f"{up}/MeterReading", "espi-feed/MeterReading"),
        ("related", f"{up}/UsageSummary", "espi-feed/UsageSummary"),
        ("related", f"{up}/ElectricPowerQualitySummary", "espi-feed/ElectricPowerQualitySummary"),
        ("related", ltp_href, "espi-entry/LocalTimeParameters"),
    ]
    assert usage_point.findtext(A + "published") == "2024-09-04T07:55:48Z"
    assert usage_point.find(A + "content").get("type") == "atom+xml"
    payload = usage_point.find(A + "content")[0]
    assert payload.tag == E + "UsagePoint" and payload.nsmap == {None: ESPI_NS}
    assert local(payload) == ["ServiceCategory", "serviceDeliveryPoint"]
    assert payload.findtext(f"{E}ServiceCategory/{E}kind") == "0"
    assert payload.findtext(f"{E}serviceDeliveryPoint/{E}tariffProfile") == "E-1"

    assert links(ltp) == [
        ("self", ltp_href, "espi-entry/LocalTimeParameters"),
        ("up", f"{BASE}/LocalTimeParameters", "espi-feed/LocalTimeParameters"),
    ]
    assert ltp.findtext(A + "title") == "LocalTimeParameters"
    ltp_payload = ltp.find(A + "content")[0]
    assert local(ltp_payload) == ["dstEndRule", "dstOffset", "dstStartRule", "tzOffset"]
    assert [c.text for c in ltp_payload] == ["B40E2000", "3600", "360E2000", "-28800"]


def test_commercial_four_meters(espi_schema):
    xml = batch_subscription_feed(BASE, "500100", COMMERCIAL, updated=UPDATED, published=PUBLISHED)
    payload_tags = [etree.QName(el).localname for el in contents(xml)]
    assert payload_tags == ["UsagePoint", "LocalTimeParameters"] * 4
    points = parse_usage_points(xml)
    assert [p.id for p in points] == [m.uid for m in COMMERCIAL]
    assert [p.tariff_profile for p in points] == [m.tariff for m in COMMERCIAL]
    assert [p.service_kind_name for p in points] == ["electricity", "electricity", "gas", "electricity"]
    assert [p.title for p in points] == ["UsagePoint", "UsagePoint", "Gas meter", "UsagePoint"]
    # each UsagePoint gets its own LocalTimeParameters through its related link
    assert [p.local_time for p in points] == [m.local_time for m in COMMERCIAL]
    assert points[3].local_time.tz_offset == -18000
    assert_valid(espi_schema, xml)


def test_every_content_child_validates(espi_schema):
    outputs = [
        authorization_entry(BASE, FULL_AUTH, updated=UPDATED, published=PUBLISHED),
        authorization_feed(BASE, [FULL_AUTH, dataclasses.replace(FULL_AUTH, uid="2", grant_type=None)],
                           updated=UPDATED),
        batch_subscription_feed(BASE, "500100", COMMERCIAL, updated=UPDATED, published=PUBLISHED),
    ]
    for xml in outputs:
        assert_valid(espi_schema, xml)


def test_schema_rejects_capital_service_delivery_point(espi_schema):
    """Why the writer spells serviceDeliveryPoint like espi.xsd and the 2026 capture."""
    wrong = etree.fromstring(
        b'<UsagePoint xmlns="http://naesb.org/espi"><ServiceDeliveryPoint>'
        b"<tariffProfile>E-1</tariffProfile></ServiceDeliveryPoint></UsagePoint>"
    )
    assert not espi_schema.validate(wrong)


# ---------------------------------------------------------------- determinism and formatting


def test_output_and_ids_are_stable():
    def build():
        return batch_subscription_feed(BASE, "500100", COMMERCIAL, updated=UPDATED, published=PUBLISHED)

    first, second = build(), build()
    assert first == second
    ids = [el.text for el in parse_document(first).iter(A + "id")]
    assert len(ids) == 9 and len(set(ids)) == 9
    for value in ids:
        assert value.startswith("urn:uuid:")
        assert uuid.UUID(value[len("urn:uuid:"):]).version == 5

    assert authorization_entry(BASE, FULL_AUTH, updated=UPDATED, published=PUBLISHED) == authorization_entry(
        BASE, FULL_AUTH, updated=UPDATED, published=PUBLISHED
    )


def test_ids_depend_on_resource_path_not_host():
    one = batch_subscription_feed(BASE, "500100", COMMERCIAL[:1], updated=UPDATED, published=PUBLISHED)
    other_host = batch_subscription_feed("http://127.0.0.1:5001/r", "500100", COMMERCIAL[:1],
                                         updated=UPDATED, published=PUBLISHED)
    other_sub = batch_subscription_feed(BASE, "500101", COMMERCIAL[:1], updated=UPDATED, published=PUBLISHED)

    def ids(xml):
        return [el.text for el in parse_document(xml).iter(A + "id")]

    assert ids(one) == ids(other_host)
    assert not set(ids(one)) & set(ids(other_sub))


def test_atom_id_is_uuid5_of_joined_parts():
    assert atom_id("a", "b") == "urn:uuid:" + str(uuid.uuid5(uuid.NAMESPACE_URL, "a/b"))
    assert atom_id("a", "b") == atom_id("a/b") != atom_id("b", "a")


def test_timestamps_are_whole_second_utc():
    pacific = timezone(timedelta(hours=-7))
    xml = authorization_entry(
        BASE, FULL_AUTH,
        updated=datetime(2024, 9, 4, 1, 2, 15, 999999, tzinfo=pacific),
        published=datetime(2024, 9, 4, 7, 55, 48),  # naive: taken as UTC
    )
    (entry,) = entries(xml)
    assert entry.findtext(A + "updated") == "2024-09-04T08:02:15Z"
    assert entry.findtext(A + "published") == "2024-09-04T07:55:48Z"


def test_utf8_and_non_ascii_round_trip():
    meter = MeterResource(uid="42", tariff="Tarifa eléctrica – EV2-A")
    xml = batch_subscription_feed(BASE, "7", [meter], updated=UPDATED, published=PUBLISHED)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    assert "eléctrica –".encode() in xml
    assert parse_usage_points(xml)[0].tariff_profile == "Tarifa eléctrica – EV2-A"


def test_trailing_slash_in_resource_base_is_ignored():
    xml = batch_subscription_feed(BASE + "/", "7", COMMERCIAL[:1], updated=UPDATED, published=PUBLISHED)
    assert xml == batch_subscription_feed(BASE, "7", COMMERCIAL[:1], updated=UPDATED, published=PUBLISHED)
    assert b"resource//" not in xml


def test_espi_modules_do_not_import_flask():
    code = (
        "import sys, demo.espi.build, demo.espi.parse, demo.espi.model; "
        "sys.exit(1 if 'flask' in sys.modules else 0)"
    )
    root = Path(__file__).resolve().parents[1]
    assert subprocess.run([sys.executable, "-c", code], cwd=root).returncode == 0


# ---------------------------------------------------------------- the subscription tree and streaming

from demo.espi import stream  # noqa: E402
from demo.espi.build import (  # noqa: E402
    AgreementResource,
    CustomerResource,
    application_information_entry,
    customer_entry,
    customer_feed,
    entry_bytes,
    meter_reading_element,
    reading_type_element,
    retail_customer_batch,
    service_status,
    usage_point_element,
    usage_point_feed,
    usage_summary_feed,
)
from demo.espi.model import (  # noqa: E402
    Address,
    ApplicationInformation,
    CostDetail,
    IntervalBlock,
    ReadingType,
    SummaryMeasurement,
    UsageSummary,
)

CUSTOMER_XSD = FIXTURES / "xsd" / "customer.xsd"
SUB, METER = "467189", "1669851"
MR = f"{METER}-1725408000-1725321600_kwh_19"
RT = f"{SUB}_{METER}_{MR}"
SOLAR = MeterResource(uid=METER, tariff="B-6 Small General TOU", title="3 KELLY AVE")


@pytest.fixture(scope="module")
def customer_schema() -> etree.XMLSchema:
    if not CUSTOMER_XSD.is_file():
        pytest.skip(f"customer.xsd not found under {FIXTURES} (set GBC_FIXTURES)")
    doc = etree.parse(str(CUSTOMER_XSD))
    for imp in doc.getroot().findall("{http://www.w3.org/2001/XMLSchema}import"):
        imp.getparent().remove(imp)
    return etree.XMLSchema(doc)


def block(number: int, start: int, n: int = 96, published: int | None = None) -> IntervalBlock:
    return IntervalBlock(id=f"{number:06d}", start=start, duration=900 * n,
                         values=[(i * 37_000) % 900_000 for i in range(n)], published=published or start + 900 * n)


def summary() -> UsageSummary:
    return UsageSummary(
        id="12345678", billing_period=DateTimeInterval(1767225600, 2678400), bill_last_period=44605000,
        consumption=SummaryMeasurement(uom=72, power_of_ten_multiplier=-3, value=2315074000, time_stamp=1769904000),
        status_time_stamp=1769904000, published=1769904000, tariff_profile="E19S",
        line_items=(CostDetail("Customer Charge", 12667000, 1767225600, SummaryMeasurement(27, 0, 2678400, 1767225600)),
                    CostDetail("Demand Charge - Max Demand", 8623000, 1767225600,
                               SummaryMeasurement(38, -3, 7997000, 1767225600)),
                    CostDetail("Energy Charges - Off Peak", 23259000, 1767225600,
                               SummaryMeasurement(72, -3, 1062930000, 1767225600)),
                    CostDetail("Energy Commission Tax", 56000, 1767225600)),
        pdf_href="https://sandbox.example/bill.pdf")


def usage_point_data(blocks) -> stream.UsagePointData:
    return stream.UsagePointData(
        subscription_uid=SUB, meter=SOLAR, published=PUBLISHED, updated=UPDATED,
        readings=[stream.MeterReadingData(MR.replace("_19", "_1"), RT.replace("_19", "_1"), ReadingType(1), blocks),
                  stream.MeterReadingData(MR, RT, ReadingType(19), [block(1, 1725321600, 4)])],
        summaries=[summary()])


def test_batch_stream_order_links_and_validity(espi_schema):
    chunks = list(stream.batch_feed(BASE, f"Batch/Subscription/{SUB}", [usage_point_data([block(1, 1725321600),
                                                                                          block(2, 1725408000)])],
                                    updated=UPDATED))
    assert all(isinstance(c, bytes) for c in chunks)
    xml = b"".join(chunks)
    assert xml.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">')
    assert_valid(espi_schema, xml)
    root = parse_document(xml)
    assert links(root)[0] == ("self", f"{BASE}/Batch/Subscription/{SUB}", "espi-feed/Subscription")
    kinds = [etree.QName(el).localname for el in contents(xml)]
    assert kinds == ["UsagePoint", "LocalTimeParameters", "MeterReading", "ReadingType", "IntervalBlock",
                     "IntervalBlock", "MeterReading", "ReadingType", "IntervalBlock", "UsageSummary"]
    up = f"{BASE}/Subscription/{SUB}/UsagePoint/{METER}"
    usage_point, ltp, mr, rt, ib = root.findall(A + "entry")[:5]
    assert [(r, t) for r, _, t in links(usage_point)] == [
        ("self", "espi-entry/UsagePoint"), ("up", "espi-feed/UsagePoint"), ("related", "espi-feed/MeterReading"),
        ("related", "espi-feed/UsageSummary"), ("related", "espi-entry/LocalTimeParameters")]
    mr1 = f"{up}/MeterReading/{MR.replace('_19', '_1')}"
    assert links(mr) == [("self", mr1, "espi-entry/MeterReading"),
                         ("up", f"{up}/MeterReading", "espi-feed/MeterReading"),
                         ("related", up, "espi-entry/UsagePoint"),
                         ("related", f"{mr1}/IntervalBlock", "espi-feed/IntervalBlock"),
                         ("related", f"{BASE}/ReadingType/{RT.replace('_19', '_1')}", "espi-entry/ReadingType")]
    assert links(rt) == [("self", f"{BASE}/ReadingType/{RT.replace('_19', '_1')}", "espi-entry/ReadingType"),
                         ("up", f"{BASE}/ReadingType", "espi-feed/ReadingType"),
                         ("related", mr1, "espi-entry/MeterReading")]
    assert links(ib) == [("self", f"{mr1}/IntervalBlock/000001", "espi-entry/IntervalBlock"),
                         ("up", f"{mr1}/IntervalBlock", "espi-feed/IntervalBlock"),
                         ("related", mr1, "espi-feed/MeterReading")]
    assert ib.findtext(A + "published") == ib.findtext(A + "updated") == "2024-09-04T00:00:00Z"
    assert mr.findtext(A + "published") == "2024-09-04T07:55:48Z"
    assert mr.findtext(A + "updated") == "2024-09-04T08:02:15Z"
    us = root.findall(A + "entry")[-1]
    assert ("related", "https://sandbox.example/bill.pdf", "application/pdf") in links(us)
    # every Atom id is a distinct version-5 UUID of the resource path
    ids = [el.text for el in root.iter(A + "id")]
    assert len(ids) == len(set(ids)) == 11
    assert ib.findtext(A + "id") == atom_id(f"Subscription/{SUB}/UsagePoint/{METER}/MeterReading/"
                                            f"{MR.replace('_19', '_1')}/IntervalBlock/000001")
    assert parse_usage_points(xml)[0].local_time.tz_offset == -28800


def test_streamed_interval_block_is_what_lxml_would_write():
    """The string templates write exactly lxml's pretty-printed serialization of the same entry."""
    b = block(7, 1741507200, 92)   # a spring-forward day
    text = stream.interval_block_entry(BASE, SUB, METER, MR, b)
    rebuilt = etree.fromstring(text, etree.XMLParser(remove_blank_text=True))
    assert text == b'<?xml version="1.0" encoding="UTF-8"?>\n' + etree.tostring(rebuilt, pretty_print=True)
    entry = parse_document(text)
    readings = entry.find(A + "content")[0].findall(E + "IntervalReading")
    assert [(int(r.findtext(f"{E}timePeriod/{E}start")), int(r.findtext(E + "value"))) for r in readings] == [
        (1741507200 + 900 * i, v) for i, v in enumerate(b.values)]
    # off the 15-minute grid and hourly readings are written the same way
    for odd in (IntervalBlock("000001", 1741507207, 3600 * 5, [1, 22, 333, 0, 10**12], 1741525207, 3600),
                IntervalBlock("000002", 99_900, 900 * 3, [5, 6, 7], 102_600)):
        entry = parse_document(stream.interval_block_entry(BASE, SUB, METER, MR, odd))
        got = [(int(r.findtext(f"{E}timePeriod/{E}start")), int(r.findtext(f"{E}timePeriod/{E}duration")),
                int(r.findtext(E + "value"))) for r in entry.iter(E + "IntervalReading")]
        assert got == [(odd.start + odd.interval_length * i, odd.interval_length, v) for i, v in enumerate(odd.values)]


def test_batch_stream_is_lazy_and_chunked():
    pulled = []

    def blocks():
        for i in range(400):
            pulled.append(i)
            yield block(i + 1, 1725321600 + 86400 * i)

    chunks = stream.batch_feed(BASE, f"Batch/Subscription/{SUB}", [usage_point_data(blocks())], updated=UPDATED)
    first = next(chunks)
    assert len(pulled) < 10                      # only what the first chunk needed was generated
    sizes = [len(first)] + [len(c) for c in chunks]
    assert len(pulled) == 400
    assert max(sizes) < 2 * stream.CHUNK and len(sizes) > 50


def test_interval_block_feed_stream(espi_schema):
    xml = b"".join(stream.interval_block_feed(BASE, SUB, METER, MR, (block(i, 1725321600 + 86400 * (i - 1))
                                                                     for i in (1, 2, 3)), updated=UPDATED))
    assert_valid(espi_schema, xml)
    root = parse_document(xml)
    assert links(root)[0] == ("self", f"{BASE}/{usage_point_path_for(MR)}/IntervalBlock", "espi-feed/IntervalBlock")
    assert [e.findtext(A + "title") for e in root.findall(A + "entry")] == ["IntervalBlock"] * 3
    empty = b"".join(stream.interval_block_feed(BASE, SUB, METER, MR, [], updated=UPDATED))
    assert parse_document(empty).findall(A + "entry") == []


def usage_point_path_for(mr: str) -> str:
    return f"Subscription/{SUB}/UsagePoint/{METER}/MeterReading/{mr}"


def test_single_entries_and_small_feeds_validate(espi_schema):
    documents = [
        entry_bytes(usage_point_element(None, BASE, SUB, SOLAR, published=PUBLISHED, updated=UPDATED)),
        entry_bytes(meter_reading_element(None, BASE, SUB, METER, MR, RT, published=PUBLISHED, updated=UPDATED)),
        entry_bytes(reading_type_element(None, BASE, SUB, METER, MR, RT, ReadingType(19), published=PUBLISHED,
                                         updated=UPDATED)),
        usage_point_feed(BASE, SUB, [SOLAR], updated=UPDATED, published=PUBLISHED, usage_summary=False),
        usage_summary_feed(BASE, SUB, METER, [summary()], updated=UPDATED),
    ]
    for xml in documents:
        assert_valid(espi_schema, xml)
    related = [h for _, h, t in links(entries(documents[3])[0]) if t != "espi-entry/UsagePoint"]
    assert not any(h.endswith("/UsageSummary") for h in related)
    payload = contents(documents[4])[0]
    assert local(payload)[:5] == ["billingPeriod", "billLastPeriod", "billToDate", "costAdditionalLastPeriod",
                                  "costAdditionalDetailLastPeriod"]
    tax = payload.findall(E + "costAdditionalDetailLastPeriod")[-1]
    assert local(tax) == ["amount", "dateTime", "note", "itemKind"]


def test_service_status_and_application_information(espi_schema):
    status = parse_document(service_status(1))
    assert status.tag == E + "ServiceStatus" and espi_schema.validate(status)
    app = ApplicationInformation(
        id="1234567", data_custodian_id="PCE", client_id="PCE_ccccccccc", client_name="Test Company",
        redirect_uris=("http://127.0.0.1:5000/callback", "http://localhost:5000/callback"),
        scope=("FB=4_16_51",), authorization_endpoint="http://127.0.0.1:5001/oauth/authorize",
        token_endpoint="http://127.0.0.1:5001/oauth/token", resource_endpoint=BASE,
        bulk_request_uri=f"{BASE}/Batch/Bulk/1", notify_uri="http://127.0.0.1:5000/",
        registration_client_uri=f"{BASE}/ApplicationInformation/1234567", description="Shows how GBC works")
    xml = application_information_entry(BASE, app, published=PUBLISHED, updated=UPDATED)
    assert_valid(espi_schema, xml)
    payload = contents(xml)[0]
    assert [el.text for el in payload.findall(E + "redirect_uri")] == list(app.redirect_uris)
    assert payload.findtext(E + "client_secret") == payload.findtext(E + "registration_access_token")


CUSTOMER = CustomerResource(
    authorization_uid=SUB, customer_id="7277ce18-ecb7-5cd8-b343-7ff4f429e271", name="HEATHER HOMEOWNER",
    kind="residential", address=Address("111 ANYWHERE ST", "ANYTOWN", "NY", "12345"),
    account_id="cdef9fe8-19ec-5fe5-a95f-3d1be85a748f", account_number="111111111-1", puc_number="1234",
    agreements=tuple(AgreementResource(meter_uid=m, agreement_id=f"11{i}00-00000",
                                       location_id=str(uuid.uuid5(uuid.NAMESPACE_URL, "loc" + m)),
                                       address=Address("111 ANYWHERE ST", "ANYTOWN", "NY", "12345"),
                                       meter_id=str(uuid.uuid5(uuid.NAMESPACE_URL, "meter" + m)),
                                       serial_number=f"11{i}0000000")
                     for i, m in enumerate(("1902729", "1902730"), 1)))


def test_retail_customer_like_the_capture(customer_schema):
    xml = retail_customer_batch(BASE, CUSTOMER, published=PUBLISHED, updated=UPDATED)
    assert_valid(customer_schema, xml)
    root = parse_document(xml)
    assert root.nsmap == {None: ATOM_NS, "dc": "http://purl.org/dc/elements/1.1/"}
    assert local(root) == ["title", "link", "link", "link", "id", "updated", "date"] + ["entry"] * 10
    assert [link_[0] for link_ in links(root)] == ["alternate", "self", "related"]
    kinds = [etree.QName(el).localname for el in contents(xml)]
    assert kinds == ["Customer", "CustomerAccount"] + ["CustomerAgreement", "ServiceLocation", "Meter",
                                                       "LocalTimeParameters"] * 2
    customer = root.findall(A + "entry")[0]
    assert local(customer) == ["title", "link", "link", "link", "link", "author", "id", "updated", "published",
                               "content", "date"]
    payload = contents(xml)[0]
    assert local(payload) == ["Organisation", "kind", "pucNumber", "customerName"]   # customer.xsd's order
    agreement = root.findall(A + "entry")[2]
    assert links(agreement)[0] == (
        "self", f"{BASE}/RetailCustomer/{SUB}/Customer/{CUSTOMER.customer_id}/CustomerAccount/"
                f"{CUSTOMER.account_id}/CustomerAgreement/1902729", "cust-entry/CustomerAgreement")
    location = contents(xml)[3]
    assert location.findtext("{http://naesb.org/espi/customer}UsagePoints/"
                             "{http://naesb.org/espi/customer}UsagePoint") == \
        f"{BASE}/Subscription/{SUB}/UsagePoint/1902729"
    feed = customer_feed(BASE, CUSTOMER, "CustomerAgreement", f"RetailCustomer/{SUB}/Customer/x/CustomerAccount/y/"
                         "CustomerAgreement", CUSTOMER.agreements, published=PUBLISHED, updated=UPDATED)
    assert_valid(customer_schema, feed)
    assert len(entries(feed)) == 2
    one = customer_entry(BASE, CUSTOMER, "Meter", CUSTOMER.agreements[1], published=PUBLISHED, updated=UPDATED)
    assert_valid(customer_schema, one)
    assert contents(one)[0].findtext("{http://naesb.org/espi/customer}serialNumber") == "1120000000"

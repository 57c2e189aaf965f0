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

"""demo.espi.parse: the demo site's safe, tolerant ESPI reader, against real captures."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from lxml import etree

from demo.espi.model import Authorization, DateTimeInterval, LocalTimeParameters, UsagePoint
from demo.espi.parse import (
    EspiError,
    normalize_href,
    parse_authorization,
    parse_authorizations,
    parse_document,
    parse_usage_points,
    require_content,
    safe_parser,
)

FIXTURES = Path(os.environ.get("GBC_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))
ESPI = FIXTURES / "espi"

UA = "https://utilityapi.com/DataCustodian/espi/1_1/resource"


def fixture(rel: str) -> bytes:
    path = ESPI / rel
    if not path.is_file():
        pytest.skip(f"fixture {rel} not found under {ESPI} (set GBC_FIXTURES)")
    return path.read_bytes()


def feed(*entries: str) -> bytes:
    return (
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:espi="http://naesb.org/espi">'
        "<id>urn:uuid:1</id><title>t</title>" + "".join(entries) + "</feed>"
    ).encode()


def entry(payload: str, *links: tuple[str, str], title: str = "UsagePoint") -> str:
    link_xml = "".join(f'<link rel="{rel}" href="{href}"/>' for rel, href in links)
    return f"<entry><id>urn:uuid:x</id>{link_xml}<title>{title}</title><content>{payload}</content></entry>"


def ltp(tz: int) -> str:
    return (
        "<espi:LocalTimeParameters><espi:dstEndRule>B40E2000</espi:dstEndRule><espi:dstOffset>3600</espi:dstOffset>"
        f"<espi:dstStartRule>360E2000</espi:dstStartRule><espi:tzOffset>{tz}</espi:tzOffset></espi:LocalTimeParameters>"
    )


UP = "<espi:UsagePoint><espi:ServiceCategory><espi:kind>0</espi:kind></espi:ServiceCategory></espi:UsagePoint>"


# ---------------------------------------------------------------- UsagePoints from real captures


def test_eddie_batch():
    (point,) = parse_usage_points(fixture("eddie/Batch.xml"))
    assert point == UsagePoint(
        id="1669851",
        self_uri=f"{UA}/Subscription/467189/UsagePoint/1669851",
        title="UsagePoint",
        service_kind=0,
        tariff_profile="RES-2-TIER",
        local_time=LocalTimeParameters(tz_offset=-18000, dst_offset=3600,
                                       dst_start_rule="360E2000", dst_end_rule="B40E2000"),
        related=(
            f"{UA}/Subscription/467189/UsagePoint/1669851/MeterReading",
            f"{UA}/LocalTimeParameters/TIMEZONE_467189_1669851",
        ),
    )
    assert point.service_kind_name == "electricity"


@pytest.mark.parametrize(
    "name", ["UsagePoint.xml", "UsagePointWithoutType.xml", "UsagePointWithJsonContentType.xml"]
)
def test_eddie_usage_point_feeds(name):
    (point,) = parse_usage_points(fixture(f"eddie/{name}"))
    assert point.id == "1669851"
    assert point.tariff_profile == "RES-2-TIER"
    assert point.service_kind == 0
    assert len(point.related) == 4
    assert point.local_time is None  # no LocalTimeParameters entry in a UsagePoint feed


def test_eddie_batch_without_interval_block_content_is_tolerated_but_reportable():
    data = fixture("eddie/BatchWithoutContentForIntervalBlock.xml")
    assert [p.id for p in parse_usage_points(data)] == ["1669851"]
    with pytest.raises(EspiError, match=r"^Entry 'IntervalBlock' has no <content>$"):
        require_content(data)
    require_content(fixture("eddie/Batch.xml"))  # a sound feed passes


def test_canada_energy_dashboard_commercial_capture():
    points = parse_usage_points(fixture("canada-energy-dashboard/utilityapi-live-commercial-sanitized.xml"))
    assert [p.id for p in points] == ["usage-point-2", "usage-point-10"]
    assert [p.tariff_profile for p in points] == [
        "E19S Medium General Demand-Metered TOU Service",  # lower-case serviceDeliveryPoint
        "A10SX Medium General Demand-Metered Service - TOU",
    ]
    assert all(p.local_time == LocalTimeParameters(-28800) for p in points)
    assert all(p.service_kind_name == "electricity" for p in points)


def test_verdigris_usage_points_with_prefixes_and_double_slashes():
    points = parse_usage_points(fixture("verdigris/ESPIUsagePoints.xml"))
    assert len(points) == 43
    assert [p.id for p in points] == [str(n) for n in range(1, 44)]
    assert points[0].title == "Green Button Sample Data File"
    assert points[1].service_delivery_point_name == "sample tariff showing block and tier pricing"
    assert points[1].tariff_profile == "./TariffSample.xml"
    assert points[0].tariff_profile is None
    assert all(p.local_time is None for p in points)  # linked LTPs are not in the file


def test_verdigris_pge_ns0_ns1_prefixes():
    (point,) = parse_usage_points(fixture("verdigris/PGEUsagePoint.xml"))
    assert (point.id, point.service_kind, point.title) == ("1", 0, "Green Button Data File")
    # a bare LocalTimeParameters entry holds no UsagePoint
    assert parse_usage_points(fixture("verdigris/PGELocalTimeParameters.xml")) == []


# ---------------------------------------------------------------- LocalTimeParameters linking


def test_local_time_matched_by_related_link_with_double_slashes():
    data = feed(
        entry(UP, ("self", "https://h/r/Subscription/1/UsagePoint/7"),
              ("related", "https://h//r/LocalTimeParameters/B")),
        entry(ltp(-18000), ("self", "https://h/r/LocalTimeParameters/A"), title="LocalTimeParameters"),
        entry(ltp(-28800), ("self", "https://H/r//LocalTimeParameters/B/"), title="LocalTimeParameters"),
    )
    (point,) = parse_usage_points(data)
    assert point.id == "7"
    assert point.local_time.tz_offset == -28800


def test_single_local_time_is_attached_without_link_match():
    data = feed(
        entry(UP, ("self", "https://h/r/UsagePoint/7"), ("related", "https://h/r/LocalTimeParameters/X")),
        entry(ltp(-25200), ("self", "https://h/r/LocalTimeParameters/other"), title="LocalTimeParameters"),
    )
    assert parse_usage_points(data)[0].local_time == LocalTimeParameters(-25200)


def test_two_unmatched_local_times_are_not_guessed():
    data = feed(
        entry(UP, ("self", "https://h/r/UsagePoint/7")),
        entry(ltp(-25200), ("self", "https://h/r/LocalTimeParameters/1"), title="LocalTimeParameters"),
        entry(ltp(-18000), ("self", "https://h/r/LocalTimeParameters/2"), title="LocalTimeParameters"),
    )
    assert parse_usage_points(data)[0].local_time is None


def test_usage_points_without_self_link_are_numbered():
    data = feed(entry(UP, title="House"), entry(UP, title="Garage"))
    points = parse_usage_points(data)
    assert [(p.id, p.title, p.self_uri) for p in points] == [("1", "House", None), ("2", "Garage", None)]


def test_normalize_href():
    assert normalize_href("HTTPS://Host.example//a//b/") == "https://host.example/a/b"
    assert normalize_href("https://h/a/b?x=1") == "https://h/a/b?x=1"


def test_non_integer_kind_is_reported():
    bad = UP.replace("<espi:kind>0</espi:kind>", "<espi:kind>electric</espi:kind>")
    with pytest.raises(EspiError, match="whole number"):
        parse_usage_points(feed(entry(bad)))


def test_service_kind_names():
    def point(kind):
        return UsagePoint(id="1", self_uri=None, title=None, service_kind=kind, tariff_profile=None)

    assert [point(k).service_kind_name for k in (0, 1, 2, 9)] == ["electricity", "gas", "water", "internet"]
    assert point(None).service_kind_name is None
    assert point(42).service_kind_name == "unknown (42)"


# ---------------------------------------------------------------- Authorizations


def test_cityssm_utilityapi_authorization_entry():
    auth = parse_authorization(fixture("cityssm-parser/entryOnly.xml"))
    assert auth == Authorization(
        uid="xxxxxx",
        status=1,
        scope="FB=1",
        token_type="Bearer",
        authorized_period=DateTimeInterval(start=1690904231, duration=202551769),
        published_period=DateTimeInterval(start=1690904231, duration=202551769),
        expires_at=1893456000,
        resource_uri=f"{UA}/Batch/Subscription/xxxxxx",
        authorization_uri=f"{UA}/Authorization/xxxxxx",
        customer_resource_uri=f"{UA}/Batch/RetailCustomer/xxxxxx",
    )
    assert auth.status_name == "active"


def test_openespi_authorization_entry():
    auth = parse_authorization(fixture("openespi/Authorization-Entry-Anonymized.xml"))
    assert auth.uid == "test-auth-id"
    assert auth.grant_type == "authorization_code"
    assert auth.resource_uri.endswith("/Batch/Subscription/test-subscription-id")
    assert auth.customer_resource_uri.endswith("/Batch/RetailCustomer/test-customer-id")


def test_openespi_multiple_authorization_feed():
    data = fixture("openespi/Multiple-Authorization-Feed-Anonymized.xml")
    auths = parse_authorizations(data)
    assert [(a.uid, a.scope) for a in auths] == [("test-auth-id-1", "FB=1_3_4_5"),
                                                 ("test-auth-id-2", "FB=1_3_4_5_13_15")]
    assert all(a.customer_resource_uri is None for a in auths)
    assert parse_authorization(data) == auths[0]


def test_verdigris_pge_authorization_keeps_millisecond_periods():
    auth = parse_authorization(fixture("verdigris/PGEAuthorization.xml"))
    assert auth.uid == "0"
    assert auth.authorized_period == DateTimeInterval(start=1440585200000, duration=251963658000000)
    assert auth.expires_at == 1440670029
    assert auth.grant_type is None and auth.customer_resource_uri is None
    assert auth.scope.startswith("FB=1_3_4_5_8_13") and auth.scope.endswith("AccountCollection=1;")


def test_authorization_missing_optional_fields():
    data = feed(entry(
        "<Authorization xmlns='http://naesb.org/espi'><status>2</status><scope>FB=1</scope>"
        "<authorizationURI>https://h/r/Authorization/55</authorizationURI></Authorization>",
        title="Authorization",
    ))
    auth = parse_authorization(data)
    assert auth == Authorization(uid="55", status=2, scope="FB=1",
                                 authorization_uri="https://h/r/Authorization/55")
    assert auth.status_name == "denied"
    assert Authorization(uid="x", status=7, scope="").status_name == "unknown (7)"


def test_authorization_without_status_is_refused():
    data = feed(entry("<Authorization xmlns='http://naesb.org/espi'><scope>FB=1</scope></Authorization>"))
    with pytest.raises(EspiError, match="no <status>"):
        parse_authorization(data)


def test_no_authorization_in_usage_point_feed():
    data = fixture("eddie/UsagePoint.xml")
    assert parse_authorizations(data) == []
    with pytest.raises(EspiError, match="No <Authorization>"):
        parse_authorization(data)
    assert parse_usage_points(fixture("cityssm-parser/entryOnly.xml")) == []


# ---------------------------------------------------------------- refusing bad input


def test_json_payload_is_not_xml():
    with pytest.raises(EspiError, match=r"^Not XML: line 1, column 0: "):
        parse_usage_points(fixture("eddie/UsagePointWithInvalidPayload.xml"))


@pytest.mark.parametrize(
    "data, message",
    [
        (b"", "The document is empty"),
        (b"  \n", "The document is empty"),
        (b"<feed xmlns='http://www.w3.org/2005/Atom'>", "Not XML"),
        (b"<a></b>", "Not XML"),
        (b"<a>" * 300 + b"</a>" * 300, "Not XML"),  # deeper than libxml2's 256 without huge_tree
        (b"<UsagePoint xmlns='http://naesb.org/espi'/>", r"Expected an Atom feed or entry, got <UsagePoint>"),
        (b"<foo/>", r"^Expected an Atom feed or entry, got <foo>$"),
    ],
)
def test_bad_documents(data, message):
    with pytest.raises(EspiError, match=message):
        parse_usage_points(data)


def test_text_input_is_a_programming_error():
    with pytest.raises(TypeError):
        parse_document("<feed/>")


def test_espi_error_is_a_value_error():
    assert issubclass(EspiError, ValueError)


XXE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE entry [<!ENTITY secret SYSTEM "file:///etc/passwd">]>
<entry xmlns="http://www.w3.org/2005/Atom">
  <link rel="self" href="https://h/r/Authorization/1"/>
  <title>&secret;</title>
  <content><Authorization xmlns="http://naesb.org/espi"><status>1</status>
    <scope>&secret;</scope><token_type>Bearer</token_type></Authorization></content>
</entry>"""


def _passwd_marker() -> str:
    try:
        return Path("/etc/passwd").read_text().splitlines()[0]
    except (OSError, IndexError):
        return "root:x:0:0"


@pytest.mark.parametrize("reader", [parse_document, parse_authorization, parse_authorizations, parse_usage_points])
def test_xxe_document_is_refused(reader):
    with pytest.raises(EspiError, match="DOCTYPE") as info:
        reader(XXE)
    assert str(info.value) == (
        "The document has a DOCTYPE; Green Button XML never needs one, so it is refused"
    )
    assert _passwd_marker() not in str(info.value)


def test_safe_parser_never_reads_the_file():
    root = etree.fromstring(XXE, safe_parser())
    text = etree.tostring(root, encoding="unicode")
    assert _passwd_marker() not in text


@pytest.mark.parametrize(
    "doctype",
    [
        b'<!DOCTYPE feed SYSTEM "file:///etc/passwd">',
        b'<!DOCTYPE feed PUBLIC "-//x//y" "http://127.0.0.1:9/evil.dtd">',
        b'<!DOCTYPE feed [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>',
        b"<!DOCTYPE feed>",
    ],
)
def test_any_doctype_is_refused(doctype):
    with pytest.raises(EspiError, match="DOCTYPE"):
        parse_document(b'<?xml version="1.0"?>\n' + doctype + b'<feed xmlns="http://www.w3.org/2005/Atom"/>')


def _billion_laughs(in_attribute: bool) -> bytes:
    defs = b'<!ENTITY lol "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10)
    )
    body = b'<feed xmlns="http://www.w3.org/2005/Atom" a="&lol9;"/>' if in_attribute else (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>&lol9;</title></feed>'
    )
    return b'<?xml version="1.0"?>\n<!DOCTYPE feed [' + defs + b"]>\n" + body


@pytest.mark.parametrize("in_attribute", [False, True])
def test_billion_laughs_is_refused_quickly(in_attribute):
    start = time.perf_counter()
    with pytest.raises(EspiError, match="DOCTYPE"):
        parse_usage_points(_billion_laughs(in_attribute))
    assert time.perf_counter() - start < 0.5


def test_comments_and_processing_instructions_are_harmless():
    data = (
        b'<?xml version="1.0"?>\n<?xml-stylesheet type="text/xsl" href="x.xslt"?>\n<!-- hi -->\n'
        + feed(entry(UP, ("self", "https://h/r/UsagePoint/3")))
    )
    assert [p.id for p in parse_usage_points(data)] == ["3"]


def test_parse_local_time_reads_an_entry_or_says_none():
    from demo.espi.parse import parse_local_time

    assert parse_local_time(feed(entry(ltp(-28800), title="LocalTimeParameters"))) == LocalTimeParameters(-28800)
    assert parse_local_time(feed(entry(UP))) is None

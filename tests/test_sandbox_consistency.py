"""The sandbox as one platform: what the JSON API and the Green Button (ESPI) API
say about one authorization agree (same meters, same interval values, same
bills), readiness holds both back until the data is collected, and a revocation
through one API ends access through the other."""
from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
import requests
from lxml import etree

from demo.storage import utcnow
from demo.tokens import digest, new_token

from conftest import Visitor, start_servers
from flow import full_flow, token_of

ESPI = "{http://naesb.org/espi}"
ATOM = "{http://www.w3.org/2005/Atom}"
CLIENT_ID = "PCE_ccccccccc"


def api_token(live, client_id=CLIENT_ID) -> str:
    """A JSON API token, as the dashboard's API settings would create it."""
    from demo.sandbox.models import ApiTokenRow

    token = new_token()
    with live.sandbox_app.extensions["gbc_sandbox"].db.session() as s:
        s.add(ApiTokenRow(client_id=client_id, token_hash=digest(token), last4=token[-4:], name="test",
                          expires=utcnow() + timedelta(days=3650)))
    return token


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def espi(url, token, **params):
    return requests.get(url, headers=bearer(token), params=params, timeout=60)


def api(live, token, path, method="GET", **kwargs):
    return requests.request(method, live.sandbox_url + "/api/v2" + path, headers=bearer(token), timeout=60,
                            **kwargs)


def local_day(epoch: int) -> str:
    from zoneinfo import ZoneInfo

    return datetime.fromtimestamp(epoch, ZoneInfo("America/Los_Angeles")).date().isoformat()


def espi_intervals(xml: bytes) -> dict[int, dict[int, int]]:
    """{flowDirection: {interval start: value}} from a feed of MeterReadings, ReadingTypes and IntervalBlocks."""
    root = etree.fromstring(xml)
    flows: dict[str, int] = {}
    readings: dict[int, dict[int, int]] = {}
    entries = root.iter(ATOM + "entry")
    for entry in entries:
        self_href = next((link.get("href") for link in entry.iter(ATOM + "link") if link.get("rel") == "self"), "")
        content = entry.find(ATOM + "content")
        if content is None or len(content) == 0:
            continue
        resource = content[0]
        if resource.tag == ESPI + "ReadingType":
            flows[self_href] = int(resource.findtext(ESPI + "flowDirection"))
    # IntervalBlocks name their ReadingType through their MeterReading; the sandbox writes one
    # MeterReading per flow, so map block -> meter reading -> reading type by self/up links
    reading_type_of: dict[str, int] = {}
    for entry in root.iter(ATOM + "entry"):
        content = entry.find(ATOM + "content")
        if content is None or len(content) == 0 or content[0].tag != ESPI + "MeterReading":
            continue
        links = {link.get("type"): link.get("href") for link in entry.iter(ATOM + "link")}
        self_href = next(link.get("href") for link in entry.iter(ATOM + "link") if link.get("rel") == "self")
        rt = links.get("espi-entry/ReadingType")
        if rt in flows:
            reading_type_of[self_href] = flows[rt]
    for entry in root.iter(ATOM + "entry"):
        content = entry.find(ATOM + "content")
        if content is None or len(content) == 0 or content[0].tag != ESPI + "IntervalBlock":
            continue
        up = next(link.get("href") for link in entry.iter(ATOM + "link") if link.get("rel") == "up")
        meter_reading = up.rsplit("/IntervalBlock", 1)[0]
        flow = reading_type_of.get(meter_reading, 1)
        for reading in content[0].iter(ESPI + "IntervalReading"):
            start = int(reading.findtext(f"{ESPI}timePeriod/{ESPI}start"))
            readings.setdefault(flow, {})[start] = int(reading.findtext(ESPI + "value"))
    return readings


@pytest.fixture(scope="module")
def commercial(live):
    grant = token_of(live, full_flow(Visitor(), live, "commercial", "email"))
    return grant, api_token(live)


def test_json_and_espi_name_the_same_meters(live, commercial):
    grant, token = commercial
    uid = grant["authorizationURI"].rsplit("/", 1)[1]
    body = api(live, token, f"/authorizations/{uid}", params={"include": "meters"}).json()
    json_meters = [m["uid"] for m in body["meters"]["meters"]]
    feed = espi(grant["resourceURI"] + "/UsagePoint", grant["access_token"])
    assert feed.status_code == 200, feed.text[:500]
    root = etree.fromstring(feed.content)
    espi_meters = [next(link.get("href") for link in e.iter(ATOM + "link") if link.get("rel") == "self")
                   .rsplit("/", 1)[1] for e in root.iter(ATOM + "entry")]
    assert len(json_meters) == 4
    assert sorted(json_meters) == sorted(espi_meters)
    listed = api(live, token, "/meters", params={"authorizations": uid}).json()["meters"]
    assert sorted(m["uid"] for m in listed) == sorted(json_meters)
    for meter in listed:
        assert meter["authorization_uid"] == uid and meter["utility"] == "PCE"


def test_json_intervals_equal_espi_interval_readings(live, commercial):
    grant, token = commercial
    uid = grant["authorizationURI"].rsplit("/", 1)[1]
    meters = api(live, token, "/meters", params={"authorizations": uid}).json()["meters"]
    solar = [m for m in meters if "solar" in m["base"]["service_tariff"].lower()]
    assert solar, "the commercial customer has a solar meter"
    for meter in (meters[0], solar[0]):
        # one recent week, asked of both APIs for the same window
        end = datetime.now().date() - timedelta(days=2)
        start = end - timedelta(days=7)
        js = api(live, token, "/intervals", params={"meters": meter["uid"], "start": start.isoformat(),
                                                   "end": end.isoformat()})
        assert js.status_code == 200, js.text[:500]
        json_fwd, json_rev = {}, {}
        for obj in js.json()["intervals"]:
            assert obj["meter_uid"] == meter["uid"]
            for r in obj["readings"]:
                epoch = int(datetime.fromisoformat(r["start"]).timestamp())
                for dp in r.get("datapoints", []):
                    if dp["type"] == "fwd":
                        json_fwd[epoch] = dp["value"]
                    elif dp["type"] == "rev":
                        json_rev[epoch] = dp["value"]
                if not r.get("datapoints"):
                    json_fwd[epoch] = r["kwh"]
        assert len(json_fwd) >= 6 * 92
        t0 = int(min(json_fwd))
        t1 = int(max(json_fwd)) + 900
        xml = espi(f"{grant['resourceURI'].replace('/Batch/', '/')}/UsagePoint/{meter['uid']}".replace(
            "/Subscription/", "/Batch/Subscription/", 1), grant["access_token"],
            **{"published-min": datetime.fromtimestamp(t0).astimezone().isoformat(),
               "published-max": datetime.fromtimestamp(t1 + 86400).astimezone().isoformat()})
        assert xml.status_code == 200, xml.text[:500]
        series = espi_intervals(xml.content)
        for epoch, kwh in json_fwd.items():
            assert series[1][epoch] / 1e6 == pytest.approx(kwh, abs=1e-6), (meter["uid"], epoch)
        if meter is solar[0]:
            assert json_rev, "the solar meter reports export"
            for epoch, kwh in json_rev.items():
                assert series[19][epoch] / 1e6 == pytest.approx(kwh, abs=1e-6)


def test_json_bills_equal_espi_usage_summaries(live, commercial):
    grant, token = commercial
    uid = grant["authorizationURI"].rsplit("/", 1)[1]
    meter = api(live, token, "/meters", params={"authorizations": uid}).json()["meters"][0]
    bills = api(live, token, "/bills", params={"meters": meter["uid"], "limit": 100}).json()["bills"]
    assert len(bills) >= 20            # about 2 years of monthly bills
    feed = espi(f"{grant['resourceURI'].replace('/Batch/', '/')}/UsagePoint/{meter['uid']}/UsageSummary",
                grant["access_token"])
    assert feed.status_code == 200, feed.text[:500]
    summaries = {}
    for us in etree.fromstring(feed.content).iter(ESPI + "UsageSummary"):
        start = int(us.findtext(f"{ESPI}billingPeriod/{ESPI}start"))
        summaries[start] = (int(us.findtext(ESPI + "billLastPeriod")),
                            int(us.findtext(f"{ESPI}overallConsumptionLastPeriod/{ESPI}value")))
    assert len(summaries) == len(bills)
    for bill in bills:
        start = int(datetime.fromisoformat(bill["base"]["bill_start_date"]).timestamp())
        cost, consumption = summaries[start]
        assert cost / 1e5 == pytest.approx(bill["base"]["bill_total_cost"], abs=0.005)
        assert consumption / 1e6 == pytest.approx(bill["base"]["bill_total_kwh"], abs=1e-3)
        assert sum(item["cost"] for item in bill["line_items"]) == pytest.approx(bill["base"]["bill_total_cost"],
                                                                                abs=0.011)


def test_revoking_through_the_json_api_ends_espi_access(live):
    grant = token_of(live, full_flow(Visitor(), live, "residential", "phone"))
    token = api_token(live)
    uid = grant["authorizationURI"].rsplit("/", 1)[1]
    assert espi(grant["authorizationURI"], grant["access_token"]).status_code == 200
    revoked = api(live, token, f"/authorizations/{uid}/revoke", method="POST")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["is_revoked"] is True
    assert espi(grant["authorizationURI"], grant["access_token"]).status_code == 401
    refresh = requests.post(live.sandbox_url + "/oauth/token", timeout=10,
                            auth=(CLIENT_ID, "pce-sandbox-public-test-company-secret"),
                            data={"grant_type": "refresh_token", "refresh_token": grant["refresh_token"]})
    assert refresh.status_code == 400
    types = [e["type"] for e in api(live, token, "/events").json()["events"]
             if e.get("authorization_uid") == uid]
    assert "authorization_revoked" in types


def test_readiness_holds_back_both_apis_until_the_data_is_collected(tmp_path):
    live, servers = start_servers(tmp_path, sandbox_ready_delay=2)
    try:
        page = full_flow(Visitor(), live, "residential", "account")
        grant = token_of(live, page)
        token = api_token(live)
        uid = grant["authorizationURI"].rsplit("/", 1)[1]
        batch = grant["resourceURI"].replace("/Subscription/", "/Batch/Subscription/", 1)
        early = espi(batch, grant["access_token"])
        assert early.status_code == 202 and early.content == b""
        assert 1 <= int(early.headers["Retry-After"]) <= 2
        assert espi(grant["authorizationURI"], grant["access_token"]).status_code == 200   # served at once
        assert api(live, token, f"/authorizations/{uid}").json()["status"] == "pending"
        time.sleep(int(early.headers["Retry-After"]) + 0.2)
        late = espi(batch, grant["access_token"])
        assert late.status_code == 200
        assert api(live, token, f"/authorizations/{uid}").json()["status"] == "updated"
        events = [e["type"] for e in api(live, token, "/events").json()["events"]]
        assert "authorization_update_finished_successful" in events
    finally:
        for srv in servers:
            srv.shutdown()


def test_collection_and_revocation_in_time(tmp_path):
    """With a real collection delay: re-collecting keeps collected data visible, and a
    revocation cancels what was still scheduled (no 'finished' after 'revoked')."""
    live, servers = start_servers(tmp_path, sandbox_ready_delay=2)
    try:
        token = api_token(live)
        first = token_of(live, full_flow(Visitor(), live, "residential", "phone"))
        first_uid = first["authorizationURI"].rsplit("/", 1)[1]
        second = token_of(live, full_flow(Visitor(), live, "residential", "email"))
        second_uid = second["authorizationURI"].rsplit("/", 1)[1]
        # the second is revoked while its data is still being collected
        assert api(live, token, f"/authorizations/{second_uid}/revoke", method="POST").status_code == 200
        time.sleep(2.3)
        meter = api(live, token, "/meters", params={"authorizations": first_uid}).json()["meters"][0]
        bills_before = len(api(live, token, "/bills", params={"meters": meter["uid"], "limit": 100}).json()["bills"])
        assert bills_before >= 20
        started = api(live, token, "/meters/historical-collection", method="POST",
                      json={"meters": [meter["uid"]], "collection_duration": 24})
        assert started.status_code == 200, started.text
        # what was collected stays visible through both APIs while the new collection runs
        assert len(api(live, token, "/bills", params={"meters": meter["uid"], "limit": 100}).json()["bills"]) \
            == bills_before
        batch = first["resourceURI"].replace("/Subscription/", "/Batch/Subscription/", 1)
        assert espi(batch, first["access_token"], **{"published-min": "2026-01-01T00:00:00Z"}).status_code == 200
        time.sleep(2.3)
        events = api(live, token, "/events", params={"limit": 1000}).json()["events"]
        second_types = [e["type"] for e in events if e.get("authorization_uid") == second_uid]
        assert "authorization_revoked" in second_types
        assert not [t for t in second_types if t.startswith("authorization_update_finished")]
        first_types = [e["type"] for e in events if e.get("meter_uid") == meter["uid"]]
        assert "meter_historical_collection_finished_successful" in first_types
    finally:
        for srv in servers:
            srv.shutdown()

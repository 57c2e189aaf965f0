"""The sandbox's whole Green Button (ESPI) tree over real HTTP: every endpoint of
reference §4.2 for a residential and a commercial (solar) customer, each answer
validated against espi.xsd / customer.xsd, ids and links as §4.3/§4.4, the
numbers equal to demo.sandbox.meterdata's, the query filters, the token
classes (401/403/404), scope, readiness (202) and test behaviours."""
from __future__ import annotations

import re
import time
from datetime import UTC, date, datetime, timedelta

import pytest
import requests
from lxml import etree

from demo.espi.parse import parse_authorization, parse_authorizations, parse_usage_points
from demo.sandbox import lifecycle, meterdata
from demo.sandbox.models import ApiTokenRow, AuthorizationRow, ClientRow, TokenRow
from demo.sandbox.resources import application_id, bulk_id
from demo.storage import utcnow
from demo.tokens import digest, new_token

from conftest import Visitor, start_servers
from flow import full_flow, token_of
from test_espi_build import assert_valid, customer_schema, espi_schema  # noqa: F401  (fixtures)

A = "{http://www.w3.org/2005/Atom}"
E = "{http://naesb.org/espi}"
C = "{http://naesb.org/espi/customer}"
R = "/DataCustodian/espi/1_1/resource"
CLIENT = ("PCE_ccccccccc", "pce-sandbox-public-test-company-secret")
OTHER = ("PCE_livedemo1", "pce-sandbox-public-live-demo-secret")


# ---------------------------------------------------------------- helpers


def get(live, url: str, token: str | None = None, **params) -> requests.Response:
    if url.startswith("/"):
        url = live.sandbox_url + R + url
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(url, headers=headers, params=params, timeout=60)


def ok(resp: requests.Response) -> bytes:
    assert resp.status_code == 200, (resp.url, resp.status_code, resp.text[:300])
    assert resp.headers["Content-Type"].startswith("application/atom+xml")
    return resp.content


def db(live):
    return live.sandbox_app.extensions["gbc_sandbox"].db


def entries(xml: bytes) -> list[etree._Element]:
    root = etree.fromstring(xml)
    return [root] if root.tag == A + "entry" else root.findall(A + "entry")


def kind(entry: etree._Element) -> str:
    content = entry.find(A + "content")
    return etree.QName(next(iter(content))).localname


def link(entry: etree._Element, rel: str, type_: str | None = None) -> str:
    return next(el.get("href") for el in entry.findall(A + "link")
                if el.get("rel") == rel and (type_ is None or el.get("type") == type_))


def links(entry: etree._Element) -> list[tuple[str, str]]:
    return [(el.get("rel"), el.get("type")) for el in entry.findall(A + "link")]


def iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def client_token(live, client=CLIENT) -> str:
    resp = requests.post(live.sandbox_url + "/oauth/token", data={"grant_type": "client_credentials"},
                         auth=client, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["access_token"]


def api_token(live, client_id=CLIENT[0]) -> str:
    token = new_token()
    with db(live).session() as s:
        s.add(ApiTokenRow(client_id=client_id, token_hash=digest(token), last4=token[-4:], name="tree test",
                          expires=utcnow() + timedelta(days=1)))
    return token


def direct(live, scenario="commercial", *, scope="FB=1_3_4_5_13_16_51", history_days=30, behaviour="normal",
           client_id=CLIENT[0]) -> tuple[str, str]:
    """An authorization, its meters and an access token written straight into the sandbox
    database, as the consent step (or a test-submit) stores them."""
    customer = live.sandbox_app.extensions["gbc_sandbox"].directory.scenario(scenario)
    token = new_token()
    now = int(time.time())
    with db(live).session() as s:
        row = AuthorizationRow(uid=lifecycle.numeric_uid(s, AuthorizationRow), client_id=client_id,
                               scenario=scenario, account_number=customer.account_number, status=1,
                               requested_scope=scope, scope=scope, meter_uids=[], behaviour=behaviour,
                               history_start=now - history_days * 86400, authorized_start=now, authorized_end=0,
                               source="test-submit" if behaviour != "normal" else "oauth")
        s.add(row)
        s.flush()
        lifecycle.authorized(s, row, [m.uid for m in customer.meters], live.settings)
        s.add(TokenRow(access_hash=digest(token), token_class="access", client_id=client_id,
                       authorization_uid=row.uid, scope=scope, expires=utcnow() + timedelta(hours=1)))
        return row.uid, token


def window_of(history_start: int) -> tuple[int, int]:
    return meterdata.data_window(history_start, int(time.time()))


@pytest.fixture(scope="module")
def commercial(live):
    """A commercial customer through the real flow (FB 4_16_51, two years, four meters, one solar)."""
    grant = token_of(live, full_flow(Visitor(), live, "commercial", "email"))
    uid = grant["authorizationURI"].rsplit("/", 1)[1]
    with db(live).session() as s:
        row = s.get(AuthorizationRow, uid)
        meters = [(m.uid, m.service_uid) for m in lifecycle.meters_of(s, uid)]
        history_start = row.history_start
    return {"grant": grant, "uid": uid, "token": grant["access_token"], "meters": meters,
            "window": window_of(history_start)}


@pytest.fixture(scope="module")
def residential(live):
    grant = token_of(live, full_flow(Visitor(), live, "residential", "phone"))
    uid = grant["authorizationURI"].rsplit("/", 1)[1]
    with db(live).session() as s:
        row = s.get(AuthorizationRow, uid)
        meters = [(m.uid, m.service_uid) for m in lifecycle.meters_of(s, uid)]
        history_start = row.history_start
    return {"grant": grant, "uid": uid, "token": grant["access_token"], "meters": meters,
            "window": window_of(history_start)}


def profile(live, service_uid: str) -> meterdata.MeterProfile:
    directory = live.sandbox_app.extensions["gbc_sandbox"].directory
    for customer in directory.customers:
        for meter in customer.meters:
            if meter.uid == service_uid:
                return meterdata.profile(customer, meter)
    raise KeyError(service_uid)


# ---------------------------------------------------------------- ServiceStatus, ApplicationInformation


def test_read_service_status_with_any_valid_token(live, commercial, espi_schema):  # noqa: F811
    for token in (commercial["token"], client_token(live), api_token(live)):
        xml = ok(get(live, "/ReadServiceStatus", token))
        root = etree.fromstring(xml)
        assert root.tag == E + "ServiceStatus" and root.findtext(E + "currentStatus") == "1"
        assert espi_schema.validate(root), espi_schema.error_log
    missing = get(live, "/ReadServiceStatus")
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.fixture
def registration_token(live):
    """A registration_access_token for the test client (restored afterwards)."""
    token = new_token()
    with db(live).session() as s:
        row = s.get(ClientRow, CLIENT[0])
        before, row.registration_token_hash = row.registration_token_hash, digest(token)
    yield token
    with db(live).session() as s:
        s.get(ClientRow, CLIENT[0]).registration_token_hash = before


def test_application_information_with_the_registration_token(live, registration_token, commercial,
                                                             espi_schema):  # noqa: F811
    app_id = application_id(CLIENT[0])
    xml = ok(get(live, f"/ApplicationInformation/{app_id}", registration_token))
    assert_valid(espi_schema, xml)
    (entry,) = entries(xml)
    app = entry.find(A + "content")[0]
    assert app.findtext(E + "client_id") == CLIENT[0]
    assert app.findtext(E + "client_name") == "Test Company"
    assert live.settings["redirect_uri"] in [el.text for el in app.findall(E + "redirect_uri")]
    assert app.findtext(E + "registration_client_uri").endswith(f"{R}/ApplicationInformation/{app_id}")
    assert app.findtext(E + "dataCustodianBulkRequestURI").endswith(f"/Batch/Bulk/{bulk_id(CLIENT[0])}")
    assert app.findtext(E + "authorizationServerTokenEndpoint") == live.sandbox_url + "/oauth/token"
    assert CLIENT[1] not in xml.decode() and registration_token not in xml.decode()   # secrets are never shown
    assert get(live, f"/ApplicationInformation/{CLIENT[0]}", registration_token).status_code == 200
    assert get(live, "/ApplicationInformation/1", registration_token).status_code == 404
    assert get(live, f"/ApplicationInformation/{app_id}", commercial["token"]).status_code == 403
    assert get(live, f"/ApplicationInformation/{app_id}", client_token(live)).status_code == 403
    assert get(live, f"/Batch/Subscription/{commercial['uid']}", registration_token).status_code == 403


# ---------------------------------------------------------------- Authorization


def test_authorization_list_and_entries_by_token_class(live, commercial, residential, espi_schema):  # noqa: F811
    mine = client_token(live)
    xml = ok(get(live, "/Authorization", mine))
    assert_valid(espi_schema, xml)
    uids = [a.uid for a in parse_authorizations(xml)]
    assert {commercial["uid"], residential["uid"]} <= set(uids)
    assert ok(get(live, "/Authorization", api_token(live))) is not None
    # another third party's client token lists only its own (none of ours)
    theirs = parse_authorizations(ok(get(live, "/Authorization", client_token(live, OTHER))))
    assert not {commercial["uid"], residential["uid"]} & {a.uid for a in theirs}
    assert get(live, "/Authorization", commercial["token"]).status_code == 403
    # paging
    assert len(parse_authorizations(ok(get(live, "/Authorization", mine, **{"max-results": 1})))) == 1

    path = f"/Authorization/{commercial['uid']}"
    for token in (mine, api_token(live), commercial["token"]):
        auth = parse_authorization(ok(get(live, path, token)))
        assert auth.uid == commercial["uid"] and auth.status == 1
    assert get(live, path, residential["token"]).status_code == 404
    assert get(live, path, client_token(live, OTHER)).status_code == 404


# ---------------------------------------------------------------- the subscription tree (commercial, solar)


def test_usage_points_local_time_and_meter_readings(live, commercial, espi_schema):  # noqa: F811
    uid, token = commercial["uid"], commercial["token"]
    base = live.sandbox_url + R
    xml = ok(get(live, f"/Subscription/{uid}/UsagePoint", token))
    assert_valid(espi_schema, xml)
    points = parse_usage_points(xml)
    assert [p.id for p in points] == [m for m, _ in commercial["meters"]]
    first = entries(xml)[0]
    meter = points[0].id
    up = f"{base}/Subscription/{uid}/UsagePoint/{meter}"
    assert [(rel, href) for rel, href in ((el.get("rel"), el.get("href")) for el in first.findall(A + "link"))] == [
        ("self", up), ("up", f"{base}/Subscription/{uid}/UsagePoint"), ("related", f"{up}/MeterReading"),
        ("related", f"{up}/UsageSummary"), ("related", f"{up}/ElectricPowerQualitySummary"),
        ("related", f"{base}/LocalTimeParameters/TIMEZONE_{uid}_{meter}")]

    one = ok(get(live, f"/Subscription/{uid}/UsagePoint/{meter}", token))
    assert_valid(espi_schema, one)
    assert parse_usage_points(one)[0].tariff_profile.startswith("B-19")
    ltp = ok(get(live, f"/LocalTimeParameters/TIMEZONE_{uid}_{meter}", token))
    assert_valid(espi_schema, ltp)
    assert [c.text for c in entries(ltp)[0].find(A + "content")[0]] == ["B40E2000", "3600", "360E2000", "-28800"]

    solar_meter = commercial["meters"][3][0]
    start, end = commercial["window"]
    xml = ok(get(live, f"/Subscription/{uid}/UsagePoint/{solar_meter}/MeterReading", token))
    assert_valid(espi_schema, xml)
    readings = entries(xml)
    ids = [link(e, "self").rsplit("/", 1)[1] for e in readings]
    assert ids == [f"{solar_meter}-{end}-{start}_kwh_1", f"{solar_meter}-{end}-{start}_kwh_19"]
    assert [rel for rel, _ in links(readings[0])] == ["self", "up", "related", "related", "related"]
    for mr_id, flow in zip(ids, (1, 19), strict=True):
        entry = ok(get(live, f"/Subscription/{uid}/UsagePoint/{solar_meter}/MeterReading/{mr_id}", token))
        assert_valid(espi_schema, entry)
        rt_href = link(entries(entry)[0], "related", "espi-entry/ReadingType")
        assert rt_href == f"{base}/ReadingType/{uid}_{solar_meter}_{mr_id}"
        rt = ok(get(live, rt_href, token))
        assert_valid(espi_schema, rt)
        fields = {etree.QName(c).localname: c.text for c in entries(rt)[0].find(A + "content")[0]}
        assert fields == {"accumulationBehaviour": "4", "commodity": "1", "currency": "840",
                          "flowDirection": str(flow), "intervalLength": "900", "kind": "12", "phase": "0",
                          "powerOfTenMultiplier": "-3", "uom": "72"}
    # a meter without solar has one flow
    assert len(entries(ok(get(live, f"/Subscription/{uid}/UsagePoint/{meter}/MeterReading", token)))) == 1


def test_interval_blocks_are_local_days_with_meterdata_values(live, commercial, espi_schema):  # noqa: F811
    uid, token = commercial["uid"], commercial["token"]
    solar_meter, service_uid = commercial["meters"][3]
    p = profile(live, service_uid)
    start, end = commercial["window"]
    days = meterdata.day_starts(start, end)
    mr = f"{solar_meter}-{end}-{start}_kwh_19"
    path = f"/Subscription/{uid}/UsagePoint/{solar_meter}/MeterReading/{mr}/IntervalBlock"
    # the last three days, by their publication (a day is published at its end)
    xml = ok(get(live, path, token, **{"published-min": iso(days[-3] + 1)}))
    assert_valid(espi_schema, xml)
    blocks = entries(xml)
    assert [link(b, "self").rsplit("/", 1)[1] for b in blocks] == [f"{len(days) - i:06d}" for i in (2, 1, 0)]
    for block, day_start in zip(blocks, days[-3:], strict=True):
        ib = block.find(A + "content")[0]
        day_end = days[days.index(day_start) + 1] if day_start != days[-1] else end
        assert int(ib.findtext(f"{E}interval/{E}start")) == day_start
        assert int(ib.findtext(f"{E}interval/{E}duration")) == day_end - day_start
        got = [(int(r.findtext(f"{E}timePeriod/{E}start")), int(r.findtext(E + "value")))
               for r in ib.findall(E + "IntervalReading")]
        assert got == list(meterdata.readings(p, 19, day_start, day_end))
        assert block.findtext(A + "published") == block.findtext(A + "updated") == \
            datetime.fromtimestamp(day_end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert link(block, "up").endswith(f"{mr}/IntervalBlock")
    # one block by id; paging
    one = ok(get(live, f"{path}/{len(days):06d}", token))
    assert_valid(espi_schema, one)
    assert entries(one)[0].findtext(A + "id") == blocks[-1].findtext(A + "id")
    first_two = entries(ok(get(live, path, token, **{"max-results": 2})))
    assert [link(b, "self").rsplit("/", 1)[1] for b in first_two] == ["000001", "000002"]
    assert get(live, f"{path}/{len(days) + 1:06d}", token).status_code == 404
    assert get(live, f"{path}/000000", token).status_code == 404


def test_usage_summaries_are_the_bills(live, commercial, espi_schema):  # noqa: F811
    uid, token = commercial["uid"], commercial["token"]
    meter, service_uid = commercial["meters"][0]
    bills = meterdata.bills(profile(live, service_uid), *commercial["window"])
    xml = ok(get(live, f"/Subscription/{uid}/UsagePoint/{meter}/UsageSummary", token))
    assert_valid(espi_schema, xml)
    summaries = entries(xml)
    assert len(summaries) == len(bills) >= 20
    for entry, bill in zip(summaries, bills, strict=True):
        us = entry.find(A + "content")[0]
        assert link(entry, "self").endswith(f"/UsageSummary/{bill.uid}")
        assert int(us.findtext(f"{E}billingPeriod/{E}start")) == bill.start
        assert int(us.findtext(f"{E}billingPeriod/{E}duration")) == bill.end - bill.start
        assert int(us.findtext(E + "billLastPeriod")) == bill.cost
        assert int(us.findtext(f"{E}overallConsumptionLastPeriod/{E}value")) == bill.consumption
        assert us.findtext(f"{E}overallConsumptionLastPeriod/{E}uom") == "72"
        assert us.findtext(f"{E}overallConsumptionLastPeriod/{E}powerOfTenMultiplier") == "-3"
        items = us.findall(E + "costAdditionalDetailLastPeriod")
        assert [i.findtext(E + "note") for i in items] == [i.name for i in bill.line_items]
        assert sum(int(i.findtext(E + "amount")) for i in items) == bill.cost
        assert {i.findtext(E + "itemKind") for i in items} == {"10"}
        assert us.findtext(E + "tariffProfile").startswith("B-19")
        assert entry.findtext(A + "published") == datetime.fromtimestamp(bill.end, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    demand = next(i for i in summaries[-1].find(A + "content")[0].findall(E + "costAdditionalDetailLastPeriod")
                  if i.findtext(E + "note") == "Demand Charge - Max Demand")
    assert demand.findtext(f"{E}measurement/{E}uom") == "38"
    one = ok(get(live, f"/Subscription/{uid}/UsagePoint/{meter}/UsageSummary/{bills[0].uid}", token))
    assert_valid(espi_schema, one)
    assert get(live, f"/Subscription/{uid}/UsagePoint/{meter}/UsageSummary/123", token).status_code == 404
    # filters keep the bills published inside them
    recent = entries(ok(get(live, f"/Subscription/{uid}/UsagePoint/{meter}/UsageSummary", token,
                            **{"published-min": iso(bills[-2].end)})))
    assert len(recent) == 2
    quality = ok(get(live, f"/Subscription/{uid}/UsagePoint/{meter}/ElectricPowerQualitySummary", token))
    root = etree.fromstring(quality)
    assert root.tag == A + "feed" and root.findall(A + "entry") == []


def test_batch_for_one_meter_in_capture_order(live, commercial, espi_schema):  # noqa: F811
    uid, token = commercial["uid"], commercial["token"]
    solar_meter = commercial["meters"][3][0]
    start, end = commercial["window"]
    days = meterdata.day_starts(start, end)
    low, high = days[-2] + 1, end   # the last two days
    xml = ok(get(live, f"/Batch/Subscription/{uid}/UsagePoint/{solar_meter}", token,
                 **{"published-min": iso(low), "published-max": iso(high)}))
    assert_valid(espi_schema, xml)
    root = etree.fromstring(xml)
    assert link(root, "self").endswith(f"/Batch/Subscription/{uid}/UsagePoint/{solar_meter}")
    kinds = [kind(e) for e in root.findall(A + "entry")]
    n_bills = kinds.count("UsageSummary")
    assert kinds == (["UsagePoint", "LocalTimeParameters"]
                     + ["MeterReading", "ReadingType", "IntervalBlock", "IntervalBlock"] * 2
                     + ["UsageSummary"] * n_bills)
    assert n_bills <= 1
    mr = root.findall(A + "entry")[2]
    # the MeterReading id names the filtered window
    assert link(mr, "self").endswith(f"/MeterReading/{solar_meter}-{end}-{days[-2]}_kwh_1")
    usage_point = root.findall(A + "entry")[0]
    assert ("related", "espi-feed/ElectricPowerQualitySummary") not in links(usage_point)   # batches omit it
    assert parse_usage_points(xml)[0].local_time.tz_offset == -28800


def test_whole_residential_batch_two_years(live, residential, espi_schema):  # noqa: F811
    """The one full two-year feed of the suite (~14 MB): every local day once, DST included."""
    token = residential["token"]
    start, end = residential["window"]
    days = meterdata.day_starts(start, end)
    resp = requests.get(residential["grant"]["resourceURI"], headers={"Authorization": f"Bearer {token}"},
                        stream=True, timeout=60)
    assert resp.status_code == 200 and "Content-Length" not in resp.headers   # streamed
    xml = b"".join(resp.iter_content(1 << 20))
    root = etree.fromstring(xml)
    all_entries = root.findall(A + "entry")
    kinds = [kind(e) for e in all_entries]
    assert kinds[:4] == ["UsagePoint", "LocalTimeParameters", "MeterReading", "ReadingType"]
    assert kinds.count("IntervalBlock") == len(days) >= 700
    blocks = [e for e in all_entries if kind(e) == "IntervalBlock"]
    lengths = [len(b.find(A + "content")[0].findall(E + "IntervalReading")) for b in blocks]
    assert {92, 96, 100} <= set(lengths)
    assert sum(lengths) == (end - start) // 900
    meter, service_uid = residential["meters"][0]
    assert kinds.count("UsageSummary") == len(meterdata.bills(profile(live, service_uid), start, end))
    # validate the structural entries and a sample of blocks (the whole feed once is enough)
    sample = [e for e in all_entries if kind(e) != "IntervalBlock"] + blocks[:3] + blocks[-3:]
    for entry in sample:
        payload = entry.find(A + "content")[0]
        assert espi_schema.validate(payload), espi_schema.error_log
    assert resp.headers["Content-Type"].startswith("application/atom+xml")


# ---------------------------------------------------------------- RetailCustomer


def test_retail_customer_batch_and_tree(live, commercial, customer_schema):  # noqa: F811
    uid, token = commercial["uid"], commercial["token"]
    assert commercial["grant"]["customerResourceURI"].endswith(f"/RetailCustomer/{uid}")
    xml = ok(get(live, commercial["grant"]["customerResourceURI"], token))
    assert xml == ok(get(live, f"/Batch/RetailCustomer/{uid}", token))
    assert_valid(customer_schema, xml)
    root = etree.fromstring(xml)
    assert root.findtext(A + "title") == "RetailCustomer"
    kinds = [kind(e) for e in root.findall(A + "entry")]
    assert kinds == ["Customer", "CustomerAccount"] + ["CustomerAgreement", "ServiceLocation", "Meter",
                                                       "LocalTimeParameters"] * 4
    by_kind: dict[str, list] = {}
    for e in root.findall(A + "entry"):
        by_kind.setdefault(kind(e), []).append(e)
    customer = by_kind["Customer"][0].find(A + "content")[0]
    assert customer.findtext(C + "customerName") == "COASTSIDE BAKERY & CAFE LLC"
    assert customer.findtext(C + "kind") == "commercialIndustrial"
    assert by_kind["CustomerAccount"][0].find(A + "content")[0].findtext(C + "accountId") == "222222222-2"
    assert [link(e, "self").rsplit("/", 1)[1] for e in by_kind["CustomerAgreement"]] == [
        m for m, _ in commercial["meters"]]
    assert [e.find(A + "content")[0].findtext(C + "agreementId") for e in by_kind["CustomerAgreement"]] == [
        "22100-00000", "22200-00000", "22300-00000", "22400-00000"]
    location = by_kind["ServiceLocation"][0].find(A + "content")[0]
    assert location.findtext(f"{C}UsagePoints/{C}UsagePoint") == (
        f"{live.sandbox_url}{R}/Subscription/{uid}/UsagePoint/{commercial['meters'][0][0]}")
    assert location.findtext(f"{C}mainAddress/{C}townDetail/{C}name") == "HALF MOON BAY"
    assert [e.find(A + "content")[0].findtext(C + "serialNumber") for e in by_kind["Meter"]][0] == "1020000001"
    ids = [link(e, "self").rsplit("/", 1)[1] for e in by_kind["Customer"] + by_kind["Meter"]]
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", i) for i in ids)

    # every self, up and related link of the batch resolves to a valid entry or feed
    seen = set()
    for entry in root.findall(A + "entry"):
        for el in entry.findall(A + "link"):
            href, type_ = el.get("href"), el.get("type")
            if href in seen or not type_.startswith("cust-"):
                continue
            seen.add(href)
            answer = ok(get(live, href, token))
            doc = etree.fromstring(answer)
            if type_.startswith("cust-feed/") and type_.split("/")[1] in ("EndDevice", "ServiceSupplier",
                                                                          "ProgramDateIdMappings"):
                assert doc.findall(A + "entry") == []
                continue
            if type_.endswith("/LocalTimeParameters"):
                continue   # served in the ESPI namespace at the same URL
            assert_valid(customer_schema, answer)
            if type_.startswith("cust-entry/"):
                assert link(doc, "self") == href
    assert len(seen) > 20
    assert get(live, f"/RetailCustomer/{uid}/Customer/nope", token).status_code == 404
    assert get(live, f"/RetailCustomer/{uid}/Bogus", token).status_code == 404


# ---------------------------------------------------------------- Bulk


def test_bulk_carries_every_active_authorization_of_the_client(live, commercial, residential, espi_schema):  # noqa: F811
    resp = requests.post(live.sandbox_url + "/oauth/token", data={"grant_type": "client_credentials"},
                         auth=CLIENT, timeout=10).json()
    assert resp["resourceURI"].endswith(f"/Batch/Bulk/{bulk_id(CLIENT[0])}")
    yesterday = commercial["window"][1]
    xml = ok(get(live, resp["resourceURI"], resp["access_token"], **{"published-min": iso(yesterday)}))
    assert_valid(espi_schema, xml)
    root = etree.fromstring(xml)
    assert link(root, "self").endswith(f"/Batch/Bulk/{bulk_id(CLIENT[0])}")
    subscriptions = {link(e, "self").split("/Subscription/")[1].split("/")[0]
                     for e in root.findall(A + "entry") if kind(e) == "UsagePoint"}
    assert {commercial["uid"], residential["uid"]} <= subscriptions
    assert get(live, "/Batch/Bulk/1", resp["access_token"]).status_code == 404
    assert get(live, resp["resourceURI"], commercial["token"]).status_code == 403
    assert get(live, resp["resourceURI"], client_token(live, OTHER)).status_code == 404


# ---------------------------------------------------------------- filters


def test_query_filters_are_checked_and_applied(live, commercial):
    uid, token = commercial["uid"], commercial["token"]
    meter = commercial["meters"][1][0]
    batch = f"/Batch/Subscription/{uid}/UsagePoint/{meter}"
    for params in ({"published-min": "yesterday"}, {"updated-max": "2025-13-01T00:00:00Z"},
                   {"published-min": "2025-01-01T00:00:00"}, {"max-results": "-1"}, {"start-index": "0"},
                   {"published-min": "2025-02-01T00:00:00Z", "published-max": "2025-01-01T00:00:00Z"}):
        resp = get(live, batch, token, **params)
        assert resp.status_code == 400, params
        assert resp.json()["error"] == "invalid_request" and resp.json()["error_description"]
    # nothing was published in the future: structural entries only
    future = ok(get(live, batch, token, **{"published-min": iso(int(time.time()) + 86400)}))
    assert [kind(e) for e in entries(future)] == ["UsagePoint", "LocalTimeParameters", "MeterReading", "ReadingType"]
    # updated-* narrows like published-*; Z, offsets and a '+' sent unencoded all work
    end = commercial["window"][1]
    one_day = {"updated-min": iso(end), "updated-max": iso(end)}
    assert [kind(e) for e in entries(ok(get(live, batch, token, **one_day)))].count("IntervalBlock") == 1
    local = datetime.fromtimestamp(end, meterdata.TZ).isoformat()
    assert "+" not in local and local.endswith(("-07:00", "-08:00"))
    # extreme but well-formed values are clamped, never an error
    for params in ({"published-min": "0001-01-01T00:00:00Z"}, {"published-max": "9999-12-31T23:59:59+14:00"},
                   {"start-index": str(10**12), "published-min": iso(end)}):
        assert get(live, batch, token, **params).status_code == 200, params
    huge = f"{meter}-4102444800-0_kwh_1"
    blocks = get(live, f"/Subscription/{uid}/UsagePoint/{meter}/MeterReading/{huge}/IntervalBlock", token,
                 **{"published-min": iso(end)})
    numbers = [link(e, "self").rsplit("/", 1)[1] for e in entries(ok(blocks))]
    days_since_1970 = meterdata.local_date(end - 1).toordinal() - date(1970, 1, 1).toordinal()
    assert len(numbers) == 1 and int(numbers[0]) == days_since_1970 + 1     # numbered from the id's window
    for bad in (f"{meter}-4102444801-0_kwh_1", f"{meter}-9999999999999-0_kwh_1"):
        assert get(live, f"/Subscription/{uid}/UsagePoint/{meter}/MeterReading/{bad}/IntervalBlock",
                   token).status_code == 404
    assert get(live, f"/Subscription/{uid}/UsagePoint/{meter}/MeterReading/{huge}/IntervalBlock/9999999",
               token).status_code == 404
    raw = requests.get(f"{live.sandbox_url}{R}{batch}?published-min="
                       f"{datetime.fromtimestamp(end, UTC).strftime('%Y-%m-%dT%H:%M:%S')}+00:00",
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert [kind(e) for e in entries(ok(raw))].count("IntervalBlock") == 1


# ---------------------------------------------------------------- 401 / 403 / 404


def test_token_and_ownership_matrix(live, commercial, residential):
    uid, token = commercial["uid"], commercial["token"]
    meter = commercial["meters"][0][0]
    paths = [f"/Subscription/{uid}", f"/Batch/Subscription/{uid}/UsagePoint/{meter}",
             f"/Subscription/{uid}/UsagePoint", f"/Subscription/{uid}/UsagePoint/{meter}/MeterReading",
             f"/Subscription/{uid}/UsagePoint/{meter}/UsageSummary", f"/LocalTimeParameters/TIMEZONE_{uid}_{meter}",
             f"/Batch/RetailCustomer/{uid}", f"/RetailCustomer/{uid}/Customer"]
    future = {"published-min": iso(int(time.time()) + 86400)}
    for path in paths:
        missing = get(live, path, **future)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer"), path
        unknown = get(live, path, "0" * 64, **future)
        assert unknown.status_code == 401 and 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]
        assert get(live, path, client_token(live), **future).status_code == 403, path
        assert get(live, path, residential["token"], **future).status_code == 404, path
        assert get(live, path, client_token(live, OTHER), **future).status_code == 403, path
        assert get(live, path, api_token(live), **future).status_code == 200, path       # the client's API token
        assert get(live, path, api_token(live, OTHER[0]), **future).status_code == 404, path
    for path in (f"/Subscription/{uid}/UsagePoint/9999999", f"/Subscription/{uid}/UsagePoint/{meter}/MeterReading/x",
                 f"/Subscription/{uid}/UsagePoint/{meter}/MeterReading/{meter}-2-1_kwh_19",   # no solar here
                 f"/Subscription/{uid}/UsagePoint/{meter}/MeterReading/{meter}-1-2_kwh_1",    # window backwards
                 "/ReadingType/nope", f"/ReadingType/{uid}_{meter}_nope", f"/LocalTimeParameters/TIMEZONE_{uid}_1",
                 "/LocalTimeParameters/x", "/Subscription/1/UsagePoint", "/Batch/Subscription/" + "9" * 300,
                 "/Authorization/" + "9" * 300):
        assert get(live, path, token).status_code == 404, path


def test_expired_revoked_and_expired_tokens(live):
    uid, token = direct(live, "residential")
    assert get(live, f"/Subscription/{uid}/UsagePoint", token).status_code == 200
    api = api_token(live)
    with db(live).session() as s:
        s.get(AuthorizationRow, uid).authorized_end = int(time.time()) - 1   # past its end
    assert get(live, f"/Subscription/{uid}/UsagePoint", token).status_code == 404
    assert get(live, f"/Subscription/{uid}/UsagePoint", api).status_code == 404
    uid, token = direct(live, "residential")
    with db(live).session() as s:
        lifecycle.revoke(s, s.get(AuthorizationRow, uid), "customer")
    revoked = get(live, f"/Subscription/{uid}/UsagePoint", token)
    assert revoked.status_code == 401 and "revoked" in revoked.json()["error_description"]
    assert get(live, f"/Subscription/{uid}/UsagePoint", api).status_code == 404
    assert parse_authorization(ok(get(live, f"/Authorization/{uid}", api))).status == 0   # status tells why
    uid, token = direct(live, "residential")
    with db(live).session() as s:
        s.query(TokenRow).filter_by(access_hash=digest(token)).update({"expires": utcnow() - timedelta(seconds=1)})
    expired = get(live, f"/Subscription/{uid}/UsagePoint", token)
    assert expired.status_code == 401 and "expired" in expired.json()["error_description"]


# ---------------------------------------------------------------- scope and test behaviours


def test_what_the_scope_does_not_cover_is_not_served(live, espi_schema):  # noqa: F811
    uid, token = direct(live, scope="FB=1_3_4_5_13")        # intervals only
    meter = parse_usage_points(ok(get(live, f"/Subscription/{uid}/UsagePoint", token)))[0]
    assert not any(h.endswith("/UsageSummary") for h in meter.related)
    assert any(h.endswith("/MeterReading") for h in meter.related)
    denied = get(live, f"/Subscription/{uid}/UsagePoint/{meter.id}/UsageSummary", token)
    assert denied.status_code == 403 and denied.json()["error"] == "insufficient_scope"
    assert 'error="insufficient_scope"' in denied.headers["WWW-Authenticate"]
    assert get(live, f"/Batch/RetailCustomer/{uid}", token).status_code == 403
    assert get(live, f"/RetailCustomer/{uid}/Customer", token).status_code == 403
    assert parse_authorization(ok(get(live, f"/Authorization/{uid}", token))).customer_resource_uri is None
    kinds = {kind(e) for e in entries(ok(get(live, f"/Batch/Subscription/{uid}", token)))}
    assert "UsageSummary" not in kinds and "IntervalBlock" in kinds

    uid, token = direct(live, scope="FB=1_3_13_16", history_days=70)   # bills only
    batch = ok(get(live, f"/Batch/Subscription/{uid}", token))
    assert_valid(espi_schema, batch)
    kinds = [kind(e) for e in entries(batch)]
    assert not {"MeterReading", "ReadingType", "IntervalBlock"} & set(kinds) and "UsageSummary" in kinds
    meter = parse_usage_points(batch)[0]
    assert not any(h.endswith("/MeterReading") for h in meter.related)
    assert get(live, f"/Subscription/{uid}/UsagePoint/{meter.id}/MeterReading", token).status_code == 403
    mr = f"{meter.id}-1-0_kwh_1"
    assert get(live, f"/ReadingType/{uid}_{meter.id}_{mr}", token).status_code == 403


def test_test_behaviours_nointervals_and_failed_logins(live, espi_schema):  # noqa: F811
    uid, token = direct(live, "residential", behaviour="nointervals")
    batch = ok(get(live, f"/Batch/Subscription/{uid}", token))
    assert_valid(espi_schema, batch)
    kinds = [kind(e) for e in entries(batch)]
    assert kinds[:2] == ["UsagePoint", "LocalTimeParameters"] and "MeterReading" not in kinds
    meter = parse_usage_points(batch)[0].id
    assert entries(ok(get(live, f"/Subscription/{uid}/UsagePoint/{meter}/MeterReading", token))) == []
    for behaviour in ("badlogin", "websitedown"):
        uid, token = direct(live, "residential", behaviour=behaviour)
        assert entries(ok(get(live, f"/Batch/Subscription/{uid}", token))) == []
        assert entries(ok(get(live, f"/Subscription/{uid}/UsagePoint", token))) == []


# ---------------------------------------------------------------- readiness


def test_data_feeds_answer_202_until_the_data_is_collected(tmp_path):
    live, servers = start_servers(tmp_path, sandbox_ready_delay=2)
    try:
        uid, token = direct(live, "residential", history_days=5)
        meter = parse_usage_points(ok(get(live, f"/Subscription/{uid}/UsagePoint", token)))[0].id   # meters at once
        waiting = [f"/Batch/Subscription/{uid}", f"/Subscription/{uid}", f"/Batch/RetailCustomer/{uid}",
                   f"/Subscription/{uid}/UsagePoint/{meter}/MeterReading",
                   f"/Subscription/{uid}/UsagePoint/{meter}/UsageSummary",
                   f"/Batch/Subscription/{uid}/UsagePoint/{meter}"]
        for path in waiting:
            early = get(live, path, token)
            assert early.status_code == 202 and early.content == b"", path
            assert 1 <= int(early.headers["Retry-After"]) <= 2
        assert get(live, f"/Authorization/{uid}", token).status_code == 200
        bulk = get(live, f"/Batch/Bulk/{bulk_id(CLIENT[0])}", client_token(live))
        assert bulk.status_code == 200 and entries(bulk.content) == []     # not collected yet: not in the bulk
        time.sleep(int(early.headers["Retry-After"]) + 0.2)
        for path in waiting:
            assert get(live, path, token).status_code == 200, path
    finally:
        for srv in servers:
            srv.shutdown()

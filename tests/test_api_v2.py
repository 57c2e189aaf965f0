"""The sandbox's JSON API v2 over real HTTP: authentication, every endpoint and
filter, the error envelope, each /test-submit scenario, paging walks, revocation,
historical collection and the events a third party receives."""
from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timedelta

import pytest
import requests

from demo.sandbox import jsonapi, meterdata
from demo.sandbox.models import ApiTokenRow, AuthorizationRow, ClientRow, MeterRow, TokenRow
from demo.storage import utcnow
from demo.tokens import digest, new_token

from conftest import Visitor, start_servers
from flow import full_flow

CLIENT = "PCE_ccccccccc"
OTHER = "OTHER_api_v2_client"


def db_of(live):
    return live.sandbox_app.extensions["gbc_sandbox"].db


def make_token(live, client_id: str = CLIENT, expires: datetime | None = None) -> str:
    token = new_token()
    with db_of(live).session() as s:
        s.add(ApiTokenRow(client_id=client_id, token_hash=digest(token), last4=token[-4:], name="tests",
                          expires=expires or utcnow() + timedelta(days=3650)))
    return token


class Api:
    """requests against /api/v2 with one client's API token."""

    def __init__(self, live, token: str) -> None:
        self.live = live
        self.base = live.sandbox_url + "/api/v2"
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, **kwargs) -> requests.Response:
        url = path if path.startswith("http") else self.base + path
        response = requests.request(method, url, headers=self.headers, timeout=30, **kwargs)
        assert response.headers["Content-Type"].startswith("application/json"), (path, response.text[:200])
        return response

    def get(self, path: str, **params) -> requests.Response:
        return self.call("GET", path, params=params)

    def ok(self, path: str, **params) -> dict:
        response = self.get(path, **params)
        assert response.status_code == 200, response.text
        return response.json()

    def post(self, path: str, body=None, **kwargs) -> requests.Response:
        return self.call("POST", path, json=body, **kwargs)

    def patch(self, path: str, body=None) -> requests.Response:
        return self.call("PATCH", path, json=body)

    def form(self) -> str:
        return self.ok("/forms")["forms"][-1]["uid"]

    def submit(self, scenario: str = "residential", form: str | None = None) -> dict:
        response = self.post(f"/forms/{form or self.form()}/test-submit", {"utility": "PCE", "scenario": scenario})
        assert response.status_code == 200, response.text
        return response.json()

    def events(self, authorization_uid: str) -> list[str]:
        """Event types of one authorization, oldest first (once, whatever webhook endpoints exist)."""
        events = self.ok("/events", authorizations=authorization_uid)["events"]
        seen = dict.fromkeys((e["type"], e.get("meter_uid"), e["ts"]) for e in reversed(events))
        return [key[0] for key in seen]


def envelope(response: requests.Response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "error_description", "url"} and body["error"] == error, body
    assert body["error_description"]
    return body


@pytest.fixture(scope="module")
def api(live) -> Api:
    return Api(live, make_token(live))


@pytest.fixture(scope="module")
def other(live) -> Api:
    """A second third party: it must see none of the first one's objects."""
    with db_of(live).session() as s:
        if s.get(ClientRow, OTHER) is None:
            s.add(ClientRow(client_id=OTHER, secret_hash=digest("x"), company_name="Other Co", redirect_uris=[]))
    return Api(live, make_token(live, OTHER))


@pytest.fixture(scope="module")
def oauth_uid(live) -> str:
    """An authorization made by a customer through the OAuth flow."""
    full_flow(Visitor(), live, "residential", "phone")
    with db_of(live).session() as s:
        row = (s.query(AuthorizationRow).filter_by(client_id=CLIENT, source="oauth", status=1)
               .order_by(AuthorizationRow.created.desc()).first())
        return row.uid


# ---------------------------------------------------------------- authentication and envelope


def test_authentication(live, api):
    url = api.base + "/authorizations"
    envelope(requests.get(url, timeout=10), 401, "invalid_request")
    assert requests.get(url, timeout=10).headers["WWW-Authenticate"].startswith("Bearer")
    envelope(requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=10), 401, "invalid_token")
    token = api.headers["Authorization"].split()[1]
    assert requests.get(url, params={"access_token": token, "limit": 1}, timeout=10).status_code == 200
    expired = make_token(live, expires=utcnow() - timedelta(seconds=1))
    envelope(requests.get(url, headers={"Authorization": f"Bearer {expired}"}, timeout=10), 401, "invalid_token")
    oauth = new_token()
    with db_of(live).session() as s:
        s.add(TokenRow(access_hash=digest(oauth), client_id=CLIENT, token_class="client",
                       expires=utcnow() + timedelta(hours=1)))
    envelope(requests.get(url, headers={"Authorization": f"Bearer {oauth}"}, timeout=10), 403, "invalid_token")


def test_unknown_paths_methods_and_bodies_answer_in_the_envelope(api):
    envelope(api.get("/nothing/here"), 404, "not_found")
    envelope(api.get("/authorizations/0000000"), 404, "not_found")
    response = api.call("PUT", "/authorizations")
    envelope(response, 405, "method_not_allowed")
    assert response.headers["Allow"] == "GET"
    envelope(api.post("/authorizations"), 405, "method_not_allowed")   # no CSRF page for the API
    envelope(api.call("POST", f"/forms/{api.form()}/test-submit", data=b"{not json"), 400, "invalid_param")
    envelope(api.post(f"/forms/{api.form()}/test-submit", ["a", "list"]), 400, "invalid_param")


# ---------------------------------------------------------------- test-submit


SCENARIOS = {
    # scenario: (meters, status, authorization notes, meter status, meter notes, has bills, has intervals)
    "residential": (1, "updated", ["access_valid", "meters_full"], "updated", ["bills_full"], True, True),
    "commercial": (4, "updated", ["access_valid", "meters_full"], "updated", ["bills_full"], True, True),
    "badlogin": (0, "errored", ["access_invalid"], None, None, False, False),
    "badlogin_after": (1, "errored", ["access_valid", "meters_full", "access_invalid"], "errored",
                       ["access_invalid"], False, False),
    "websitedown": (0, "errored", ["website_down"], None, None, False, False),
    "websitedown_after": (1, "errored", ["access_valid", "meters_full", "website_down"], "errored",
                          ["website_down"], False, False),
    "utilityerror": (0, "errored", ["utility_error"], None, None, False, False),
    "nointervals": (1, "updated", ["access_valid", "meters_full"], "updated", ["bills_full", "intervals_empty"],
                    True, False),
    "empty": (0, "updated", ["access_valid", "meters_full"], None, None, False, False),
    "revoked": (1, "updated", ["access_valid", "meters_full"], "updated", ["bills_full"], False, False),
}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_submit_scenarios(api, scenario):
    meters, status, notes, meter_status, meter_notes, has_bills, has_intervals = SCENARIOS[scenario]
    form = api.form()
    created = api.submit(scenario, form)
    uid = created["uid"]
    assert created["referral"] == created["referrals"][0] and created["form_uid"] == form
    assert created["is_test"] is True and created["utility"] == "PCE"
    assert created["is_revoked"] is (scenario == "revoked")
    # what CED does next: find it by its referral, meters included
    (found,) = api.ok("/authorizations", referrals=created["referral"], include="meters")["authorizations"]
    assert found["uid"] == uid and found["status"] == status
    assert [n["type"] for n in found["notes"]] == notes
    assert found["status_message"] and found["status_ts"]
    assert len(found["meters"]["meters"]) == meters and found["meters"]["next"] is None
    for meter in found["meters"]["meters"]:
        assert meter["status"] == meter_status
        assert [n["type"] for n in meter["notes"]] == meter_notes
        assert (meter["bill_count"] > 0) is has_bills and (meter["interval_count"] > 0) is has_intervals
        assert meter["base"]["billing_account"] and meter["blocks"] == ["base", "suppliers"]
    if meters:
        bills = api.ok("/bills", authorizations=uid, limit=1)["bills"]
        intervals = api.ok("/intervals", authorizations=uid, limit=1)["intervals"]
        assert bool(bills) is has_bills and bool(intervals) is has_intervals
    types = api.events(uid)
    finished = ("authorization_update_finished_errored" if status == "errored"
                else "authorization_update_finished_successful")
    expected = (["authorization_created", "authorization_update_started"] + ["meter_created"] * meters
                + [finished] + (["authorization_revoked"] if scenario == "revoked" else []))
    assert types == expected


def test_submit_errors(api, other):
    form = api.form()
    envelope(api.post(f"/forms/{form}/test-submit", {"utility": "PCE"}), 400, "required_param_missing")
    envelope(api.post(f"/forms/{form}/test-submit", {"scenario": "residential"}), 400, "required_param_missing")
    envelope(api.post(f"/forms/{form}/test-submit"), 400, "invalid_param")
    envelope(api.post(f"/forms/{form}/test-submit", {"utility": "PG&E", "scenario": "residential"}), 400,
             "invalid_param")
    body = envelope(api.post(f"/forms/{form}/test-submit", {"utility": "PCE", "scenario": "nosuch"}), 400,
                    "invalid_param")
    assert "residential" in body["error_description"] and "commercial" in body["scenarios"]
    envelope(api.post("/forms/000000/test-submit", {"utility": "PCE", "scenario": "residential"}), 404,
             "not_found")
    envelope(other.post(f"/forms/{form}/test-submit", {"utility": "PCE", "scenario": "residential"}), 404,
             "not_found")


def test_pending_until_the_data_is_collected(tmp_path):
    live, servers = start_servers(tmp_path, sandbox_ready_delay=60, sandbox_webhooks=False)
    try:
        api = Api(live, make_token(live))
        created = api.submit("residential")
        assert created["status"] == "pending" and created["status_message"]
        meter = api.ok("/meters", authorizations=created["uid"])["meters"][0]
        assert meter["status"] == "pending" and meter["bill_count"] == 0 and meter["is_expanded"] is False
        assert api.ok("/bills", authorizations=created["uid"])["bills"] == []
        assert api.events(created["uid"]) == ["authorization_created", "authorization_update_started",
                                              "meter_created"]   # finished is in the future
        assert "gbc_webhooks" not in live.sandbox_app.extensions
    finally:
        for srv in servers:
            srv.shutdown()


# ---------------------------------------------------------------- authorizations


def test_authorization_filters_include_and_paging(api):
    form = api.form()
    a, b, c = (api.submit(s, form)["uid"] for s in ("residential", "commercial", "badlogin"))
    uids = f"{a},{b},{c}"
    listing = api.ok("/authorizations", uids=uids)
    assert [x["uid"] for x in listing["authorizations"]] == [c, b, a]   # newest first
    assert listing["next"] is None and "meters" not in listing["authorizations"][0]
    assert len(api.ok("/authorizations", uids=uids, is_test="true")["authorizations"]) == 3
    assert api.ok("/authorizations", uids=uids, is_test="false")["authorizations"] == []
    assert len(api.ok("/authorizations", uids=uids, forms=form)["authorizations"]) == 3
    assert api.ok("/authorizations", uids=uids, forms="999999")["authorizations"] == []
    assert api.ok("/authorizations", uids=uids, templates="397hcu30")["authorizations"] == []
    assert len(api.ok("/authorizations", uids=uids, utility="PCE")["authorizations"]) == 3
    assert api.ok("/authorizations", uids=uids, utility="PG&E")["authorizations"] == []
    for flag in ("is_declined", "is_revoked", "is_expired", "is_archived"):
        assert len(api.ok("/authorizations", uids=uids, **{flag: "false"})["authorizations"]) == 3
        assert api.ok("/authorizations", uids=uids, **{flag: "true"})["authorizations"] == []
    # PATCH is_archived, the only modifiable field
    patched = api.patch(f"/authorizations/{a}", {"is_archived": True})
    assert patched.status_code == 200 and patched.json()["is_archived"] is True
    assert [x["uid"] for x in api.ok("/authorizations", uids=uids, is_archived="true")["authorizations"]] == [a]
    envelope(api.patch(f"/authorizations/{a}", {"nickname": "x"}), 400, "invalid_param")
    envelope(api.patch(f"/authorizations/{a}", {"is_archived": "yes"}), 400, "invalid_param")
    envelope(api.patch(f"/authorizations/{a}", {}), 400, "required_param_missing")
    # include=meters nests a MeterListing
    nested = api.ok(f"/authorizations/{b}", include="meters")["meters"]
    assert len(nested["meters"]) == 4 and nested["next"] is None
    assert {m["authorization_uid"] for m in nested["meters"]} == {b}
    # paging by next links (which never carry the token) and by after
    seen, url = [], api.base + f"/authorizations?uids={uids}&limit=1"
    while url:
        assert "access_token" not in url
        page = api.call("GET", url).json()
        seen += [x["uid"] for x in page["authorizations"]]
        url = page["next"]
    assert seen == [c, b, a]
    assert [x["uid"] for x in api.ok("/authorizations", uids=uids, after=c)["authorizations"]] == [b, a]
    envelope(api.get("/authorizations", after="nope"), 400, "invalid_param")
    envelope(api.get("/authorizations", limit="0"), 400, "invalid_param")
    envelope(api.get("/authorizations", is_test="maybe"), 400, "invalid_param")
    envelope(api.get("/authorizations", include="bills"), 400, "invalid_param")


def test_oauth_authorization_object_and_events(api, oauth_uid):
    obj = api.ok(f"/authorizations/{oauth_uid}")
    assert obj["status"] == "updated" and obj["form_uid"] is None and obj["referrals"] == []
    assert obj["customer_signature"]["type"] == "confirmation"
    assert obj["scope"]["expires"] == obj["expires"] and not obj["is_expired"]
    assert obj["created"].endswith("+00:00") and len(obj["created"]) == 32
    assert api.events(oauth_uid) == ["authorization_created", "authorization_update_started", "meter_created",
                                     "authorization_update_finished_successful"]


def test_delete_only_test_submits(api, other, oauth_uid):
    uid = api.submit("commercial")["uid"]
    meters = [m["uid"] for m in api.ok("/meters", authorizations=uid)["meters"]]
    envelope(other.call("DELETE", f"/authorizations/{uid}"), 404, "not_found")
    deleted = api.call("DELETE", f"/authorizations/{uid}")
    assert deleted.status_code == 200 and deleted.json() == {"success": True}
    envelope(api.get(f"/authorizations/{uid}"), 404, "not_found")
    envelope(api.get(f"/meters/{meters[0]}"), 404, "not_found")
    envelope(api.call("DELETE", f"/authorizations/{oauth_uid}"), 400, "invalid_param")


def test_revoke_ends_tokens_data_and_sends_an_event(live, api, other):
    full_flow(Visitor(), live, "residential", "account")
    with db_of(live).session() as s:
        row = (s.query(AuthorizationRow).filter_by(client_id=CLIENT, source="oauth", status=1)
               .order_by(AuthorizationRow.created.desc()).first())
        uid = row.uid
        access = new_token()
        s.add(TokenRow(access_hash=digest(access), client_id=CLIENT, authorization_uid=uid, token_class="access",
                       scope=row.scope, expires=utcnow() + timedelta(hours=1)))
    espi = f"{live.sandbox_url}/DataCustodian/espi/1_1/resource/Authorization/{uid}"
    assert requests.get(espi, headers={"Authorization": f"Bearer {access}"}, timeout=10).status_code == 200
    assert api.ok("/bills", authorizations=uid, limit=1)["bills"]
    envelope(other.post(f"/authorizations/{uid}/revoke"), 404, "not_found")
    revoked = api.post(f"/authorizations/{uid}/revoke")
    assert revoked.status_code == 200, revoked.text
    body = revoked.json()
    assert body["uid"] == uid and body["is_revoked"] is True and body["revoked"].endswith("+00:00")
    assert requests.get(espi, headers={"Authorization": f"Bearer {access}"}, timeout=10).status_code == 401
    with db_of(live).session() as s:
        assert all(t.revoked for t in s.query(TokenRow).filter_by(authorization_uid=uid))
    assert api.events(uid)[-1] == "authorization_revoked"
    assert api.ok("/bills", authorizations=uid)["bills"] == []           # revoke deletes the data
    assert api.ok("/meters", authorizations=uid)["meters"][0]["interval_count"] == 0
    again = api.post(f"/authorizations/{uid}/revoke")
    assert again.status_code == 200 and api.events(uid).count("authorization_revoked") == 1
    assert [x["uid"] for x in api.ok("/authorizations", uids=uid, is_revoked="true")["authorizations"]] == [uid]


def test_other_clients_see_nothing(api, other):
    uid = api.submit("residential")["uid"]
    meter = api.ok("/meters", authorizations=uid)["meters"][0]["uid"]
    assert other.ok("/authorizations", uids=uid)["authorizations"] == []
    assert other.ok("/meters", uids=meter)["meters"] == []
    assert other.ok("/events", authorizations=uid)["events"] == []
    envelope(other.get(f"/authorizations/{uid}"), 404, "not_found")
    envelope(other.get(f"/meters/{meter}"), 404, "not_found")
    envelope(other.patch(f"/meters/{meter}", {"is_archived": True}), 404, "not_found")
    envelope(other.get("/bills", authorizations=uid), 404, "not_found")
    envelope(other.get("/intervals", meters=meter), 404, "not_found")
    envelope(other.post("/meters/historical-collection", {"meters": [meter]}), 404, "not_found")


# ---------------------------------------------------------------- meters and historical collection


def test_meter_list_get_and_patch(api):
    uid = api.submit("commercial")["uid"]
    meters = api.ok("/meters", authorizations=uid)["meters"]
    assert len(meters) == 4 and [m["base"]["meter_numbers"][0] for m in meters] == sorted(
        m["base"]["meter_numbers"][0] for m in meters)   # the customer's order
    first = meters[0]
    assert api.ok(f"/meters/{first['uid']}", expand_meter_blocks="true") == first
    assert first["bill_coverage"][0][0].endswith(("-07:00", "-08:00"))
    assert first["suppliers"][0]["supplier_name"] == "Peninsula Clean Energy"
    assert [m["uid"] for m in api.ok("/meters", uids=first["uid"])["meters"]] == [first["uid"]]
    assert len(api.ok("/meters", authorizations=uid, is_activated="true")["meters"]) == 4
    assert api.ok("/meters", authorizations=uid, is_monitored="true")["meters"] == []
    patched = api.patch(f"/meters/{first['uid']}", {"is_archived": True})
    assert patched.status_code == 200 and patched.json()["is_archived"] is True
    assert [m["uid"] for m in api.ok("/meters", authorizations=uid, is_archived="true")["meters"]] == [first["uid"]]
    envelope(api.patch(f"/meters/{first['uid']}", {"is_archived": True, "status": "x"}), 400, "invalid_param")
    page = api.ok("/meters", authorizations=uid, limit=3)
    assert len(page["meters"]) == 3 and "after=" in page["next"]
    rest = api.call("GET", page["next"]).json()
    assert len(rest["meters"]) == 1 and rest["next"] is None
    envelope(api.get("/meters", expand_meter_blocks="perhaps"), 400, "invalid_param")


def test_historical_collection(api):
    active = api.submit("residential")["uid"]
    nointervals = api.submit("nointervals")["uid"]
    gone = api.submit("revoked")["uid"]
    meter_of = {uid: api.ok("/meters", authorizations=uid)["meters"][0]["uid"] for uid in (active, nointervals, gone)}
    ok = api.post("/meters/historical-collection",
                  {"meters": [meter_of[active], int(meter_of[nointervals]), meter_of[gone]], "collection_duration": 12})
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"success": True, "meters": [meter_of[active], meter_of[nointervals]],
                         "collection_duration": 12}
    tail = ["meter_historical_collection_started", "meter_intervals_added", "meter_bills_added",
            "meter_historical_collection_finished_successful"]
    assert api.events(active)[-4:] == tail
    assert api.events(nointervals)[-3:] == [t for t in tail if t != "meter_intervals_added"]
    assert "meter_historical_collection_started" not in api.events(gone)
    default = api.post("/meters/historical-collection", {"meters": [meter_of[active]]})
    assert default.json()["collection_duration"] == 36
    envelope(api.post("/meters/historical-collection", {"meters": [meter_of[gone]]}), 400, "expired_or_revoked")
    envelope(api.post("/meters/historical-collection", {}), 400, "required_param_missing")
    for bad in ({"meters": meter_of[active]}, {"meters": []}, {"meters": [meter_of[active]], "collection_duration": 0},
                {"meters": [meter_of[active]], "collection_duration": 37},
                {"meters": [meter_of[active]], "collection_duration": "12"}):
        envelope(api.post("/meters/historical-collection", bad), 400, "invalid_param")
    envelope(api.post("/meters/historical-collection", {"meters": ["1"]}), 404, "not_found")


# ---------------------------------------------------------------- bills and intervals


def expected_data(live, authorization_uid: str) -> list[tuple[meterdata.MeterProfile, tuple[int, int]]]:
    """(profile, data window) per meter, straight from meterdata, as the ESPI side computes them."""
    directory = live.sandbox_app.extensions["gbc_sandbox"].directory
    with db_of(live).session() as s:
        row = s.get(AuthorizationRow, authorization_uid)
        meters = s.query(MeterRow).filter_by(authorization_uid=authorization_uid).order_by(MeterRow.position).all()
    customer = directory.by_account(row.account_number)
    now = int(datetime.now().timestamp())
    out = []
    for meter in meters:
        service = next(m for m in customer.meters if m.uid == meter.service_uid)
        out.append((meterdata.profile(customer, service), meterdata.data_window(row.history_start, now)))
    return out


def test_bills_come_from_meterdata(live, api):
    envelope(api.get("/bills"), 400, "required_param_missing")
    envelope(api.get("/bills", authorizations="0000000"), 404, "not_found")
    uid = api.submit("residential")["uid"]
    ((p, window),) = expected_data(live, uid)
    expected = meterdata.bills(p, *window)
    bills = api.ok("/bills", authorizations=uid)["bills"]
    assert len(bills) == len(expected) >= 23
    assert [b["base"]["bill_start_date"] for b in bills] == [jsonapi.local_ts(b.start) for b in reversed(expected)]
    for got, want in zip(reversed(bills), expected, strict=True):
        assert got["base"]["bill_total_kwh"] == want.consumption / 1e6
        assert got["base"]["bill_total_cost"] == want.cost / 1e5
        assert got["base"]["bill_end_date"] == jsonapi.local_ts(want.end)
        assert [i["name"] for i in got["line_items"]] == [i.name for i in want.line_items]
        assert [i["cost"] for i in got["line_items"]] == [i.cost / 1e5 for i in want.line_items]
        assert got["uid"].endswith(want.uid) and got["sources"][0]["type"] == "greenbutton_cmd"
    earliest = api.ok("/bills", authorizations=uid, order="earliest_first")["bills"]
    assert earliest == list(reversed(bills))
    # paging walk
    seen, url = [], f"{api.base}/bills?authorizations={uid}&limit=5"
    while url:
        page = api.call("GET", url).json()
        seen += [b["uid"] for b in page["bills"]]
        url = page["next"]
    assert seen == [b["uid"] for b in bills] and len(set(seen)) == len(seen)
    # start/end (a date is a local midnight) keep bills overlapping the range
    mid = expected[len(expected) // 2]
    day = meterdata.local_date(mid.start + 86400).isoformat()
    ranged = api.ok("/bills", authorizations=uid, start=day, end=day + "T12:00:00")["bills"]
    assert [b["uid"] for b in ranged] == [f"{bills[0]['meter_uid']}-{mid.uid}"]
    envelope(api.get("/bills", authorizations=uid, start="soon"), 400, "invalid_param")
    envelope(api.get("/bills", authorizations=uid, start=day, end=day), 400, "invalid_param")
    envelope(api.get("/bills", authorizations=uid, order="random"), 400, "invalid_param")


def test_bills_of_several_meters(live, api):
    uid = api.submit("commercial")["uid"]
    expected = sum(len(meterdata.bills(p, *w)) for p, w in expected_data(live, uid))
    meters = [m["uid"] for m in api.ok("/meters", authorizations=uid)["meters"]]
    assert len(api.ok("/bills", authorizations=uid)["bills"]) == expected
    assert len(api.ok("/bills", meters=",".join(meters[:2]))["bills"]) < expected
    assert len(api.ok("/bills", meters=meters[0], authorizations=uid)["bills"]) < expected


def test_interval_walk_covers_the_whole_window(live, api):
    uid = api.submit("residential")["uid"]
    ((p, (start, end)),) = expected_data(live, uid)
    meter = api.ok("/meters", authorizations=uid)["meters"][0]
    values = dict(meterdata.readings(p, meterdata.FORWARD, start, end))
    assert meter["interval_count"] == len(values) == (end - start) // 900
    assert meter["interval_coverage"] == [[jsonapi.local_ts(start), jsonapi.local_ts(end)]]
    objects, url, pages = [], f"{api.base}/intervals?meters={meter['uid']}&limit=366", 0
    while url:
        page = json.loads(api.call("GET", url).content)   # .json() would guess the charset of 7 MB
        objects += page["intervals"]
        url, pages = page["next"], pages + 1
    assert pages == 2 and len(objects) == len(meterdata.day_starts(start, end))
    assert len({o["uid"] for o in objects}) == len(objects)
    assert {(o["meter_uid"], o["authorization_uid"]) for o in objects} == {(meter["uid"], uid)}
    readings = [r for o in reversed(objects) for r in o["readings"]]        # latest day first
    assert [r["kwh"] for r in readings] == [v / 1e6 for _t, v in sorted(values.items())]
    for r in readings[::997]:
        t = int(datetime.fromisoformat(r["start"]).timestamp())
        assert r["kwh"] == values[t] / 1e6 and r["end"] == jsonapi.local_ts(t + 900)
    sizes = {len(o["readings"]) for o in objects}
    assert sizes == {92, 96, 100}   # two years hold both DST changes
    assert objects[0]["readings"][-1]["end"] == jsonapi.local_ts(end)       # latest first


def test_interval_paging_clipping_and_errors(live, api):
    uid = api.submit("commercial")["uid"]
    meters = [m["uid"] for m in api.ok("/meters", authorizations=uid)["meters"]]
    page = api.ok("/intervals", authorizations=uid, limit=10)
    assert [o["meter_uid"] for o in page["intervals"][:4]] == meters   # one day of every meter, in order
    assert len({o["uid"].split("-")[1] for o in page["intervals"]}) == 3 and page["next"]
    solar = page["intervals"][3]["readings"][0]["datapoints"]
    assert [d["type"] for d in solar] == ["fwd", "rev", "net"]
    assert [d["type"] for d in page["intervals"][0]["readings"][0]["datapoints"]] == ["fwd", "net"]
    day = date.today() - timedelta(days=10)
    clipped = api.ok("/intervals", meters=meters[0], start=f"{day}T12:00:00", end=str(day + timedelta(days=2)),
                     order="earliest_first")["intervals"]
    assert [len(o["readings"]) for o in clipped] in ([48, 96], [48, 92], [48, 100], [46, 96], [50, 96])
    assert clipped[0]["readings"][0]["start"].startswith(f"{day}T12:00:00")
    envelope(api.get("/intervals"), 400, "required_param_missing")
    envelope(api.get("/intervals", authorizations=uid, limit=367), 400, "invalid_param")
    envelope(api.get("/intervals", authorizations=uid, start="2026-02-30"), 400, "invalid_param")
    nothing = api.ok("/intervals", authorizations=api.submit("nointervals")["uid"])
    assert nothing == {"intervals": [], "next": None}


# ---------------------------------------------------------------- events and forms


def test_events_list_get_and_patch(api, other):
    uid = api.submit("commercial")["uid"]
    events = api.ok("/events", authorizations=uid)["events"]
    events = [e for e in events if e["delivery_target"] == events[0]["delivery_target"]]   # one target's copy
    assert len(events) == 7 and events[0]["type"] == "authorization_update_finished_successful"
    assert [e["ts"] for e in events] == sorted((e["ts"] for e in events), reverse=True)
    created = api.ok("/events", authorizations=uid, types="meter_created")["events"]
    assert len({e["meter_uid"] for e in created}) == 4 and all(e["meter_uid"] for e in created)
    first = events[-1]
    assert api.ok(f"/events/{first['uid']}") == first
    assert set(first) == {"uid", "type", "ts", "delivery_method", "delivery_target", "is_delivered",
                          "authorization_uid"}
    page = api.ok("/events", authorizations=uid, limit=2)
    assert len(page["events"]) == 2 and page["next"]
    assert api.call("GET", page["next"]).json()["events"][0]["uid"] not in {e["uid"] for e in page["events"]}
    patched = api.patch(f"/events/{first['uid']}", {"is_delivered": True})
    assert patched.status_code == 200 and patched.json()["is_delivered"] is True
    assert first["uid"] in [e["uid"] for e in api.ok("/events", authorizations=uid, is_delivered="true")["events"]]
    envelope(api.patch(f"/events/{first['uid']}", {"is_delivered": "yes"}), 400, "invalid_param")
    envelope(other.get(f"/events/{first['uid']}"), 404, "not_found")
    envelope(other.patch(f"/events/{first['uid']}", {"is_delivered": False}), 404, "not_found")


def test_forms(live, api):
    fresh = Api(live, make_token(live, _fresh_client(live)))
    forms = fresh.ok("/forms")["forms"]
    assert len(forms) == 1 and fresh.ok("/forms")["forms"] == forms    # made once, on first use
    form = forms[0]
    assert form["utility"] == "PCE" and form["scope"] == {"expires": "3y", "ongoing_end": None}
    assert "/oauth/authorize?" in form["url"]
    made = fresh.post("/forms", {"customer_email": "pat@example.com", "scope": {"expires": "1y"}})
    assert made.status_code == 200, made.text
    uid = made.json()["uid"]
    assert fresh.ok(f"/forms/{uid}")["customer_email"] == "pat@example.com"
    assert [e["type"] for e in fresh.ok("/events")["events"]] == ["form_created", "form_created"]
    submitted = fresh.submit("residential", uid)
    assert submitted["customer_email"] == "pat@example.com"
    assert 364 <= (datetime.fromisoformat(submitted["expires"]) - datetime.fromisoformat(submitted["created"])).days
    envelope(fresh.post("/forms", {"scope": "x"}), 400, "invalid_param")
    envelope(fresh.post("/forms", {"colour": "green"}), 400, "invalid_param")
    envelope(fresh.post("/forms", {"utility": "PG&E"}), 400, "invalid_param")
    envelope(api.get(f"/forms/{uid}"), 404, "not_found")


def _fresh_client(live) -> str:
    client_id = "FRESH_" + new_token(4)
    with db_of(live).session() as s:
        s.add(ClientRow(client_id=client_id, secret_hash=digest("x"), company_name="Fresh", redirect_uris=[]))
    return client_id


def test_responses_are_plain_json(api):
    response = api.get("/authorizations", limit=1)
    assert response.headers["Content-Type"] == "application/json"
    json.loads(response.content)


def test_export_links_serve_csv(api):
    created = api.submit("residential")
    uid = created["uid"]
    meter = api.ok("/meters", authorizations=uid)["meters"][0]
    bills = api.ok("/bills", authorizations=uid, order="earliest_first")["bills"]

    def rows(url):
        response = requests.get(url, headers=api.headers, timeout=30)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/csv")
        return list(csv.reader(io.StringIO(response.text)))

    meters_csv = rows(created["exports"]["meters_csv"])
    assert meters_csv[0][:2] == ["meter_uid", "authorization_uid"] and meters_csv[1][:2] == [meter["uid"], uid]
    bills_csv = rows(created["exports"]["bills_combined_csv"])
    assert [r[1] for r in bills_csv[1:]] == [b["uid"] for b in bills]
    assert [float(r[6]) for r in bills_csv[1:]] == [b["base"]["bill_total_kwh"] for b in bills]
    intervals_csv = rows(meter["exports"]["intervals_csv"])
    assert len(intervals_csv) - 1 == meter["interval_count"]
    envelope(api.get("/files/secrets_csv", meters=meter["uid"]), 404, "not_found")
    envelope(api.get("/files/meters_csv"), 400, "required_param_missing")

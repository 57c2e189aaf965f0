"""The JSON API's builders and rules without HTTP: timestamps, parameters, paging,
statuses per test behaviour, and numbers taken from meterdata."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta

import pytest

from demo.config import load_config
from demo.lookup import CustomerDirectory
from demo.paths import CONFIG
from demo.sandbox import jsonapi, meterdata, testsubmit
from demo.sandbox.jsonapi import ApiError, View
from demo.sandbox.models import AuthorizationRow, ClientRow, EventRow, MeterRow

from conftest import FIXTURES

NOW = datetime(2026, 5, 1, 17, 2, 11, 123456)   # naive UTC, as stored
DIRECTORY = CustomerDirectory.from_file(CONFIG / "pce-customers.toml")
SETTINGS = {**load_config({"instance_path": "/nonexistent", "secret_key": "x"}, env={}),
            "sandbox_url": "http://sandbox.test"}


def view(now: datetime = NOW) -> View:
    return View(SETTINGS, DIRECTORY, ClientRow(client_id="PCE_ccccccccc", user_email="dev@example.com",
                                                user_uid="1337"), now)


def authorization(behaviour: str = "normal", scenario: str = "residential", *, ready_in: int = 0,
                  **fields) -> AuthorizationRow:
    customer = DIRECTORY.scenario(scenario)
    created = NOW - timedelta(minutes=5)
    epoch = jsonapi.to_epoch(created)
    row = AuthorizationRow(uid="5210090", client_id="PCE_ccccccccc", scenario=scenario,
                           account_number=customer.account_number, customer_email=customer.email, status=1,
                           scope="FB=1_3_4_5_13_16_51", meter_uids=["1902729"] if customer.meters else [],
                           history_start=epoch - 2 * 365 * 86400, authorized_start=epoch,
                           authorized_end=epoch + 3 * 365 * 86400, is_test=True, source="test-submit",
                           behaviour=behaviour, referrals=[], is_archived=False, created=created,
                           ready_at=NOW + timedelta(seconds=ready_in), expired_notified=False)
    for key, value in fields.items():
        setattr(row, key, value)
    return row


def meter_of(row: AuthorizationRow, position: int = 0) -> MeterRow:
    customer = DIRECTORY.by_account(row.account_number)
    return MeterRow(uid=f"190272{position}", authorization_uid=row.uid, service_uid=customer.meters[position].uid,
                    position=position, created=row.created, is_archived=False)


# ---------------------------------------------------------------- time and parameters


def test_timestamps_follow_the_reference_formats():
    assert jsonapi.system_ts(NOW) == "2026-05-01T17:02:11.123456+00:00"
    assert jsonapi.system_ts(None) is None
    assert jsonapi.local_ts(meterdata.midnight(date(2026, 4, 30))) == "2026-04-30T00:00:00.000000-07:00"
    assert jsonapi.local_ts(meterdata.midnight(date(2026, 1, 7))) == "2026-01-07T00:00:00.000000-08:00"
    assert jsonapi.epoch_ts(0) is None


@pytest.mark.parametrize("text,expected", [
    ("2026-01-31", meterdata.midnight(date(2026, 1, 31))),
    ("2026-01-31T00:00:00", meterdata.midnight(date(2026, 1, 31))),          # local when no offset
    ("2026-01-31T08:00:00Z", meterdata.midnight(date(2026, 1, 31))),
    ("2026-01-31T08:00:00+00:00", meterdata.midnight(date(2026, 1, 31))),
    ("2026-01-31T00:00:00 -08:00", meterdata.midnight(date(2026, 1, 31))),   # "+" decoded as a space
    ("2026-01-31T08:00:00 00:00", meterdata.midnight(date(2026, 1, 31))),
])
def test_start_and_end_accept_iso8601_and_dates(text, expected):
    assert jsonapi.parse_when(text, "start") == expected


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "31/01/2026", "2026-01-31T25:00"])
def test_bad_times_are_invalid_param(text):
    with pytest.raises(ApiError) as err:
        jsonapi.parse_when(text, "start")
    assert err.value.status == 400 and err.value.error == "invalid_param"
    assert set(err.value.body()) == {"error", "error_description", "url"}


def test_parameter_parsers():
    assert jsonapi.parse_bool({"is_test": "TRUE"}, "is_test") is True
    assert jsonapi.parse_bool({}, "is_test") is None
    assert jsonapi.parse_list({"uids": " 1, 2,,3 "}, "uids") == ["1", "2", "3"]
    assert jsonapi.parse_limit({}) == 1000
    assert jsonapi.parse_order({}) is True and jsonapi.parse_order({"order": "earliest_first"}) is False
    for call in (lambda: jsonapi.parse_bool({"x": "maybe"}, "x"), lambda: jsonapi.parse_list({"u": ","}, "u"),
                 lambda: jsonapi.parse_limit({"limit": "0"}), lambda: jsonapi.parse_limit({"limit": "1001"}),
                 lambda: jsonapi.parse_limit({"limit": "-1"}), lambda: jsonapi.parse_order({"order": "random"}),
                 lambda: jsonapi.parse_include({"include": "bills"})):
        with pytest.raises(ApiError) as err:
            call()
        assert err.value.error == "invalid_param"


def test_paginate_walks_every_item_once():
    items = [str(i) for i in range(10)]
    seen, after = [], None
    while True:
        page, after = jsonapi.paginate(items, str, after, 3)
        seen += page
        if after is None:
            break
    assert seen == items
    with pytest.raises(ApiError):
        jsonapi.paginate(items, str, "nope", 3)


def test_next_url_keeps_the_query_but_never_the_token():
    url = view().next_url("/bills", {"meters": "1,2", "access_token": "secret-token", "after": "x"}, "42")
    assert url == "http://sandbox.test/api/v2/bills?meters=1%2C2&after=42"
    assert view().next_url("/bills", {}, None) is None


# ---------------------------------------------------------------- statuses


def test_authorization_object_has_every_field_of_the_eddie_fixture():
    fixture = json.loads((FIXTURES / "json" / "eddie" / "authorization.json").read_text())
    obj = jsonapi.authorization_object(view(), authorization())
    assert set(fixture) <= set(obj)
    assert obj["status"] == "updated" and obj["status_message"] == "Meters found!"
    assert [n["type"] for n in obj["notes"]] == ["access_valid", "meters_full"]
    assert obj["utility"] == "PCE" and obj["is_test"] is True and obj["user_uid"] == "1337"
    json.dumps(obj)   # serialisable as is


@pytest.mark.parametrize("behaviour,status,notes", [
    ("normal", "updated", ["access_valid", "meters_full"]),
    ("nointervals", "updated", ["access_valid", "meters_full"]),
    ("badlogin", "errored", ["access_invalid"]),
    ("websitedown", "errored", ["website_down"]),
    ("utilityerror", "errored", ["utility_error"]),
    ("badlogin_after", "errored", ["access_valid", "meters_full", "access_invalid"]),
    ("websitedown_after", "errored", ["access_valid", "meters_full", "website_down"]),
])
def test_status_per_behaviour(behaviour, status, notes):
    got, message, _ts, got_notes = jsonapi.authorization_status(authorization(behaviour), NOW)
    assert got == status and [n["type"] for n in got_notes] == notes
    if behaviour.startswith("websitedown"):
        assert "website down" in message.lower()
    pending, _m, _t, _n = jsonapi.authorization_status(authorization(behaviour, ready_in=60), NOW)
    assert pending == "pending"


def test_declined_revoked_and_expired_fields():
    row = authorization(status=2, declined_at=NOW)
    obj = jsonapi.authorization_object(view(), row)
    assert obj["is_declined"] and obj["declined"] == jsonapi.system_ts(NOW) and not obj["is_expired"]
    row = authorization(status=0, revoked_at=NOW)
    obj = jsonapi.authorization_object(view(), row)
    assert obj["is_revoked"] and obj["revoked"] == jsonapi.system_ts(NOW)
    row = authorization(authorized_end=jsonapi.to_epoch(NOW) - 1)
    assert jsonapi.authorization_object(view(), row)["is_expired"] is True


# ---------------------------------------------------------------- numbers from meterdata


def test_meter_counts_and_bills_come_from_meterdata():
    row = authorization()
    data = jsonapi.meter_data(view(), row, meter_of(row))
    customer = DIRECTORY.scenario("residential")
    p = meterdata.profile(customer, customer.meters[0])
    window = meterdata.data_window(row.history_start, jsonapi.to_epoch(NOW))
    assert data.window == window
    obj = jsonapi.meter_object(view(), data)
    expected = meterdata.bills(p, *window)
    assert obj["bill_count"] == len(expected) >= 23
    assert obj["interval_count"] == sum(1 for _ in meterdata.readings(p, meterdata.FORWARD, *window))
    assert obj["base"]["service_identifier"] == customer.meters[0].service_identifier
    assert obj["base"]["billing_account"] == customer.account_number
    assert obj["suppliers"][0]["supplier_name"] == "Peninsula Clean Energy"
    bill = jsonapi.bill_object(view(), data, expected[-1])
    assert bill["base"]["bill_total_kwh"] == expected[-1].consumption / 1e6
    assert bill["base"]["bill_total_cost"] == expected[-1].cost / 1e5
    assert round(sum(i["cost"] for i in bill["line_items"]), 5) == round(expected[-1].cost / 1e5, 5)
    assert bill["uid"] == f"{data.meter.uid}-{expected[-1].uid}"


@pytest.mark.parametrize("behaviour,ready_in,fields", [
    ("badlogin_after", 0, {}), ("websitedown_after", 0, {}), ("normal", 60, {}),
    ("normal", 0, {"status": 0}), ("normal", 0, {"status": 2}),
])
def test_no_data_while_pending_failed_revoked_or_declined(behaviour, ready_in, fields):
    row = authorization(behaviour, ready_in=ready_in, **fields)
    obj = jsonapi.meter_object(view(), jsonapi.meter_data(view(), row, meter_of(row)))
    assert obj["bill_count"] == 0 and obj["interval_count"] == 0 and obj["bill_coverage"] == []


def test_nointervals_has_bills_only():
    row = authorization("nointervals")
    obj = jsonapi.meter_object(view(), jsonapi.meter_data(view(), row, meter_of(row)))
    assert obj["bill_count"] > 0 and obj["interval_count"] == 0
    assert "intervals_empty" in [n["type"] for n in obj["notes"]]


def test_solar_readings_have_fwd_rev_and_net():
    row = authorization(scenario="commercial")
    data = jsonapi.meter_data(view(), row, meter_of(row, 3))
    assert data.profile.flows == (meterdata.FORWARD, meterdata.REVERSE)
    day = meterdata.midnight(date(2025, 6, 21))
    readings = jsonapi.interval_readings(data, day, day + 86400)
    fwd = dict(meterdata.readings(data.profile, meterdata.FORWARD, day, day + 86400))
    rev = dict(meterdata.readings(data.profile, meterdata.REVERSE, day, day + 86400))
    assert len(readings) == 96 and any(v for v in rev.values())
    for reading, t in zip(readings, sorted(fwd), strict=True):
        points = {p["type"]: p["value"] for p in reading["datapoints"]}
        assert points == {"fwd": fwd[t] / 1e6, "rev": rev[t] / 1e6, "net": (fwd[t] - rev[t]) / 1e6}
        assert reading["kwh"] == points["net"]
        assert reading["start"] == jsonapi.local_ts(t)


def test_interval_object_of_a_dst_day():
    row = authorization()
    data = jsonapi.meter_data(view(), row, meter_of(row))
    spring = meterdata.midnight(date(2026, 3, 8))
    obj = jsonapi.interval_object(view(), data, spring, spring, meterdata.midnight(date(2026, 3, 9)))
    assert obj["uid"] == f"{data.meter.uid}-20260308" and len(obj["readings"]) == 92
    assert obj["readings"][8]["start"] == "2026-03-08T03:00:00.000000-07:00"
    assert obj["base"]["qualities"] == ["revenue"] and "billing_account" not in obj["base"]


def test_event_object_has_only_the_keys_that_apply():
    row = EventRow(uid="123456789", client_id="PCE_ccccccccc", type="meter_created", ts=NOW,
                   authorization_uid="1", meter_uid="2", endpoint_id=None, is_delivered=False)
    obj = jsonapi.event_object(row)
    assert obj == {"uid": "123456789", "type": "meter_created", "ts": "2026-05-01T17:02:11.123456+00:00",
                   "delivery_method": None, "delivery_target": None, "is_delivered": False,
                   "authorization_uid": "1", "meter_uid": "2"}


def test_scenarios_offered_follow_the_customer_file():
    names = testsubmit.available(DIRECTORY)
    for name in ("residential", "commercial", "badlogin", "badlogin_after", "websitedown", "websitedown_after",
                 "nointervals"):
        assert name in names
    assert testsubmit.available(CustomerDirectory([])) == []

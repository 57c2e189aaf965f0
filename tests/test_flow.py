"""The whole flow over real HTTP on loopback: the demo site and the sandbox
custodian on separate ports, driven the way a visitor clicks through them."""
from __future__ import annotations

import re

import pytest
import requests

from conftest import Page
from flow import (
    METERS,
    NOT_FOUND,
    TEST_IDS,
    authorize_params,
    callback_params,
    connect,
    decide,
    enter_otp,
    full_flow,
    lookup,
)

LOOKUP_TYPES = ("account", "phone", "email", "address")


def run_json(visitor, page):
    assert re.search(r"/runs/[\w-]+$", page.url), page.url
    return visitor.get(page.url + ".json").response.json()


@pytest.mark.parametrize("prefill", [True, False], ids=["prefill", "typed"])
@pytest.mark.parametrize("lookup_type", LOOKUP_TYPES)
@pytest.mark.parametrize("scenario", ["residential", "commercial"])
def test_customer_authorizes(live, visitor, scenario, lookup_type, prefill):
    page = full_flow(visitor, live, scenario, lookup_type, prefill=prefill)
    assert page.status == 200
    assert page.url.startswith(live.site_url + "/runs/")
    assert "Authorized" in page.text_of("status")
    rows = page.doc.cssselect("#meters tbody tr")
    assert len(rows) == METERS[scenario]
    data = run_json(visitor, page)
    assert data["status"] == "authorized"
    assert len(data["meters"]) == METERS[scenario]
    assert data["authorization"]["status"] == 1
    assert data["granted_scope"].startswith("FB=1_3_4_5_13_16_51;")
    assert f"AccountCollection={METERS[scenario]}" in data["granted_scope"]
    assert data["error"] is None
    expected_lookup = (f"auth-{lookup_type}-") if prefill else None
    if expected_lookup:
        assert expected_lookup in data["requested_scope"]


@pytest.mark.parametrize("lookup_type", LOOKUP_TYPES)
def test_badlogin_prefill_falls_back_to_lookup(live, visitor, lookup_type):
    page = connect(visitor, live, lookup_type, TEST_IDS["badlogin"][lookup_type])
    assert page.url.endswith("/authorize/lookup")
    assert NOT_FOUND in page.text_of("lookup-notice")


@pytest.mark.parametrize("lookup_type", LOOKUP_TYPES)
def test_badlogin_typed_is_not_found(live, visitor, lookup_type):
    page = lookup(visitor, connect(visitor, live), lookup_type, TEST_IDS["badlogin"][lookup_type])
    assert page.status == 422
    assert page.url.endswith("/authorize/lookup")
    assert NOT_FOUND in page.text_of("lookup-error")


@pytest.mark.parametrize("lookup_type,typed", [
    ("phone", "(111) 111-1111"), ("phone", "+1 111 111 1111"), ("phone", "1111111111"),
    ("email", "UAPI-Test-Residential@Example.COM"),
    ("address", "333 w el camino real ste 600 sunnyvale ca   94087"),
    ("account", "1111111111"),
])
def test_lookup_accepts_what_people_type(live, visitor, lookup_type, typed):
    page = lookup(visitor, connect(visitor, live), lookup_type, typed)
    assert page.url.endswith("/authorize/verify"), page.body_text
    assert page.text_of("test-passcode")


def test_prefill_with_typo_falls_back(live, visitor):
    page = connect(visitor, live, "email", "uapi-test-residentail@example.com")
    assert page.url.endswith("/authorize/lookup")
    assert NOT_FOUND in page.text_of("lookup-notice")
    # the prefilled value is offered for correction
    form = dict(page.form("/authorize/lookup").fields)
    assert form["method"] == "email" and form["value"] == "uapi-test-residentail@example.com"


def test_lookup_type_without_value_preselects_the_method(live, visitor):
    params = {"response_type": "code", "client_id": live.settings["client_id"],
              "redirect_uri": live.settings["redirect_uri"], "state": "s", "scope": "FB=4;AdditionalScope=auth-email"}
    page = visitor.get(live.settings["authorize_url"], params=params)
    assert page.url.endswith("/authorize/lookup") and page.text_of("lookup-notice") is None
    form = dict(page.form("/authorize/lookup").fields)
    assert form["method"] == "email" and form["value"] == ""


def test_decline_comes_back_as_access_denied(live, visitor):
    page = enter_otp(visitor, connect(visitor, live, "phone", TEST_IDS["residential"]["phone"]))
    page = decide(visitor, page, decline=True)
    assert callback_params(visitor)["error"] == "access_denied"
    assert "Declined" in page.text_of("status")
    data = run_json(visitor, page)
    assert data["status"] == "declined"
    assert data["error"]["error"] == "access_denied"
    assert data["meters"] == [] and data["authorization"] is None


def test_wrong_passcode_then_lockout(live, visitor):
    page = connect(visitor, live, "phone", TEST_IDS["residential"]["phone"])
    right = page.text_of("test-passcode")
    wrong = "000000" if right != "000000" else "111111"
    page = enter_otp(visitor, page, wrong)
    assert page.status == 422
    assert "isn't right. You have 4 tries left" in page.text_of("otp-error")
    for _ in range(3):
        page = enter_otp(visitor, page, wrong)
    assert "1 try left" in page.text_of("otp-error")
    page = enter_otp(visitor, page, wrong)
    assert page.url.endswith("/authorize/lookup")
    assert "Too many wrong passcodes" in page.text_of("lookup-notice")
    # the old passcode is dead; a new lookup gives a new one and the flow still completes
    page = enter_otp(visitor, lookup(visitor, page, "phone", TEST_IDS["residential"]["phone"]))
    assert decide(visitor, page).text_of("status").startswith("Authorized")


def test_forged_state_exchanges_nothing(live, visitor):
    page = visitor.get(live.site_url + "/callback?code=abc&state=forged-state")
    assert page.status == 400
    assert "doesn't match" in page.body_text
    assert visitor.get(live.site_url + "/runs").doc.cssselect("#runs") == []


def test_a_refused_callback_page_holds_neither_code_nor_state(live, visitor):
    # the header's forms once came back to request.full_path: the callback's query, code and state included
    code, state = "c0de-" + "k" * 30, "st4te-" + "q" * 30
    page = visitor.get(live.site_url + f"/callback?code={code}&state={state}")
    assert page.status == 400
    assert code not in page.response.text and state not in page.response.text
    assert code[:12] not in page.response.text and state[:12] not in page.response.text


def test_state_of_another_visitor_is_refused(live, visitor):
    connect(visitor, live, "phone", TEST_IDS["residential"]["phone"])
    state = authorize_params(visitor)["state"]
    other = type(visitor)()
    page = other.get(live.site_url + f"/callback?code=abc&state={state}")
    assert page.status == 400


def test_replayed_code_and_state_are_refused(live, visitor):
    full_flow(visitor, live, "residential", "phone")
    params = callback_params(visitor)
    # the state is single-use at the site
    assert visitor.get(live.site_url + "/callback?" + "&".join(f"{k}={v}" for k, v in params.items())).status == 400
    # the code is single-use at the custodian
    resp = requests.post(live.settings["token_url"], timeout=10, data={
        "grant_type": "authorization_code", "code": params["code"], "redirect_uri": live.settings["redirect_uri"],
    }, auth=(live.settings["client_id"], live.settings["client_secret"]))
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"


def _authorize(live, **params):
    base = {"response_type": "code", "client_id": live.settings["client_id"],
            "redirect_uri": live.settings["redirect_uri"], "scope": "FB=4_16_51", "state": "s123"}
    base.update(params)
    return requests.get(live.settings["authorize_url"], params={k: v for k, v in base.items() if v is not None},
                        allow_redirects=False, timeout=10)


@pytest.mark.parametrize("redirect_uri", [
    "http://evil.example/callback", "{site}/callback/", "{site}/CALLBACK", "{site}/callback?x=1",
])
def test_unregistered_redirect_uri_gets_an_error_page(live, redirect_uri):
    resp = _authorize(live, redirect_uri=redirect_uri.format(site=live.site_url))
    assert resp.status_code == 400
    assert "Location" not in resp.headers
    assert "isn't valid" in Page(resp).body_text


def test_unknown_client_gets_an_error_page(live):
    resp = _authorize(live, client_id="PCE_nobody")
    assert resp.status_code == 400 and "Location" not in resp.headers
    assert "Invalid client" in Page(resp).body_text or "client" in Page(resp).body_text


@pytest.mark.parametrize("params,error", [
    ({"scope": "FB=abc"}, "invalid_scope"),
    ({"scope": "HistoryLength=5"}, "invalid_scope"),
    ({"scope": "FB=2_3"}, "invalid_scope"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"code_challenge": "x" * 43, "code_challenge_method": "plain"}, "invalid_request"),
])
def test_bad_request_redirects_back_with_error_and_state(live, params, error):
    resp = _authorize(live, **params)
    assert resp.status_code == 302
    location = resp.headers["Location"]
    assert location.startswith(live.settings["redirect_uri"] + "?")
    assert f"error={error}" in location and "state=s123" in location


def test_token_endpoint_rejects_wrong_secret(live):
    resp = requests.post(live.settings["token_url"], timeout=10,
                         data={"grant_type": "authorization_code", "code": "x"},
                         auth=(live.settings["client_id"], "wrong"))
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"


def test_espi_needs_a_token(live):
    base = live.sandbox_url + "/DataCustodian/espi/1_1/resource"
    assert requests.get(base + "/Batch/Subscription/1", timeout=10).status_code == 401
    resp = requests.get(base + "/Authorization/1", headers={"Authorization": "Bearer nope"}, timeout=10)
    assert resp.status_code == 401


def test_consent_can_untick_meters_and_shorten_history(live, visitor):
    page = enter_otp(visitor, connect(visitor, live, "account", TEST_IDS["commercial"]["account"]))
    meters = [el.get("value") for el in page.doc.cssselect("input[name=meters]")]
    assert len(meters) == 4
    page = decide(visitor, page, meters=meters[:2], history="31536000")
    data = run_json(visitor, page)
    assert [m["tariff"][:4] for m in data["meters"]] == ["B-19", "B-10"]   # the two ticked, in order
    assert "HistoryLength=31536000" in data["granted_scope"]
    assert "AccountCollection=2" in data["granted_scope"]


def test_consent_choices_are_stable_while_the_customer_reads(live, visitor):
    import time

    page = enter_otp(visitor, connect(visitor, live, "phone", TEST_IDS["residential"]["phone"]))
    time.sleep(1.1)   # a person reads the page; the offered end dates must still be accepted
    assert decide(visitor, page).text_of("status").startswith("Authorized")


def test_consent_needs_a_meter(live, visitor):
    page = enter_otp(visitor, connect(visitor, live, "account", TEST_IDS["commercial"]["account"]))
    page = decide(visitor, page, meters=[])
    assert page.status == 422
    assert "at least one meter" in page.text_of("consent-error")


def test_noedit_and_meters_all_fix_the_request(live, visitor):
    page = enter_otp(visitor, connect(visitor, live, "account", TEST_IDS["commercial"]["account"],
                                      noedit="y", meters_all="y"))
    assert page.doc.cssselect("select[name=history]") == []
    assert all(el.get("disabled") is not None for el in page.doc.cssselect("input[name=meters]"))
    data = run_json(visitor, decide(visitor, page))
    assert len(data["meters"]) == 4


def test_test_prefix_records_the_passcode_in_the_outbox(live, visitor):
    contact = "qa.person+gbc@example.org"
    page = lookup(visitor, connect(visitor, live), "email", f"TEST_residential_{contact}")
    assert page.url.endswith("/authorize/verify")
    assert page.text_of("test-passcode") is None       # "really" sent, not shown
    outbox = visitor.get(live.sandbox_url + "/outbox")
    row = next(tr for tr in outbox.doc.cssselect("table.outbox tbody tr") if contact in tr.text_content())
    code = re.search(r"\b(\d{6})\b", row.text_content()).group(1)
    page = decide(visitor, enter_otp(visitor, page, code))
    assert run_json(visitor, page)["status"] == "authorized"


def test_test_badlogin_sends_then_does_not_find(live, visitor):
    page = lookup(visitor, connect(visitor, live), "phone", "TEST_badlogin_(650) 555-0100")
    outbox = visitor.get(live.sandbox_url + "/outbox")
    row = next(tr for tr in outbox.doc.cssselect("table.outbox tbody tr") if "6505550100" in tr.text_content())
    code = re.search(r"\b(\d{6})\b", row.text_content()).group(1)
    page = enter_otp(visitor, page, code)
    assert page.url.endswith("/authorize/lookup")
    assert NOT_FOUND in page.text_of("lookup-notice")


def test_run_json_has_stable_keys(live, visitor):
    page = full_flow(visitor, live, "residential", "email")
    data = run_json(visitor, page)
    for key in ("requested_scope", "granted_scope", "authorization", "meters", "error"):
        assert key in data
    meter = data["meters"][0]
    assert re.fullmatch(r"\d{7}", meter["usage_point_id"])   # a new meter uid per authorization
    assert meter["service_kind_name"] == "electricity"
    assert meter["local_time"]["tz_offset"] == -28800     # read through the UsagePoint's related link
    assert meter["tariff"].startswith("E-TOU-C")


def test_runs_are_listed_and_private(live, visitor):
    page = full_flow(visitor, live, "residential", "phone")
    listing = visitor.get(live.site_url + "/runs")
    assert len(listing.doc.cssselect("#runs tbody tr")) >= 1
    other = type(visitor)()
    assert other.get(page.url).status == 404
    assert other.get(page.url + ".json").status == 404


def test_no_secret_reaches_logs_pages_or_json(live, visitor, caplog):
    import json as _json
    import logging

    from demo.site.models import Run

    caplog.set_level(logging.DEBUG)
    page = full_flow(visitor, live, "residential", "phone")
    params = callback_params(visitor)
    run_id = page.url.rsplit("/", 1)[1]
    ctx = live.site_app.extensions["gbc_site"]
    with ctx.db.session() as s:
        run = s.get(Run, run_id)
        token = _json.loads(ctx.vault.decrypt(run.token_enc))
        stored = " ".join(str(v) for v in (run.authorization_url, run.callback, run.token_summary))
    secrets_ = [token["access_token"], token["refresh_token"], params["code"], params["state"],
                live.settings["client_secret"]]
    html = page.text + visitor.get(page.url + ".json").text + visitor.get(live.site_url + "/runs").text
    html += visitor.get(live.site_url + "/").text + visitor.get(live.site_url + "/settings").text
    # everything the servers logged (the test's own HTTP client logs from the main thread)
    logged = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records if r.threadName != "MainThread")
    assert "/oauth/token" in logged and "/callback" in logged
    for secret in secrets_:
        assert secret not in logged
        assert secret not in html
        assert secret not in stored
    assert token["access_token"][-4:] in page.text          # shown masked
    for cookie in visitor.http.cookies:
        assert all(secret not in (cookie.value or "") for secret in secrets_)


def test_test_prefix_travels_encoded_in_a_prefilled_scope(live, visitor):
    page = connect(visitor, live, "email", "TEST_commercial_qa_team@example.com")
    assert "auth-email-TEST%5Fcommercial%5Fqa%5Fteam%40example.com" in authorize_params(visitor)["scope"]
    assert page.url.endswith("/authorize/verify")      # found by the prefill: lookup skipped
    assert "qa_team@example.com" in page.body_text
    outbox = visitor.get(live.sandbox_url + "/outbox")
    assert any("qa_team@example.com" in tr.text_content() for tr in outbox.doc.cssselect("table.outbox tbody tr"))


def test_scope_is_optional_at_the_custodian(live, visitor):
    params = {"response_type": "code", "client_id": live.settings["client_id"],
              "redirect_uri": live.settings["redirect_uri"], "state": "no-scope"}
    page = visitor.get(live.settings["authorize_url"], params=params)
    assert page.url.endswith("/authorize/lookup")
    page = enter_otp(visitor, lookup(visitor, page, "phone", TEST_IDS["residential"]["phone"]))
    blocks = [li.text_content() for li in page.doc.cssselect(".consent-list li")]
    assert len(blocks) == 3 and "Interval usage" in blocks[0]

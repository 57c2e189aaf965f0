"""The run page's JSON API view, over HTTP with the live sandbox: a visitor sets a JSON API token
on the settings page, runs the commercial flow, reads the authorization through the JSON API, and
sees that both APIs name the same four meters; the token never appears unmasked."""
from __future__ import annotations

import pytest
from test_sandbox_consistency import api_token

from conftest import Visitor
from flow import full_flow


def save_settings(visitor, live, **values):
    form = visitor.get(live.site_url + "/settings").form("/settings")
    for name, value in values.items():
        form.set(name, value)
    page = form.submit(visitor)
    assert page.status == 200 and "Settings saved" in page.body_text, page.body_text[:500]
    return page


def read_json_api(visitor, run_page):
    return run_page.form("/json-api").submit(visitor)


@pytest.fixture(scope="module")
def commercial(live):
    visitor = Visitor()
    token = api_token(live)
    save_settings(visitor, live, api_token=token)
    page = full_flow(visitor, live, "commercial", "email")
    assert page.status == 200 and "/runs/" in page.url, page.body_text[:500]
    page = read_json_api(visitor, page)
    yield visitor, token, page
    visitor.http.close()


def test_json_view_names_the_same_meters_as_espi(live, commercial):
    _visitor, _token, page = commercial
    assert page.status == 200 and page.url.split("#")[0].rsplit("/", 1)[1]
    espi = [tr.findall("td")[0].text_content().strip() for tr in page.doc.cssselect("#meters tbody tr")]
    rows = page.doc.cssselect("#json-meter-compare tbody tr")
    assert len(espi) == 4 and len(rows) == 4
    assert sorted(tr.get("data-meter") for tr in rows) == sorted(espi)
    assert all("is-match" in tr.get("class") for tr in rows)
    assert "Both APIs name the same 4 meters" in page.text_of("json-same-meters")
    assert page.doc.get_element_by_id("json-api-error", None) is None


def test_json_view_shows_the_authorization_bills_and_a_day(live, commercial):
    _visitor, _token, page = commercial
    authorization = page.text_of("json-authorization")
    assert "updated" in authorization and "uapi-test-commercial@example.com" in authorization
    bills = page.doc.cssselect("#json-bills tbody tr")
    assert 1 <= len(bills) <= 6 and "$" in bills[0].text_content()
    day = page.text_of("json-interval-day")
    assert "96 readings" in day and "kWh in total" in day
    assert "GET /intervals?meters=" in page.body_text


def test_the_api_token_is_masked_everywhere(live, commercial):
    visitor, token, page = commercial
    run_url = page.url.split("#")[0]
    assert token not in page.text and "••••" + token[-4:] in page.body_text
    for url in (run_url, run_url + ".json", run_url + "/events.json", live.site_url + "/settings",
                live.site_url + "/"):
        resp = visitor.http.get(url, timeout=10)
        assert resp.status_code == 200 and token not in resp.text, url
    for cookie in visitor.http.cookies:
        assert token not in cookie.value


def test_reading_again_replaces_the_view(live, commercial):
    visitor, _token, page = commercial
    again = read_json_api(visitor, page)
    assert again.status == 200 and len(again.doc.cssselect("#json-meter-compare tbody tr")) == 4


def test_a_wrong_token_is_explained(live, visitor):
    save_settings(visitor, live, api_token="not-a-real-token-000000")
    page = full_flow(visitor, live, "residential", "phone")
    page = read_json_api(visitor, page)
    assert page.status == 200
    assert "did not accept the API token" in page.text_of("json-api-error")
    assert "not-a-real-token-000000" not in page.text


def test_without_a_token_the_page_says_where_to_get_one(live, visitor):
    page = full_flow(visitor, live, "residential", "phone")
    assert "Set a JSON API token" in page.text_of("json-api")
    run_id = page.url.rsplit("/", 1)[1]
    csrf = page.doc.xpath("//input[@name='csrf_token']/@value")[0]
    resp = visitor.http.post(f"{live.site_url}/runs/{run_id}/json-api", data={"csrf_token": csrf}, timeout=10)
    assert resp.status_code == 200 and "Set a JSON API token on the Settings page first" in resp.text
    other = Visitor()
    other_csrf = other.get(live.site_url + "/decode").doc.xpath("//input[@name='csrf_token']/@value")[0]
    resp = other.http.post(f"{live.site_url}/runs/{run_id}/json-api", data={"csrf_token": other_csrf}, timeout=10)
    assert resp.status_code == 404          # someone else's run

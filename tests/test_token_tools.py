"""The run page's token tools against the sandbox over HTTP: refresh with rotation,
client_credentials → Authorization list, ReadServiceStatus, revoke (RFC 7009 and the JSON
API), and what a revoked token gets — each recorded in the timeline and explained."""
from __future__ import annotations

from test_api_v2 import make_token
from test_json_api_view import save_settings

from flow import full_flow, token_of


def _tool(visitor, page, name):
    result = page.form(f"/tools/{name}").submit(visitor)
    assert result.status == 200 and result.url.endswith(f"#tool-{name}")
    return result


def _last_title(page) -> str:
    return page.doc.cssselect("ol.timeline > li .tl-title")[-1].text_content()


def test_refresh_shows_rotation_and_stores_the_new_token(live, visitor):
    page = full_flow(visitor, live, "residential", "phone")
    before = token_of(live, page)
    page = _tool(visitor, page, "refresh")
    after = token_of(live, visitor.get(page.url.split("#")[0]))
    assert after["access_token"] != before["access_token"]
    assert after["refresh_token"] != before["refresh_token"]          # the sandbox rotates
    result = page.text_of("tool-refresh-result")
    assert f"••••{before['refresh_token'][-4:]}" in result and f"••••{after['refresh_token'][-4:]}" in result
    assert page.text_of("tool-refresh-rotated").startswith("yes")
    assert _last_title(page) == "Token request (refresh_token)"
    data = visitor.get(page.url.split("#")[0] + ".json").response.json()
    assert data["tools"]["refresh"]["rotated"] is True
    assert data["token"]["access_token"] == f"••••{after['access_token'][-4:]}"
    # the new access token works: reading again succeeds
    page = _tool(visitor, page, "fetch")
    assert "Read 1 meter" in page.text_of("tool-fetch-result")


def test_client_credentials_lists_this_clients_authorizations(live, visitor):
    page = full_flow(visitor, live, "commercial", "email")
    uid = visitor.get(page.url + ".json").response.json()["authorization"]["uid"]
    page = _tool(visitor, page, "client_credentials")
    rows = page.doc.cssselect("#tool-authorizations tbody tr")
    assert int(page.text_of("tool-authorizations-count")) == len(rows) >= 1
    current = [r for r in rows if "this run" in r.text_content()]
    assert len(current) == 1 and uid in current[0].text_content()
    titles = [t.text_content() for t in page.doc.cssselect("ol.timeline > li .tl-title")]
    assert titles[-2:] == ["Token request (client_credentials)", "GET …/resource/Authorization"]


def test_service_status(live, visitor):
    page = _tool(visitor, full_flow(visitor, live, "residential", "account"), "service_status")
    assert page.text_of("tool-current-status") == "1"
    assert "normal" in page.text_of("tool-service_status-result")
    assert _last_title(page) == "GET …/resource/ReadServiceStatus"


def test_revoke_then_reading_gets_401_explained(live, visitor):
    page = full_flow(visitor, live, "residential", "email")
    page = _tool(visitor, page, "revoke")
    assert "RFC 7009" in page.text_of("tool-revoke") and "/api/v2/authorizations/" in page.text_of("tool-revoke")
    assert "revoked at" in page.text_of("tool-revoke-result")
    assert _last_title(page) == "Token revocation (RFC 7009)"
    page = _tool(visitor, page, "fetch")
    result = page.text_of("tool-fetch-result")
    assert "Token not accepted" in result and "HTTP 401" in result and "What to check" in result
    last = page.doc.cssselect("ol.timeline > li.timeline__item")[-1]
    assert last.cssselect(".tl-status")[0].text_content() == "401"
    assert "revoked" in last.text_content() and last.cssselect(".explain")
    # the run keeps what it had read; refreshing with the revoked refresh token is refused too
    assert page.doc.cssselect("#meters tbody tr")
    page = _tool(visitor, page, "refresh")
    assert "invalid_grant" in page.text_of("tool-refresh-result")


def test_revoke_through_the_json_api_with_an_api_token(live, visitor):
    api_token = make_token(live)
    save_settings(visitor, live, api_token=api_token, api_url=live.sandbox_url + "/api/v2")
    page = full_flow(visitor, live, "residential", "phone")
    uid = visitor.get(page.url + ".json").response.json()["authorization"]["uid"]
    page = _tool(visitor, page, "revoke")
    assert f"Authorization {uid} revoked through the JSON API" in page.text_of("tool-revoke-result")
    last = page.doc.cssselect("ol.timeline > li.timeline__item")[-1]
    assert last.cssselect(".tl-kind")[0].text_content() == "json"
    assert f"/api/v2/authorizations/{uid}/revoke" in last.text_content()
    assert api_token not in page.text and f"Bearer ••••{api_token[-4:]}" in last.text_content()
    page = _tool(visitor, page, "fetch")
    assert "HTTP 401" in page.text_of("tool-fetch-result") or "HTTP 404" in page.text_of("tool-fetch-result")


def test_tools_need_the_csrf_token_and_the_owner(live, visitor):
    page = full_flow(visitor, live, "residential", "phone")
    assert visitor.request("POST", page.url + "/tools/refresh", data={}).status == 400
    other = type(visitor)()
    form = page.form("/tools/refresh")
    assert other.request("POST", page.url + "/tools/refresh", data=dict(form.fields)).status in (400, 404)
    assert visitor.request("POST", page.url + "/tools/nope", data=dict(form.fields)).status == 404

"""The demo site's settings layer: per visitor, server-side, validated."""
from __future__ import annotations

from flow import connect


def settings_form(visitor, live):
    page = visitor.get(live.site_url + "/settings")
    assert page.status == 200
    return page.form("/settings")


def test_settings_apply_to_this_visitor_only(live, visitor):
    form = settings_form(visitor, live).set("client_id", "PCE_unregistered").set("client_secret", "s3cr3t-value-xyz")
    page = form.submit(visitor)
    assert page.status == 200 and "Settings saved" in page.body_text
    home = visitor.get(live.site_url + "/")
    assert "PCE_unregistered" in home.body_text
    assert "s3cr3t-value-xyz" not in home.text and "••••-xyz" in home.body_text
    for cookie in visitor.http.cookies:
        assert "s3cr3t" not in cookie.value and "PCE_unregistered" not in cookie.value
    other = type(visitor)()
    assert "PCE_unregistered" not in other.get(live.site_url + "/").body_text
    # the sandbox does not know that client: an error page at the utility, never a redirect back
    page = connect(visitor, live)
    assert page.status == 400 and page.url.startswith(live.sandbox_url)
    assert "isn't valid" in page.body_text
    # reset brings the preset back
    reset = visitor.get(live.site_url + "/settings").form("/settings/reset").submit(visitor)
    assert "reset" in reset.body_text.lower()
    assert "PCE_ccccccccc" in visitor.get(live.site_url + "/").body_text


def test_bad_settings_are_refused_with_a_message(live, visitor):
    page = settings_form(visitor, live).set("scope", "FB=4;HistoryLength=abc").submit(visitor)
    assert page.status == 400
    assert "HistoryLength" in page.body_text
    page = settings_form(visitor, live).set("authorize_url", "not a url").submit(visitor)
    assert page.status == 400
    page = settings_form(visitor, live).set("token_auth_method", "none").submit(visitor)
    assert page.status == 400
    assert "PCE_ccccccccc" in visitor.get(live.site_url + "/").body_text   # nothing stored


def test_forms_need_their_csrf_token(live, visitor):
    visitor.get(live.site_url + "/")
    resp = visitor.http.post(live.site_url + "/connect", data={"lookup_type": "none", "function_blocks": "4"},
                             timeout=10, allow_redirects=False)
    assert resp.status_code == 400
    resp = visitor.http.post(live.site_url + "/settings", data={"client_id": "x"}, timeout=10)
    assert resp.status_code == 400


def test_connect_form_errors_are_clear(live, visitor):
    page = connect(visitor, live, "phone", "", blocks=(4,))
    assert page.status == 400 and "Enter the phone to pre-fill" in page.body_text
    home = visitor.get(live.site_url + "/")
    page = home.form("/connect").set("function_blocks").submit(visitor)
    assert page.status == 400 and "at least one function block" in page.body_text


def test_home_shows_the_scope_and_url_before_leaving(live, visitor):
    page = visitor.get(live.site_url + "/", params={"lookup_type": "email", "function_blocks": ["4", "16", "51"],
                                                    "lookup_value": "uapi-test-residential@example.com"})
    assert page.text_of("scope-decoded") == "FB=4_16_51;AdditionalScope=auth-email-uapi-test-residential%40example.com"
    assert page.text_of("scope-encoded").startswith("FB%3D4_16_51%3BAdditionalScope%3Dauth-email-")
    url = page.text_of("authorization-url")
    assert url.startswith(live.settings["authorize_url"] + "?response_type=code&client_id=PCE_ccccccccc")
    assert "scope=FB%3D4_16_51%3BAdditionalScope%3Dauth-email-uapi-test-residential%2540example.com" in url
    assert "state={state}" in url and "code_challenge={code_challenge}" in url
    assert page.text_of("redirect-uri") == live.settings["redirect_uri"]


def test_security_headers(live, visitor):
    resp = visitor.http.get(live.site_url + "/", timeout=10)
    csp = resp.headers["Content-Security-Policy"]
    assert "form-action 'self' " + live.sandbox_url in csp
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] == "no-referrer"
    assert resp.headers["Cache-Control"] == "no-store"
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and cookie.startswith("gbc_site_session=")


def test_home_warns_when_opened_on_another_host_than_the_redirect_uri(live, visitor):
    assert visitor.get(live.site_url + "/").text_of("origin-warning") is None
    other_host = live.site_url.replace("127.0.0.1", "localhost")
    warning = visitor.get(other_host + "/").text_of("origin-warning")
    assert warning and live.settings["redirect_uri"] in warning


def test_client_secret_post_without_pkce_also_works(live, visitor):
    from flow import authorize_params, full_flow

    form = settings_form(visitor, live).set("token_auth_method", "client_secret_post").set("pkce")
    assert form.submit(visitor).status == 200
    page = full_flow(visitor, live, "commercial", "email")
    assert "code_challenge" not in authorize_params(visitor)
    data = visitor.get(page.url + ".json").response.json()
    assert data["status"] == "authorized" and len(data["meters"]) == 4


def test_pkce_is_sent_by_default(live, visitor):
    from flow import authorize_params, connect

    connect(visitor, live, "phone", "111-111-1111")
    params = authorize_params(visitor)
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["scope"] == "FB=4_16_51;AdditionalScope=auth-phone-111-111-1111"


def test_preview_json_follows_the_form(live, visitor):
    data = visitor.http.get(live.site_url + "/preview.json", timeout=10, params={
        "lookup_type": "address", "lookup_value": "333 W EL CAMINO REAL STE 600, SUNNYVALE CA 94087",
        "function_blocks": ["4", "51"], "history": "31536000", "noedit": "y"}).json()
    assert data["error"] is None
    assert data["scope"] == ("FB=4_51;HistoryLength=31536000;AdditionalScope=noedit_auth-address-"
                             "333%20W%20EL%20CAMINO%20REAL%20STE%20600%2C%20SUNNYVALE%20CA%2094087")
    assert data["scope_encoded"].startswith("FB%3D4_51%3BHistoryLength%3D31536000%3B")
    assert any("billing address" in line for line in data["explained"])
    data = visitor.http.get(live.site_url + "/preview.json", timeout=10,
                            params={"lookup_type": "phone", "function_blocks": "4"}).json()
    assert data["error"] == "Enter the phone to pre-fill, or choose None." and data["scope"] == ""

"""The third party's dashboard in the sandbox, over real HTTP: sign-in, the
authorizations (list, detail, revoke), OAuth settings (redirect URIs, secret
rotation, reset to configuration, surviving a restart), API tokens, webhook
endpoints and the registration_access_token. Secrets are shown once, never again."""
from __future__ import annotations

import http.server
import json
import threading
from datetime import timedelta

import pytest
import requests
from sandbox_steps import code_from, consent, ctx, decide, espi_authorization, exact_form, exchange, servers, sign_in

from demo.sandbox import create_app, webhooks
from demo.sandbox import registrations as reg
from demo.sandbox.credentials import API, REGISTRATION, CredentialError, identify
from demo.sandbox.models import ApiTokenRow, AuthorizationRow, ClientRow, WebhookEndpointRow
from demo.storage import utcnow
from demo.tokens import digest

from conftest import Visitor

CONFIG_SECRET = "dashboard-config-secret-0001"
CLIENTS = [
    {"client_id": "PCE_dashtest1", "client_secret": CONFIG_SECRET, "company_name": "Dash Test Co",
     "redirect_uris": ["{site_url}/callback", "https://dash.example/cb"]},
    {"client_id": "PCE_rotate001", "client_secret": "rotate-config-secret-0001", "company_name": "Rotate Co",
     "redirect_uris": ["{site_url}/callback"]},
    {"client_id": "PCE_uris00001", "client_secret": "uris-config-secret-0001", "company_name": "Uris Co",
     "redirect_uris": ["{site_url}/callback"]},
    {"client_id": "PCE_cfgonly01", "client_secret": "cfg-config-secret-0001", "company_name": "Config Co",
     "redirect_uris": ["https://config.example/cb"], "mode": "live", "user_email": "ops@config.example"},
]


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with servers(tmp_path_factory.mktemp("dashboard"), CLIENTS) as live:
        yield live


@pytest.fixture
def signed_in(live):
    visitor = Visitor()
    page = sign_in(visitor, live, "PCE_dashtest1", CONFIG_SECRET)
    assert page.url.endswith("/dashboard/authorizations"), page.body_text
    yield visitor
    visitor.http.close()


def _secrets_absent(visitor, live, *secrets: str) -> None:
    """No dashboard page (nor the sandbox's public pages) shows any of these values."""
    for path in ("/dashboard/authorizations", "/dashboard/settings/oauth", "/dashboard/settings/api",
                 "/dashboard/settings/webhooks", "/dashboard/settings/green-button", "/", "/outbox"):
        page = visitor.get(live.sandbox_url + path)
        assert page.status == 200, path
        for secret in secrets:
            assert secret not in page.text, (path, "shows a secret")


# ---- sign-in --------------------------------------------------------------------------------

def test_sign_in_and_out(live, visitor):
    page = visitor.get(live.sandbox_url + "/dashboard/settings/oauth")
    assert page.url.endswith("/dashboard/sign-in")
    page = sign_in(visitor, live, "PCE_dashtest1", "wrong-secret")
    assert page.status == 401
    assert "don't match" in page.text_of("sign-in-error")
    assert "wrong-secret" not in page.text            # a typed secret is not echoed back
    assert sign_in(visitor, live, "PCE_nobody", CONFIG_SECRET).status == 401
    assert sign_in(visitor, live, "", "").status == 422
    page = sign_in(visitor, live, "PCE_dashtest1", CONFIG_SECRET)
    assert page.status == 200 and page.url.endswith("/dashboard/authorizations")
    assert "PCE_dashtest1" in page.body_text and page.text_of("mode") == "Sandbox mode"
    assert page.response.headers["Cache-Control"] == "no-store"
    # the session cookie holds the client_id only (signed), never the secret
    assert CONFIG_SECRET not in json.dumps(visitor.http.cookies.get_dict())
    page = page.form("/dashboard/sign-out").submit(visitor)
    assert page.url.endswith("/dashboard/sign-in")
    assert visitor.get(live.sandbox_url + "/dashboard/authorizations").url.endswith("/dashboard/sign-in")


def test_actions_need_the_csrf_token(live, signed_in):
    for path in ("/dashboard/settings/oauth/secret", "/dashboard/settings/green-button/token",
                 "/dashboard/sign-out"):
        assert signed_in.request("POST", live.sandbox_url + path, data={}).status == 400
    resp = requests.post(live.sandbox_url + "/dashboard/sign-in", timeout=10,
                         data={"client_id": "PCE_dashtest1", "client_secret": CONFIG_SECRET})
    assert resp.status_code == 400 and "security token" in resp.text


def test_sandbox_index_links_to_dashboard(live, visitor):
    page = visitor.get(live.sandbox_url + "/")
    assert page.doc.get_element_by_id("dashboard-link").get("href") == "/dashboard/sign-in"
    assert "config/pce.toml" in page.body_text
    assert CONFIG_SECRET not in page.text


def test_live_mode_is_shown_read_only(live, visitor):
    page = sign_in(visitor, live, "PCE_cfgonly01", "cfg-config-secret-0001")
    assert page.text_of("mode") == "Live mode"
    with ctx(live).db.session() as s:
        row = s.get(ClientRow, "PCE_cfgonly01")
        assert (row.mode, row.user_email) == ("live", "ops@config.example")
        assert row.user_uid.isdigit() and row.user_uid == reg.user_uid_for("PCE_cfgonly01")
        assert s.get(ClientRow, "PCE_dashtest1").user_email == "dev@pce-dashtest1.example"


# ---- authorizations -------------------------------------------------------------------------

def test_authorization_appears_and_third_party_revokes_it(live, signed_in):
    customer = Visitor()
    redirect_uri = live.site_url + "/callback"
    response = decide(customer, consent(customer, live, "PCE_dashtest1", redirect_uri=redirect_uri))
    token = exchange(live, code_from(response), "PCE_dashtest1", CONFIG_SECRET, redirect_uri)
    uid = token["authorizationURI"].rsplit("/", 1)[1]
    assert espi_authorization(live, token).status_code == 200

    page = signed_in.get(live.sandbox_url + "/dashboard/authorizations")
    row = page.doc.cssselect(f'#authorizations tr[data-uid="{uid}"]')[0]
    cells = [" ".join(td.text_content().split()) for td in row.findall("td")]
    assert cells[0] == uid and "active" in cells[4] and cells[5] == "1" and cells[6] == "oauth"
    assert "••••11-1" in cells[2] and "111111111-1" not in page.text        # the account is masked
    assert "residential" in cells[3] and "test account" in cells[3]

    page = signed_in.get(live.sandbox_url + f"/dashboard/authorizations/{uid}")
    assert page.text_of("status") == "active" and page.text_of("readiness") == "Ready"
    assert page.text_of("granted-scope").startswith("FB=1_3_4_5_13_16_51;")
    meters = page.doc.cssselect("#meters tbody tr")
    assert len(meters) == 1 and "E-TOU-C" in meters[0].text_content() and "SAN MATEO" in meters[0].text_content()
    assert "authorization_created" in page.text_of("events")
    assert token["access_token"] not in page.text and token["refresh_token"] not in page.text

    page = page.form(f"/dashboard/authorizations/{uid}/revoke").submit(signed_in)
    assert page.url.endswith(f"/dashboard/authorizations/{uid}") and page.text_of("status") == "revoked"
    assert "authorization_revoked" in page.text_of("events")
    assert espi_authorization(live, token).status_code == 401
    with ctx(live).db.session() as s:
        assert s.get(AuthorizationRow, uid).revoked_by == "third_party"
    # another registration cannot see it
    other = Visitor()
    sign_in(other, live, "PCE_uris00001", "uris-config-secret-0001")
    assert other.get(live.sandbox_url + f"/dashboard/authorizations/{uid}").status == 404
    assert other.get(live.sandbox_url + "/dashboard/authorizations/" + "9" * 600).status == 404


# ---- OAuth settings -------------------------------------------------------------------------

def test_oauth_settings_page(live, signed_in):
    page = signed_in.get(live.sandbox_url + "/dashboard/settings/oauth")
    assert page.text_of("authorize-url") == live.sandbox_url + "/oauth/authorize"
    assert page.text_of("token-url") == live.sandbox_url + "/oauth/token"
    assert page.text_of("client-id") == "PCE_dashtest1"
    assert page.doc.get_element_by_id("redirect_uris").text_content().split() == [
        live.site_url + "/callback", "https://dash.example/cb"]
    assert CONFIG_SECRET not in page.text


@pytest.mark.parametrize("text,message", [
    ("ftp://x.example/cb", "http:// or https://"),
    ("/callback", "http:// or https://"),
    ("https://x.example/cb#frag", "#fragment"),
    ("https://user:pw@x.example/cb", "user name"),
    ("https://x.example/a b", "spaces"),
    ("https://x.example:99999/cb", "not a valid URL"),
    ("\n".join(f"https://x.example/{i}" for i in range(21)), "At most 20"),
])
def test_bad_redirect_uris_are_refused(live, signed_in, text, message):
    page = signed_in.get(live.sandbox_url + "/dashboard/settings/oauth")
    page = page.form("/dashboard/settings/oauth").set("redirect_uris", text).submit(signed_in)
    assert page.status == 422
    assert message in page.text_of("redirect-uris-error")


def test_redirect_uris_take_effect_and_survive_a_restart(live, visitor):
    page = sign_in(visitor, live, "PCE_uris00001", "uris-config-secret-0001")
    new = ["https://new.example/callback?x=1", "http://127.0.0.1:9/cb"]
    page = visitor.get(live.sandbox_url + "/dashboard/settings/oauth")
    page = page.form("/dashboard/settings/oauth").set("redirect_uris", "\n".join(new) + "\n" + new[0]).submit(visitor)
    assert page.status == 200 and "Saved 2 redirect URIs" in page.body_text
    assert "this dashboard" in page.text_of("managed-by")

    def authorize_status(uri):
        return requests.get(live.sandbox_url + "/oauth/authorize", allow_redirects=False, timeout=10, params={
            "response_type": "code", "client_id": "PCE_uris00001", "redirect_uri": uri}).status_code

    assert authorize_status(new[0]) == 303                # exactly as registered
    assert authorize_status("https://new.example/callback") == 400
    assert authorize_status(live.site_url + "/callback") == 400          # no longer registered

    # a restart (create_app again on the same database) keeps the dashboard's URIs,
    # while registrations still managed by the configuration follow it
    changed = [dict(c) for c in live.settings["sandbox_clients"]]
    for c in changed:
        if c["client_id"] == "PCE_uris00001":
            c.update(redirect_uris=["https://from-config.example/cb"], company_name="Uris Co (renamed)")
        if c["client_id"] == "PCE_cfgonly01":
            c.update(redirect_uris=["https://config.example/cb2"])
    create_app({**live.settings, "sandbox_clients": changed, "sandbox_webhooks": False})
    with ctx(live).db.session() as s:
        managed, follower = s.get(ClientRow, "PCE_uris00001"), s.get(ClientRow, "PCE_cfgonly01")
        assert managed.redirect_uris == new and managed.company_name == "Uris Co (renamed)"
        assert managed.secret_hash == digest("uris-config-secret-0001")
        assert follower.redirect_uris == ["https://config.example/cb2"]
    assert authorize_status(new[0]) == 303

    # "Reset to configuration" (the running app's configuration) applies it at once
    page = visitor.get(live.sandbox_url + "/dashboard/settings/oauth")
    page = page.form("/dashboard/settings/oauth/reset").submit(visitor)
    assert "configuration" in page.text_of("managed-by")
    assert authorize_status(live.site_url + "/callback") == 303 and authorize_status(new[0]) == 400
    with ctx(live).db.session() as s:
        assert s.get(ClientRow, "PCE_uris00001").dashboard_managed is False


def test_secret_rotation_shows_the_new_secret_once(live, visitor):
    old = "rotate-config-secret-0001"

    def client_credentials(secret):
        return requests.post(live.sandbox_url + "/oauth/token", data={"grant_type": "client_credentials"},
                             auth=("PCE_rotate001", secret), timeout=10).status_code

    assert client_credentials(old) == 200
    elsewhere = Visitor()                                      # another dashboard session, e.g. a leaked one
    assert sign_in(elsewhere, live, "PCE_rotate001", old).status == 200
    page = sign_in(visitor, live, "PCE_rotate001", old)
    page = visitor.get(live.sandbox_url + "/dashboard/settings/oauth")
    page = page.form("/dashboard/settings/oauth/secret").submit(visitor)
    new = page.text_of("new-client-secret")
    assert page.status == 200 and new and len(new) == 64 and new != old
    assert "shown only this once" in page.body_text
    assert visitor.get(page.url).text_of("new-client-secret") is None        # once only
    # the rotating session stays signed in; every other session is signed out
    assert visitor.get(live.sandbox_url + "/dashboard/authorizations").url.endswith("/dashboard/authorizations")
    assert elsewhere.get(live.sandbox_url + "/dashboard/authorizations").url.endswith("/dashboard/sign-in")
    _secrets_absent(visitor, live, new, old)

    assert client_credentials(old) == 401
    assert client_credentials(new) == 200
    assert sign_in(Visitor(), live, "PCE_rotate001", old).status == 401
    assert sign_in(Visitor(), live, "PCE_rotate001", new).status == 200
    with ctx(live).db.session() as s:
        row = s.get(ClientRow, "PCE_rotate001")
        assert row.secret_hash == digest(new) and row.dashboard_managed and row.secret_rotated is not None
        assert new not in json.dumps([row.secret_hash, row.redirect_uris])

    # a secret not looked at on the very next page is gone for good
    form = visitor.get(live.sandbox_url + "/dashboard/settings/oauth").form("/dashboard/settings/oauth/secret")
    response = visitor.http.post(live.sandbox_url + "/dashboard/settings/oauth/secret", data=form.fields,
                                 allow_redirects=False, timeout=10)
    assert response.status_code == 303
    visitor.get(live.sandbox_url + "/dashboard/authorizations")
    assert visitor.get(live.sandbox_url + "/dashboard/settings/oauth").text_of("new-client-secret") is None


# ---- API settings ---------------------------------------------------------------------------

def test_api_tokens_create_list_and_expire(live, signed_in):
    page = signed_in.get(live.sandbox_url + "/dashboard/settings/api")
    page = page.form("/dashboard/settings/api").set("name", "billing sync").submit(signed_in)
    token = page.text_of("new-api-token")
    assert token and len(token) == 64 and "billing sync" in page.body_text
    row = page.doc.cssselect("#api-tokens tbody tr")[0]
    assert "••••" + token[-4:] in row.text_content() and token not in page.text.replace(token, "", 1)
    assert signed_in.get(page.url).text_of("new-api-token") is None
    _secrets_absent(signed_in, live, token)

    with ctx(live).db.session() as s:
        credential = identify(s, token)
        stored = s.query(ApiTokenRow).filter_by(token_hash=digest(token)).one()
        assert credential.kind == API and credential.client_id == "PCE_dashtest1"
        assert stored.expires - stored.created > timedelta(days=3650 - 1) and stored.last4 == token[-4:]
    headers = {"Authorization": f"Bearer {token}"}
    assert requests.get(live.sandbox_url + "/api/v2/authorizations", headers=headers, timeout=10).status_code == 200

    page = signed_in.get(live.sandbox_url + "/dashboard/settings/api")
    page = page.form(f"/dashboard/settings/api/{stored.id}/expire").submit(signed_in)
    assert "expired" in page.doc.cssselect(f'#api-tokens tr[data-id="{stored.id}"]')[0].text_content()
    with ctx(live).db.session() as s, pytest.raises(CredentialError):
        identify(s, token)
    assert requests.get(live.sandbox_url + "/api/v2/authorizations", headers=headers, timeout=10).status_code == 401
    # someone else's token id
    assert signed_in.request("POST", live.sandbox_url + "/dashboard/settings/api/999999/expire",
                             data={"csrf_token": page.form("/dashboard/settings/api").fields[0][1]}).status == 404


# ---- Webhook settings -----------------------------------------------------------------------

class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args):
        pass


@pytest.fixture
def receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.received = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hooks", _Receiver.received
    server.shutdown()


def test_webhook_endpoint_secret_once_encrypted_and_ping(live, signed_in, receiver):
    url, received = receiver
    page = signed_in.get(live.sandbox_url + "/dashboard/settings/webhooks")
    bad = exact_form(page, "/dashboard/settings/webhooks").set("url", "javascript:alert(1)").submit(signed_in)
    assert bad.status == 422 and "http://" in bad.text_of("webhook-error")

    page = exact_form(page, "/dashboard/settings/webhooks").set("url", url).submit(signed_in)
    secret = page.text_of("new-webhook-secret")
    assert secret and page.status == 200
    assert signed_in.get(page.url).text_of("new-webhook-secret") is None
    _secrets_absent(signed_in, live, secret)
    with ctx(live).db.session() as s:
        endpoint = s.query(WebhookEndpointRow).filter_by(url=url).one()
        assert secret not in endpoint.secret_encrypted
        assert reg.vault(live.settings).decrypt(endpoint.secret_encrypted) == secret
        assert endpoint.event_types == []

    page = signed_in.get(live.sandbox_url + "/dashboard/settings/webhooks")
    page = page.form(f"/dashboard/settings/webhooks/{endpoint.id}/ping").submit(signed_in)
    assert "Ping delivered: 200" in page.body_text
    headers, body = received[-1]
    assert json.loads(body)["events"][0]["type"] == "ping"
    assert webhooks.verify(secret, headers[webhooks.SALT_HEADER], headers[webhooks.SIGNATURE_HEADER], body)
    assert "delivered" in page.text_of("events") and url in page.text_of("events")

    # disable, enable, delete
    page = page.form(f"/dashboard/settings/webhooks/{endpoint.id}/disable").submit(signed_in)
    assert "disabled" in page.doc.cssselect(f'#endpoints tr[data-id="{endpoint.id}"]')[0].text_content()
    page = page.form(f"/dashboard/settings/webhooks/{endpoint.id}/enable").submit(signed_in)
    page = page.form(f"/dashboard/settings/webhooks/{endpoint.id}/delete").submit(signed_in)
    assert not page.doc.cssselect(f'#endpoints tr[data-id="{endpoint.id}"]')
    assert "ping" in page.text_of("events")         # past events stay listed


def test_webhook_event_type_filter(live, signed_in):
    page = signed_in.get(live.sandbox_url + "/dashboard/settings/webhooks")
    form = exact_form(page, "/dashboard/settings/webhooks").set("url", "https://hooks.example/only-revoked")
    page = form.set("event_types", "authorization_revoked", "ping").submit(signed_in)
    assert page.text_of("new-webhook-secret")
    with ctx(live).db.session() as s:
        row = s.query(WebhookEndpointRow).filter_by(url="https://hooks.example/only-revoked").one()
        assert row.event_types == ["ping", "authorization_revoked"]
    form = exact_form(page, "/dashboard/settings/webhooks").set("url", "https://hooks.example/x")
    assert form.set("event_types", "no_such_event").submit(signed_in).status == 422


# ---- Green Button hosting -------------------------------------------------------------------

def test_registration_access_token_rotation(live, signed_in):
    page = signed_in.get(live.sandbox_url + "/dashboard/settings/green-button")
    assert page.text_of("registration-token-state") == "Not issued yet"
    page = page.form("/dashboard/settings/green-button/token").submit(signed_in)
    first = page.text_of("new-registration-token")
    assert first and len(first) == 64
    page = signed_in.get(page.url)
    assert page.text_of("new-registration-token") is None
    assert page.text_of("registration-token-state") == "Issued (hidden)"
    _secrets_absent(signed_in, live, first)
    with ctx(live).db.session() as s:
        assert s.get(ClientRow, "PCE_dashtest1").registration_token_hash == digest(first)
        assert identify(s, first).kind == REGISTRATION
    second = page.form("/dashboard/settings/green-button/token").submit(signed_in).text_of("new-registration-token")
    assert second and second != first
    with ctx(live).db.session() as s:
        assert identify(s, second).kind == REGISTRATION
        with pytest.raises(CredentialError):
            identify(s, first)


# ---- rules without HTTP ---------------------------------------------------------------------

def test_redirect_uri_rules():
    assert reg.parse_redirect_uris(" https://a.example/cb \n\nhttps://a.example/cb\nhttp://b/x?y=1") == [
        "https://a.example/cb", "http://b/x?y=1"]
    assert reg.parse_redirect_uris("") == []
    for bad in ("https://", "mailto:a@b.example", "https://a.example/#", "HTTPS//a.example"):
        with pytest.raises(reg.SettingsError):
            reg.parse_redirect_uris(bad)


def test_api_token_expiry_is_whole_years():
    leap = utcnow().replace(year=2028, month=2, day=29)
    assert reg.add_years(leap, 10).date().isoformat() == "2038-02-28"


@pytest.mark.parametrize("path", [
    "/dashboard/settings/api/99999999999999999999999/expire", "/dashboard/settings/webhooks/99999999999999999999/ping",
    "/dashboard/settings/webhooks/0/delete", "/dashboard/settings/webhooks/7/disable",
    "/dashboard/authorizations/" + "9" * 5000 + "/revoke", "/my-authorizations/1/revoke",
])
def test_bad_ids_are_4xx(live, signed_in, path):
    csrf = signed_in.get(live.sandbox_url + "/dashboard/settings/api").form("/dashboard/settings/api").fields[0][1]
    resp = signed_in.http.post(live.sandbox_url + path, data={"csrf_token": csrf}, allow_redirects=False, timeout=10)
    assert resp.status_code in (303, 404), resp.status_code

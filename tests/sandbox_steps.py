"""Steps on the sandbox alone (no demo site): an OAuth request for any registered
client, the customer's lookup / passcode / decision, the code exchange, and the
dashboard sign-in. Used by test_dashboard, test_modes and test_customer_side."""
from __future__ import annotations

import re
from contextlib import contextmanager
from urllib.parse import parse_qs, urljoin, urlsplit

import requests

from conftest import Form, Page, start_servers

RESIDENTIAL_PHONE = "111-111-1111"
REAL_RESIDENTIAL_PHONE = "650-555-0142"
REAL_COMMERCIAL_EMAIL = "billing.bayshorehardware@example.com"


@contextmanager
def servers(tmp, clients: list[dict], **overrides):
    """Both apps on loopback with these registered clients (placeholders like {site_url} work)
    and any other configuration ``overrides``."""
    live, started = start_servers(tmp, sandbox_clients=clients, **overrides)
    try:
        yield live
    finally:
        dispatcher = live.sandbox_app.extensions.get("gbc_webhooks")
        if dispatcher is not None:
            dispatcher.stop(timeout=2)
        for srv in started:
            srv.shutdown()


def ctx(live):
    return live.sandbox_app.extensions["gbc_sandbox"]


def authorize(visitor, live, client_id: str, redirect_uri: str | None = None, scope: str | None = "FB=4_16_51",
              state: str = "st-1") -> Page:
    params = {"response_type": "code", "client_id": client_id, "state": state}
    if redirect_uri is not None:
        params["redirect_uri"] = redirect_uri
    if scope is not None:
        params["scope"] = scope
    return visitor.get(live.sandbox_url + "/oauth/authorize", params=params)


def lookup(visitor, page: Page, method: str, value: str, action: str = "/authorize/lookup") -> Page:
    return page.form(action).set("method", method).set("value", value).submit(visitor)


def outbox_rows(visitor, live, **filters) -> list[list[str]]:
    """The outbox's rows (newest first) as cell texts, with optional GET filters."""
    page = visitor.get(live.sandbox_url + "/outbox", params=filters)
    assert page.status == 200, page.body_text[:300]
    return [[" ".join(td.text_content().split()) for td in row.findall("td")]
            for row in page.doc.cssselect("table.outbox tbody tr")]


def outbox_code(visitor, live, to: str) -> str:
    """The newest passcode the sandbox sent to ``to`` (its outbox page, filtered with ``?to=``).
    Phones are shown as sent (E.164): ``6505550100`` matches ``+16505550100``."""
    wanted = {to, "+1" + re.sub(r"\D", "", to)[-10:]}
    for cells in outbox_rows(visitor, live, to=to):
        if cells[1] in wanted:
            return re.search(r"\b(\d{6}) is your", cells[4]).group(1)
    raise AssertionError(f"no passcode sent to {to}")


def passcode(visitor, live, page: Page, to: str | None = None) -> Page:
    """Enter the passcode: the one on the page for test identifiers, else the outbox's."""
    code = page.text_of("test-passcode") or outbox_code(visitor, live, to)
    action = "/my-authorizations/verify" if "/my-authorizations" in page.url else "/authorize/verify"
    return page.form(action).set("code", code).submit(visitor)


def decide(visitor, page: Page, decline: bool = False) -> requests.Response:
    """Authorize (or decline) on the consent page; the raw response, redirect not followed."""
    assert page.url.endswith("/authorize/consent"), page.url
    form = page.form("/authorize/consent")
    data = [*form.fields, ("decline", "decline") if decline else ("authorize", "authorize")]
    return visitor.http.post(urljoin(page.url, form.form.get("action")), data=data, allow_redirects=False,
                             timeout=20)


def consent(visitor, live, client_id: str, method: str = "phone", value: str = RESIDENTIAL_PHONE,
            redirect_uri: str | None = None, to: str | None = None) -> Page:
    page = lookup(visitor, authorize(visitor, live, client_id, redirect_uri), method, value)
    assert page.url.endswith("/authorize/verify"), page.body_text
    page = passcode(visitor, live, page, to)
    assert page.url.endswith("/authorize/consent"), page.body_text
    return page


def code_from(response: requests.Response) -> str:
    assert response.status_code in (302, 303), response.text[:300]
    return parse_qs(urlsplit(response.headers["Location"]).query)["code"][0]


def exchange(live, code: str, client_id: str, secret: str, redirect_uri: str) -> dict:
    resp = requests.post(live.sandbox_url + "/oauth/token", timeout=10, auth=(client_id, secret),
                         data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})
    assert resp.status_code == 200, resp.text
    return resp.json()


def espi_authorization(live, token: dict) -> requests.Response:
    return requests.get(token["authorizationURI"], headers={"Authorization": f"Bearer {token['access_token']}"},
                        timeout=10)


def sign_in(visitor, live, client_id: str, secret: str) -> Page:
    page = visitor.get(live.sandbox_url + "/dashboard/sign-in")
    return page.form("/dashboard/sign-in").set("client_id", client_id).set("client_secret", secret).submit(visitor)


def exact_form(page: Page, action: str) -> Form:
    """The form posting to exactly ``action`` (Page.form matches a substring)."""
    for form in page.doc.forms:
        if form.get("action") == action:
            return Form(page, form)
    raise AssertionError(f"no form with action {action!r} on {page.url}")

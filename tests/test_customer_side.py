"""The customer's side after the decision: without a redirect_uri the customer ends
on their authorization receipt (reference §1.3-1.5) and can revoke there; "My
authorizations" lists every authorization of their account after lookup and
passcode, and revokes them (§1.10)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from sandbox_steps import (
    RESIDENTIAL_PHONE,
    authorize,
    code_from,
    consent,
    ctx,
    decide,
    espi_authorization,
    exchange,
    lookup,
    passcode,
    servers,
)

from demo.sandbox.models import AuthorizationCodeRow, AuthorizationRow

from conftest import Page, Visitor

CLIENTS = [
    {"client_id": "PCE_receipt01", "client_secret": "receipt-secret-00001", "company_name": "Receipt Co",
     "redirect_uris": ["{site_url}/callback", "https://receipt.example/cb"]},
    {"client_id": "PCE_single001", "client_secret": "single-secret-000001", "company_name": "Single Co",
     "redirect_uris": ["{site_url}/callback"]},
    {"client_id": "PCE_nouris001", "client_secret": "nouris-secret-000001", "company_name": "No URIs Co",
     "redirect_uris": []},
]
COMMERCIAL_EMAIL = "uapi-test-commercial@example.com"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with servers(tmp_path_factory.mktemp("customer"), CLIENTS) as live:
        yield live


def _to_receipt(visitor, live, client_id, method="phone", value=RESIDENTIAL_PHONE) -> Page:
    response = decide(visitor, consent(visitor, live, client_id, method, value))
    assert response.status_code == 303
    location = response.headers["Location"]
    assert "/authorizations/" in location and "/receipt?key=" in location, location
    return visitor.get(live.sandbox_url + location if location.startswith("/") else location)


@pytest.mark.parametrize("client_id", ["PCE_receipt01", "PCE_single001", "PCE_nouris001"])
def test_without_redirect_uri_the_customer_ends_on_the_receipt(live, visitor, client_id):
    page = _to_receipt(visitor, live, client_id, "email", COMMERCIAL_EMAIL)
    assert page.status == 200
    company = {"PCE_receipt01": "Receipt Co", "PCE_single001": "Single Co", "PCE_nouris001": "No URIs Co"}[client_id]
    assert f"You're sharing your energy data with {company}" in page.body_text
    details = page.text_of("receipt-details")
    assert "Interval usage data" in details and "Bills" in details and "2 years of past data" in details
    assert len(page.doc.cssselect("#receipt-meters li")) == 4
    assert "HALF MOON BAY" in page.text_of("receipt-meters")
    with ctx(live).db.session() as s:
        assert s.query(AuthorizationCodeRow).count() == 0     # no code is issued to nobody


def test_receipt_link_is_signed_and_revokes(live, visitor):
    page = _to_receipt(visitor, live, "PCE_receipt01")
    uid = urlsplit(page.url).path.split("/")[2]
    key = parse_qs(urlsplit(page.url).query)["key"][0]
    assert len(key) > len(uid) + 20                  # a signature, not the bare uid
    stranger = Visitor()
    assert stranger.get(live.sandbox_url + f"/authorizations/{uid}/receipt").status == 404      # bare uid
    assert stranger.get(live.sandbox_url + f"/authorizations/{uid}/receipt?key=x{key}").status == 404
    other_uid = str(int(uid) + 1)
    assert stranger.get(live.sandbox_url + f"/authorizations/{other_uid}/receipt?key={key}").status == 404
    # the link works in any browser (as the receipt e-mail's link does)
    page = stranger.get(page.url)
    assert page.status == 200 and "See all my authorizations" in page.body_text
    assert stranger.request("POST", page.url, data={}).status == 400                 # CSRF
    page = page.form("/receipt").submit(stranger)
    assert page.url.endswith(f"key={key}") and "Access revoked" in page.body_text
    assert "revoked" in page.text_of("receipt-status").lower() and not page.doc.cssselect("form[action*=receipt]")
    with ctx(live).db.session() as s:
        row = s.get(AuthorizationRow, uid)
        assert (row.status, row.revoked_by) == (0, "customer")


def test_decline_without_redirect_uri_says_nothing_was_shared(live, visitor):
    response = decide(visitor, consent(visitor, live, "PCE_receipt01"), decline=True)
    assert response.status_code == 303 and response.headers["Location"].endswith("/authorize/declined")
    page = visitor.get(live.sandbox_url + "/authorize/declined")
    assert "Nothing was shared" in page.text_of("declined-status") and "Receipt Co" in page.body_text
    with ctx(live).db.session() as s:
        row = s.query(AuthorizationRow).filter_by(client_id="PCE_receipt01", status=2).first()
        assert row is not None and row.meter_uids == []


def test_a_bad_request_without_redirect_uri_shows_an_error_page(live, visitor):
    page = authorize(visitor, live, "PCE_receipt01", scope="FB=2_3")
    assert page.status == 400 and "isn't valid" in page.body_text
    assert not visitor.history                             # nothing redirected


def test_with_redirect_uri_the_flow_still_redirects(live, visitor):
    redirect_uri = live.site_url + "/callback"
    response = decide(visitor, consent(visitor, live, "PCE_single001", redirect_uri=redirect_uri))
    assert response.headers["Location"].startswith(redirect_uri + "?code=")
    exchange(live, code_from(response), "PCE_single001", "single-secret-000001", redirect_uri)


# ---- My authorizations ----------------------------------------------------------------------

def _my_sign_in(visitor, live, method="phone", value=RESIDENTIAL_PHONE) -> Page:
    page = visitor.get(live.sandbox_url + "/my-authorizations")
    page = lookup(visitor, page, method, value, action="/my-authorizations")
    assert page.url.endswith("/my-authorizations/verify"), page.body_text
    return page


def test_my_authorizations_lists_and_revokes(live, visitor):
    redirect_uri = live.site_url + "/callback"
    customer = Visitor()
    response = decide(customer, consent(customer, live, "PCE_single001", redirect_uri=redirect_uri))
    token = exchange(live, code_from(response), "PCE_single001", "single-secret-000001", redirect_uri)
    uid = token["authorizationURI"].rsplit("/", 1)[1]
    assert espi_authorization(live, token).status_code == 200

    page = _my_sign_in(visitor, live)
    assert page.text_of("test-passcode")                   # a test account: shown on the page
    page = passcode(visitor, live, page)
    assert page.url.endswith("/my-authorizations")
    card = page.doc.cssselect(f'#my-authorizations li[data-uid="{uid}"]')[0]
    text = " ".join(card.text_content().split())
    assert "Single Co" in text and "active" in text and "Interval usage data" in text and "1 meter" in text
    # another account's authorizations are not listed
    with ctx(live).db.session() as s:
        accounts = {s.get(AuthorizationRow, li.get("data-uid")).account_number
                    for li in page.doc.cssselect("#my-authorizations li[data-uid]")}
    assert accounts == {"111111111-1"}

    page = page.form(f"/my-authorizations/{uid}/revoke").submit(visitor)
    assert "Access revoked: Single Co" in page.body_text
    card = page.doc.cssselect(f'#my-authorizations li[data-uid="{uid}"]')[0]
    assert "revoked" in card.text_content() and not card.cssselect("form")
    assert espi_authorization(live, token).status_code == 401
    with ctx(live).db.session() as s:
        assert s.get(AuthorizationRow, uid).revoked_by == "customer"

    # an authorization of another account cannot be revoked from here
    other = Visitor()
    response = decide(other, consent(other, live, "PCE_single001", "email", COMMERCIAL_EMAIL,
                                     redirect_uri=redirect_uri))
    other_uid = exchange(live, code_from(response), "PCE_single001", "single-secret-000001",
                         redirect_uri)["authorizationURI"].rsplit("/", 1)[1]
    csrf = page.form("/my-authorizations/sign-out").fields[0][1]
    assert visitor.request("POST", live.sandbox_url + f"/my-authorizations/{other_uid}/revoke",
                           data={"csrf_token": csrf}).status == 404
    with ctx(live).db.session() as s:
        assert s.get(AuthorizationRow, other_uid).status == 1

    page = page.form("/my-authorizations/sign-out").submit(visitor)
    assert page.doc.cssselect("form[action='/my-authorizations']")           # back to the lookup


def test_my_authorizations_needs_the_passcode(live, visitor):
    page = visitor.get(live.sandbox_url + "/my-authorizations")
    assert not page.doc.cssselect("#my-authorizations")
    assert visitor.get(live.sandbox_url + "/my-authorizations/verify").url.endswith("/my-authorizations")
    page = _my_sign_in(visitor, live)
    assert not visitor.get(live.sandbox_url + "/my-authorizations").doc.cssselect("#my-authorizations")
    right = page.text_of("test-passcode")
    wrong = "000000" if right != "000000" else "111111"
    for left in (4, 3, 2, 1):
        page = page.form("/my-authorizations/verify").set("code", wrong).submit(visitor)
        assert page.status == 422 and f"{left} tr" in page.text_of("otp-error")
    page = page.form("/my-authorizations/verify").set("code", wrong).submit(visitor)
    assert page.url.endswith("/my-authorizations") and "Too many wrong passcodes" in page.text_of("lookup-notice")
    assert not page.doc.cssselect("#my-authorizations")


def test_my_authorizations_lookup_errors_are_explained(live, visitor):
    page = visitor.get(live.sandbox_url + "/my-authorizations")
    page = lookup(visitor, page, "phone", "333-333-3333", action="/my-authorizations")
    assert page.status == 422 and "couldn't find that customer" in page.text_of("lookup-error")
    page = lookup(visitor, page, "phone", "12", action="/my-authorizations")
    assert page.status == 422 and "10 digits" in page.text_of("lookup-error")


def test_my_authorizations_with_test_prefix_uses_the_outbox(live, visitor):
    page = visitor.get(live.sandbox_url + "/my-authorizations")
    page = lookup(visitor, page, "email", "TEST_residential_me@example.com", action="/my-authorizations")
    assert page.text_of("test-passcode") is None
    page = passcode(visitor, live, page, "me@example.com")
    assert page.url.endswith("/my-authorizations") and page.doc.cssselect("form[action='/my-authorizations/sign-out']")
    outbox = visitor.get(live.sandbox_url + "/outbox").body_text
    assert "to see and manage who you share your energy data with" in outbox


def test_index_links_to_my_authorizations(live, visitor):
    page = visitor.get(live.sandbox_url + "/")
    assert page.doc.get_element_by_id("my-authorizations-link").get("href") == "/my-authorizations"

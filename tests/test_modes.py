"""Sandbox vs live mode (reference §1.1): a sandbox-mode registration only reaches
PCE test accounts; a live-mode one also reaches real customers."""
from __future__ import annotations

import pytest
from sandbox_steps import (
    REAL_COMMERCIAL_EMAIL,
    REAL_RESIDENTIAL_PHONE,
    authorize,
    code_from,
    consent,
    ctx,
    decide,
    exchange,
    lookup,
    passcode,
    servers,
    sign_in,
)

from demo.config import ConfigError
from demo.lookup import CustomerDirectory, LookupError_
from demo.paths import CONFIG
from demo.sandbox import portal, registrations
from demo.sandbox.models import AuthorizationRow, ClientRow, OutboxMessage, PendingAuthorization

from conftest import Visitor

CLIENTS = [
    {"client_id": "PCE_sbxmode01", "client_secret": "sandbox-mode-secret-01", "company_name": "Test Company",
     "redirect_uris": ["{site_url}/callback"]},
    {"client_id": "PCE_livemode1", "client_secret": "live-mode-secret-0001", "company_name": "Live Co",
     "redirect_uris": ["{site_url}/callback"], "mode": "live"},
]
REFUSAL = "Test Company is in sandbox mode: it can only receive data from PCE test accounts."


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with servers(tmp_path_factory.mktemp("modes"), CLIENTS) as live:
        yield live


def _counts(live) -> tuple[int, int]:
    with ctx(live).db.session() as s:
        return s.query(AuthorizationRow).count(), s.query(OutboxMessage).count()


@pytest.mark.parametrize("method,value", [("phone", REAL_RESIDENTIAL_PHONE), ("email", REAL_COMMERCIAL_EMAIL),
                                          ("account", "617395028-4"),
                                          ("address", "1847 Belburn Dr, Belmont CA 94002")])
def test_sandbox_mode_refuses_a_real_customer_typed(live, visitor, method, value):
    before = _counts(live)
    page = lookup(visitor, authorize(visitor, live, "PCE_sbxmode01", live.site_url + "/callback"), method, value)
    assert page.status == 422 and page.url.endswith("/authorize/lookup")
    assert REFUSAL in page.text_of("lookup-error")
    assert _counts(live) == before            # no authorization, no passcode sent
    with ctx(live).db.session() as s:
        pending = s.query(PendingAuthorization).filter_by(client_id="PCE_sbxmode01").order_by(
            PendingAuthorization.created.desc()).first()
        assert pending.stage == "lookup" and pending.account_number is None


def test_sandbox_mode_refuses_a_real_customer_prefilled(live, visitor):
    before = _counts(live)
    page = authorize(visitor, live, "PCE_sbxmode01", live.site_url + "/callback",
                     scope="FB=4_16_51;AdditionalScope=auth-phone-650-555-0142")
    assert page.url.endswith("/authorize/lookup")
    assert REFUSAL in page.text_of("lookup-notice")
    assert _counts(live) == before
    # the TEST_ prefix cannot reach a real customer either
    page = lookup(visitor, page, "phone", "TEST_live_residential_5551234567")
    assert page.status == 422 and "TEST_ lookups name a scenario" in page.text_of("lookup-error")
    assert _counts(live) == before


def test_sandbox_mode_still_serves_test_accounts(live, visitor):
    response = decide(visitor, consent(visitor, live, "PCE_sbxmode01", redirect_uri=live.site_url + "/callback"))
    token = exchange(live, code_from(response), "PCE_sbxmode01", "sandbox-mode-secret-01",
                     live.site_url + "/callback")
    with ctx(live).db.session() as s:
        assert s.get(AuthorizationRow, token["authorizationURI"].rsplit("/", 1)[1]).is_test is True


@pytest.mark.parametrize("method,value,to,meters", [
    ("phone", REAL_RESIDENTIAL_PHONE, "6505550142", 1),
    ("email", REAL_COMMERCIAL_EMAIL, REAL_COMMERCIAL_EMAIL, 2),
])
def test_live_mode_authorizes_a_real_customer(live, visitor, method, value, to, meters):
    redirect_uri = live.site_url + "/callback"
    page = lookup(visitor, authorize(visitor, live, "PCE_livemode1", redirect_uri), method, value)
    assert page.url.endswith("/authorize/verify")
    assert page.text_of("test-passcode") is None            # a real customer's passcode is "sent"
    assert to not in page.body_text                         # ... to the contact on file, shown masked
    page = passcode(visitor, live, page, to)
    assert page.url.endswith("/authorize/consent")
    assert len(page.doc.cssselect("fieldset.meters input[type=checkbox]")) == meters
    token = exchange(live, code_from(decide(visitor, page)), "PCE_livemode1", "live-mode-secret-0001", redirect_uri)
    uid = token["authorizationURI"].rsplit("/", 1)[1]
    with ctx(live).db.session() as s:
        row = s.get(AuthorizationRow, uid)
        assert row.is_test is False and len(row.meter_uids) == meters
    dashboard = Visitor()
    sign_in(dashboard, live, "PCE_livemode1", "live-mode-secret-0001")
    row = dashboard.get(live.sandbox_url + "/dashboard/authorizations").doc.cssselect(f'tr[data-uid="{uid}"]')[0]
    assert "real customer" in row.text_content()


def test_live_mode_also_serves_test_accounts(live, visitor):
    redirect_uri = live.site_url + "/callback"
    response = decide(visitor, consent(visitor, live, "PCE_livemode1", redirect_uri=redirect_uri))
    token = exchange(live, code_from(response), "PCE_livemode1", "live-mode-secret-0001", redirect_uri)
    with ctx(live).db.session() as s:
        assert s.get(AuthorizationRow, token["authorizationURI"].rsplit("/", 1)[1]).is_test is True


def test_index_lists_real_customers_apart(live, visitor):
    page = visitor.get(live.sandbox_url + "/")
    assert "visible only to live-mode clients" in page.body_text
    real = page.text_of("real-customers")
    assert "650-555-0142" in real and "live_commercial" in real
    assert "650-555-0142" not in page.text_of("test-customers")
    clients = page.text_of("clients")
    assert "PCE_livemode1" in clients and "live" in clients


# ---- rules without HTTP ---------------------------------------------------------------------

def test_directory_marks_real_customers(live):
    directory: CustomerDirectory = ctx(live).directory
    assert sorted(directory.scenarios) == ["badlogin", "commercial", "residential"]
    assert [c.scenario for c in directory.real_customers] == ["live_residential", "live_commercial"]
    real = directory.find("phone", "(650) 555-0142").customer
    assert real.test is False and len(real.meters) == 1
    assert len(directory.find("account", "6173950284").customer.meters) == 2
    assert directory.find("phone", "111-111-1111").customer.test is True
    with pytest.raises(LookupError_):
        directory.find("phone", "TEST_live_commercial_qa@example.com")


def test_mode_rule():
    directory = CustomerDirectory.from_file(CONFIG / "pce-customers.toml")
    real, test = directory.real_customers[0], directory.test_customers[0]
    sandbox = ClientRow(client_id="PCE_a", company_name="A Co", mode="sandbox")
    live_ = ClientRow(client_id="PCE_b", company_name="B Co", mode="live")
    assert portal.mode_refusal(sandbox, real, "PCE") == (
        "A Co is in sandbox mode: it can only receive data from PCE test accounts. Nothing was shared.")
    assert portal.mode_refusal(sandbox, test, "PCE") is None
    assert portal.mode_refusal(live_, real, "PCE") is None


def test_mode_comes_from_config():
    row = ClientRow(client_id="PCE_c")
    registrations.apply_config(row, {"client_id": "PCE_c", "client_secret": "x", "mode": "live"}, credentials=True)
    assert row.mode == "live" and row.user_email == "dev@pce-c.example" and row.user_uid.isdigit()
    registrations.apply_config(row, {"client_id": "PCE_c", "client_secret": "x"}, credentials=True)
    assert row.mode == "sandbox"
    with pytest.raises(ConfigError):
        registrations.apply_config(row, {"client_id": "PCE_c", "client_secret": "x", "mode": "prod"}, credentials=True)

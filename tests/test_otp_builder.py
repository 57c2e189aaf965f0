"""The manual passcode testing page: demo.site.otp_test on its own (unit and property tests), the
/otp-test page over HTTP (errors, CSRF, the redirect), the whole flow on both origins, and the page
clicked in Chromium with the passcode read from the sandbox outbox."""
from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sandbox_steps import outbox_code

from demo.lookup import CustomerDirectory
from demo.scope import build_scope, parse_scope
from demo.site import otp_test
from demo.site.otp_test import OtpTestError, build

from conftest import Visitor
from flow import NOT_FOUND, decide

REPO = Path(__file__).resolve().parents[1]
DIRECTORY = CustomerDirectory.from_file(REPO / "config" / "pce-customers.toml")
SCENARIOS = [c.scenario for c in DIRECTORY.test_customers]
BLOCKS = [4, 16, 51]


# --- the module on its own ------------------------------------------------------------------------

def test_scenarios_are_the_directorys_test_scenarios():
    found = otp_test.scenarios(DIRECTORY.customers)
    assert [s.name for s in found] == SCENARIOS == ["residential", "commercial", "badlogin"]
    assert all(not name.startswith("live_") for name in SCENARIOS)   # real customers are not offered
    about = {s.name: s for s in found}
    assert "1 meter" in about["residential"].description
    assert "4 meters" in about["commercial"].description
    assert about["badlogin"].what_happens == "The passcode is sent, then the account is not found."
    assert "authorize" in about["residential"].what_happens


def test_email_lookup_and_scope():
    built = build("residential", "  QA@Example.com ", BLOCKS, SCENARIOS)
    assert built.lookup_value == "TEST_residential_qa@example.com"
    assert built.lookup_type == "email" and built.contact.channel == "email"
    assert built.scope == build_scope([4, 16, 51], lookup=("email", "TEST_residential_qa@example.com"))
    assert built.scope == "FB=4_16_51;AdditionalScope=auth-email-TEST%5Fresidential%5Fqa%40example.com"
    assert built.scope_readable == "FB=4_16_51;AdditionalScope=auth-email-TEST_residential_qa@example.com"
    assert parse_scope(built.scope).lookup == ("email", "TEST_residential_qa@example.com")


@pytest.mark.parametrize("typed", ["650-555-0142", "(650) 555-0142", "650.555.0142", "6505550142",
                                   "+1 650 555 0142", "+16505550142", "1-650-555-0142", " 650 555 0142 "])
def test_us_phone_in_any_common_format(typed):
    built = build("commercial", typed, [4], SCENARIOS, DIRECTORY)
    assert built.contact.address == "6505550142"
    assert built.lookup == ("phone", "TEST_commercial_6505550142")
    assert built.contact.channel == "sms"
    assert built.scope_readable == "FB=4;AdditionalScope=auth-phone-TEST_commercial_6505550142"


@pytest.mark.parametrize("typed,normalised", [("+44 20 7946 0958", "+442079460958"),
                                              ("+49 (30) 901820", "+4930901820"),
                                              ("+61-2-9876-5432", "+61298765432")])
def test_e164_numbers_of_other_countries(typed, normalised):
    assert otp_test.parse_contact(typed) == otp_test.Contact("phone", normalised)
    built = build("residential", typed, BLOCKS, SCENARIOS)
    assert built.lookup_value == f"TEST_residential_{normalised}"
    assert parse_scope(built.scope).lookup == ("phone", built.lookup_value)


def test_an_international_phone_round_trips_through_the_sandbox_lookup():
    built = build("residential", "+44 20 7946 0958", BLOCKS, SCENARIOS, DIRECTORY)
    result = DIRECTORY.find("phone", built.lookup_value)
    assert result.customer.scenario == "residential"
    assert result.contact.channel == "sms" and result.contact.address == "+442079460958"


@pytest.mark.parametrize("typed,message", [
    ("", "Enter your phone number or email address."),
    ("   ", "Enter your phone number or email address."),
    ("555-0142", "A US phone number has 10 digits"),
    ("650-555-01422", "A US phone number has 10 digits"),
    ("150-555-0142", "never start with 0 or 1"),
    ("650-155-0142", "never start with 0 or 1"),
    ("650 555 0142 ext 3", "neither a phone number"),
    ("650 555 0142 #3", "only digits, spaces, dashes"),
    ("+44 20", "8 to 15 digits"),
    ("+0 650 555 0142", "country code, which never starts with 0"),
    ("+1 650 555", "A US phone number has 10 digits"),
    ("650+5550142", "only digits, spaces, dashes"),
    ("qa@", "looks like name@example.com"),
    ("@example.com", "looks like name@example.com"),
    ("qa@example", "is not a domain name"),
    ("qa@example.c", "is not a domain name"),
    ("qa@-example.com", "is not a domain name"),
    ("qa@exa_mple.com", "is not a domain name"),
    ("q a@example.com", "before the @ may have"),
    ("qa..x@example.com", "before the @ may have"),
    (".qa@example.com", "before the @ may have"),
    ("qa;x@example.com", "before the @ may have"),
    ("a@b@example.com", "before the @ may have"),
    ("x" * 65 + "@example.com", "at most 64 characters"),
    ("qa@" + "a" * 64 + ".com", "is not a domain name"),
    ("q@" + ("a" * 60 + ".") * 5 + "com", "too long: at most 254"),
    ("x" * 300, "too long"),
    ("josé@example.com", "plain letters"),
    ("qa@exämple.com", "plain letters"),
    ("650\n555 0142", "plain letters"),
])
def test_bad_contacts_get_a_clear_message(typed, message):
    with pytest.raises(OtpTestError) as caught:
        build("residential", typed, BLOCKS, SCENARIOS)
    assert set(caught.value.errors) == {"contact"}
    assert message in caught.value.errors["contact"]


def test_reasonable_emails_are_accepted_and_lower_cased():
    for typed in ("qa.person+otp@mail.example.org", "o'brien@example.ie", "x_y@sub-domain.example.co.uk",
                  "a@xn--exmple-cua.com", "QA@EXAMPLE.COM"):
        assert otp_test.parse_contact(typed) == otp_test.Contact("email", typed.lower())


def test_scenario_must_be_a_test_scenario_of_the_directory():
    assert build("Commercial", "qa@example.com", BLOCKS, SCENARIOS).scenario == "commercial"
    for wrong in ("", "live_residential", "residential_", "TEST_residential", "nope"):
        with pytest.raises(OtpTestError) as caught:
            build(wrong, "qa@example.com", BLOCKS, SCENARIOS)
        assert set(caught.value.errors) == {"scenario"}
        assert "residential, commercial, badlogin" in caught.value.errors["scenario"]


@pytest.mark.parametrize("blocks,message", [([], "at least one"), (None, "at least one"),
                                            (["4", "5"], "'5' is not a function block you can ask for"),
                                            (["abc"], "'abc' is not"), (["٤"], "is not"), ([-4], "is not")])
def test_function_blocks_are_checked(blocks, message):
    with pytest.raises(OtpTestError) as caught:
        build("residential", "qa@example.com", blocks, SCENARIOS)
    assert set(caught.value.errors) == {"function_blocks"}
    assert message in caught.value.errors["function_blocks"]


def test_function_blocks_from_strings_sorted_once():
    built = build("residential", "qa@example.com", ["51", "4", " 4 ", 39], SCENARIOS)
    assert built.function_blocks == (4, 39, 51)
    assert built.scope.startswith("FB=4_39_51;")


def test_every_wrong_field_is_reported_at_once():
    with pytest.raises(OtpTestError) as caught:
        build("nope", "not a contact", [], SCENARIOS)
    assert set(caught.value.errors) == {"scenario", "contact", "function_blocks"}


def test_configured_blocks():
    assert otp_test.configured_blocks("FB=4_16_51") == [4, 16, 51]
    assert otp_test.configured_blocks("FB=1_3_4_51;HistoryLength=100") == [4, 51]
    assert otp_test.configured_blocks("FB=1_3") == [4, 16, 51]
    assert otp_test.configured_blocks("garbage") == [4, 16, 51]


def test_outbox_url_is_filtered_and_encoded():
    contact = otp_test.parse_contact("QA+otp@example.com")
    assert otp_test.outbox_url("http://127.0.0.1:5001/", contact) == \
        "http://127.0.0.1:5001/outbox?to=qa%2Botp%40example.com"
    assert otp_test.outbox_url("http://h:1", otp_test.parse_contact("(650) 555-0142")) == \
        "http://h:1/outbox?to=6505550142"


def test_delivery_note_reads_the_settings():
    assert "only recorded in the sandbox outbox" in otp_test.delivery_note({}, "email")
    assert "only recorded in the sandbox outbox" in otp_test.delivery_note({"sandbox_smtp_host": ""}, "sms")
    assert otp_test.delivery_note({"sandbox_smtp_host": "smtp.example.com"}, "email") == \
        "Email: really sent through the SMTP server smtp.example.com."
    assert "really sent through Twilio" in otp_test.delivery_note({"sandbox_twilio_account_sid": "AC1"}, "sms")
    assert "only recorded" in otp_test.delivery_note({"sandbox_twilio_account_sid": "AC1"}, "email")


# --- property tests ---------------------------------------------------------------------------------

anything = st.one_of(st.none(), st.text(max_size=400))
block_lists = st.one_of(st.none(), st.lists(st.one_of(st.text(max_size=5), st.integers(-100, 1000)), max_size=6))


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(scenario=anything, contact=anything, blocks=block_lists, checked=st.booleans())
def test_arbitrary_input_raises_only_the_modules_error(scenario, contact, blocks, checked):
    try:
        built = build(scenario, contact, blocks, SCENARIOS, DIRECTORY if checked else None)
    except OtpTestError as exc:
        assert exc.errors and set(exc.errors) <= {"scenario", "contact", "function_blocks"}
        assert all(isinstance(m, str) and m for m in exc.errors.values())
    else:
        assert parse_scope(built.scope).lookup == built.lookup


@settings(max_examples=300)
@given(contact=st.text(alphabet=st.characters(codec="ascii"), max_size=80)
       | st.from_regex(r"\+?[0-9 ().\-]{0,20}", fullmatch=True)
       | st.emails())
def test_contact_like_input_raises_only_the_modules_error(contact):
    try:
        otp_test.parse_contact(contact)
    except OtpTestError as exc:
        assert set(exc.errors) == {"contact"}


_atext = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
_atom = st.text(alphabet=_atext, min_size=1, max_size=12)
_label = st.from_regex(r"[a-zA-Z0-9]([a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
emails = st.builds(lambda atoms, labels, tld: ".".join(atoms) + "@" + ".".join(labels) + "." + tld,
                   st.lists(_atom, min_size=1, max_size=3), st.lists(_label, min_size=1, max_size=3),
                   st.from_regex(r"[a-zA-Z]{2,6}", fullmatch=True))
_digits3 = st.tuples(st.integers(2, 9), st.integers(0, 99)).map(lambda t: f"{t[0]}{t[1]:02d}")
us_phones = st.builds(
    lambda area, exchange, line, fmt: (fmt.format(a=area, e=exchange, n=f"{line:04d}"),
                                       f"{area}{exchange}{line:04d}"),
    _digits3, _digits3, st.integers(0, 9999),
    st.sampled_from(["{a}-{e}-{n}", "({a}) {e}-{n}", "{a}.{e}.{n}", "{a}{e}{n}", "+1 {a} {e} {n}",
                     "+1{a}{e}{n}", "1-{a}-{e}-{n}", " {a} {e} {n} "]))


@settings(max_examples=300)
@given(scenario=st.sampled_from(SCENARIOS), email=emails)
def test_round_trip_email(scenario, email):
    built = build(scenario, email, BLOCKS, SCENARIOS, DIRECTORY)
    _assert_sandbox_reads(built, scenario, "email", email.lower())


@settings(max_examples=300)
@given(scenario=st.sampled_from(SCENARIOS), phone=us_phones)
def test_round_trip_us_phone(scenario, phone):
    typed, digits = phone
    built = build(scenario, typed, BLOCKS, SCENARIOS, DIRECTORY)
    _assert_sandbox_reads(built, scenario, "phone", digits)


def _assert_sandbox_reads(built, scenario: str, lookup_type: str, address: str) -> None:
    """What the sandbox does with the authorize request: read the prefill from the scope, find it."""
    assert (built.lookup_type, built.contact.address) == (lookup_type, address)
    prefill_type, prefill_value = parse_scope(built.scope).lookup
    assert (prefill_type, prefill_value) == (lookup_type, f"TEST_{scenario}_{address}")
    result = DIRECTORY.find(prefill_type, prefill_value)
    assert result.customer is not None and result.customer.scenario == scenario
    assert result.test_contact
    assert result.contact.address == address
    assert result.contact.channel == ("email" if lookup_type == "email" else "sms")


# --- the page over HTTP --------------------------------------------------------------------------------

def _page(visitor, live):
    page = visitor.get(live.site_url + "/otp-test")
    assert page.status == 200, page.text[:300]
    return page


def _fill(visitor, live, scenario="residential", contact="qa@example.com", blocks=("4", "16", "51")):
    form = _page(visitor, live).form("/otp-test").set("scenario", scenario).set("contact", contact)
    return form.set("function_blocks", *blocks)


def _post(visitor, form):
    """Submit without following the redirect."""
    return visitor.http.post(form.page.url, data=form.fields, allow_redirects=False, timeout=20)


def test_the_page_offers_the_scenarios_and_defaults(live, visitor):
    page = _page(visitor, live)
    radios = page.doc.cssselect("input[name=scenario]")
    assert [r.get("value") for r in radios] == SCENARIOS
    assert [r.get("value") for r in radios if r.checked] == ["residential"]
    ticked = [c.get("value") for c in page.doc.cssselect("input[name=function_blocks]") if c.checked]
    assert ticked == ["4", "16", "51"]           # the configured scope's FB=4_16_51
    assert "then the account is not found" in page.text_of("scenario-badlogin-about")
    assert "only recorded in the sandbox outbox" in page.text_of("delivery-email")
    assert "only recorded in the sandbox outbox" in page.text_of("delivery-sms")
    assert page.doc.cssselect("#otp-preview-body")[0].get("hidden") is not None
    assert page.doc.get_element_by_id("contact").get("aria-invalid") is None
    csp = page.response.headers["Content-Security-Policy"]
    assert f"form-action 'self' {live.sandbox_url}" in csp   # the 303 after the POST goes there


def test_missing_csrf_is_refused(live, visitor):
    _page(visitor, live)
    resp = visitor.http.post(live.site_url + "/otp-test", allow_redirects=False, timeout=10,
                             data={"scenario": "residential", "contact": "qa@example.com", "function_blocks": "4"})
    assert resp.status_code == 400
    assert "This form has expired" in resp.text


def test_bad_contact_is_shown_next_to_the_field(live, visitor):
    resp = _post(visitor, _fill(visitor, live, scenario="commercial", contact="555-01", blocks=("4", "39")))
    assert resp.status_code == 400
    page = _as_page(resp)
    contact = page.doc.get_element_by_id("contact")
    assert contact.get("aria-invalid") == "true"
    assert "contact-errors" in contact.get("aria-describedby").split()
    assert "contact-help" in contact.get("aria-describedby").split()
    assert "A US phone number has 10 digits" in page.text_of("contact-errors")
    assert contact.get("value") == "555-01"                                   # the values are kept
    assert [r.get("value") for r in page.doc.cssselect("input[name=scenario]") if r.checked] == ["commercial"]
    assert [c.get("value") for c in page.doc.cssselect("input[name=function_blocks]") if c.checked] == ["4", "39"]
    assert page.doc.get_element_by_id("scenario-errors", None) is None


def test_bad_scenario_and_blocks_are_shown_too(live, visitor):
    form = _fill(visitor, live, scenario="live_residential", contact="qa@example.com", blocks=())
    page = _as_page(_post(visitor, form))
    assert page.status == 400
    assert "Choose one of the test scenarios" in page.text_of("scenario-errors")
    assert page.doc.get_element_by_id("scenario").get("aria-describedby") == "scenario-errors"
    assert all(r.get("aria-invalid") == "true" for r in page.doc.cssselect("input[name=scenario]"))
    assert "Choose at least one function block" in page.text_of("function_blocks-errors")
    assert page.doc.get_element_by_id("contact").get("aria-invalid") is None
    assert page.doc.get_element_by_id("contact").get("value") == "qa@example.com"


def test_start_the_flow_redirects_to_the_sandbox_with_the_scope(live, visitor):
    resp = _post(visitor, _fill(visitor, live, scenario="badlogin", contact="(650) 555-0199", blocks=("4", "51")))
    assert resp.status_code == 303
    location = resp.headers["Location"]
    assert location.startswith(live.sandbox_url + "/oauth/authorize?")
    params = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    assert params["scope"] == "FB=4_51;AdditionalScope=auth-phone-TEST%5Fbadlogin%5F6505550199"
    assert params["client_id"] == live.settings["client_id"]
    assert params["code_challenge_method"] == "S256" and params["state"]
    assert f"form-action 'self' {live.sandbox_url}" in resp.headers["Content-Security-Policy"]
    runs = visitor.get(live.site_url + "/runs")
    run_link = runs.doc.cssselect("#runs tbody tr a")[0].get("href")
    data = visitor.get(live.site_url + run_link + ".json").response.json()
    assert data["status"] == "pending"
    assert data["lookup"] == {"type": "phone", "value": "TEST_badlogin_6505550199"}
    assert data["requested_scope"] == params["scope"]
    assert data["exchanges"][0]["kind"] == "authorize"      # noted like the home page's Connect


def test_preview_without_javascript(live, visitor):
    page = visitor.get(live.site_url + "/otp-test", params={"scenario": "commercial", "contact": "QA+1@Example.com",
                                                           "function_blocks": ["16"]})
    assert page.status == 200
    assert page.text_of("otp-lookup") == "TEST_commercial_qa+1@example.com"
    assert page.text_of("otp-scope") == "FB=16;AdditionalScope=auth-email-TEST_commercial_qa+1@example.com"
    assert page.doc.cssselect("#otp-preview-body")[0].get("hidden") is None
    assert page.doc.get_element_by_id("otp-outbox").get("href") == \
        live.sandbox_url + "/outbox?to=qa%2B1%40example.com"
    bad = visitor.get(live.site_url + "/otp-test", params={"scenario": "residential", "contact": "nobody"})
    assert bad.status == 422
    assert "neither a phone number (650-555-0142) nor an email address" in bad.text_of("contact-errors")
    unticked = visitor.get(live.site_url + "/otp-test", params={"scenario": "residential", "contact": "qa@example.com"})
    assert unticked.status == 422
    assert "Choose at least one function block" in unticked.text_of("function_blocks-errors")
    linked = visitor.get(live.site_url + "/otp-test", params={"scenario": "badlogin"})   # a link: no errors
    assert linked.status == 200 and not linked.doc.cssselect(".field-errors")
    assert [r.get("value") for r in linked.doc.cssselect("input[name=scenario]") if r.checked] == ["badlogin"]


def test_preview_json(live, visitor):
    ok = visitor.get(live.site_url + "/otp-test/preview.json",
                     params={"scenario": "residential", "contact": "+1 (650) 555-0142",
                             "function_blocks": ["51", "4", "16"]}).response
    assert ok.status_code == 200
    assert ok.json() == {
        "errors": {}, "lookup": "TEST_residential_6505550142", "lookup_type": "phone", "channel": "sms",
        "scope": "FB=4_16_51;AdditionalScope=auth-phone-TEST%5Fresidential%5F6505550142",
        "scope_readable": "FB=4_16_51;AdditionalScope=auth-phone-TEST_residential_6505550142",
        "outbox_url": live.sandbox_url + "/outbox?to=6505550142"}
    bad = visitor.get(live.site_url + "/otp-test/preview.json",
                      params={"scenario": "x", "contact": "qa@@", "function_blocks": "7"}).response
    assert bad.status_code == 200        # a preview of what is typed so far (no console errors as you type)
    assert set(bad.json()["errors"]) == {"scenario", "contact", "function_blocks"}


def test_another_custodian_really_sends(live, visitor):
    settings_page = visitor.get(live.site_url + "/settings")
    saved = settings_page.form("/settings").set("authorize_url", "https://utilityapi.example/oauth/authorize") \
        .submit(visitor)
    assert saved.status == 200, saved.body_text[:300]
    page = _page(visitor, live)
    assert "really sends the passcode" in page.text_of("delivery")
    assert "https://utilityapi.example" in page.text_of("delivery")
    assert "https://utilityapi.example" in page.response.headers["Content-Security-Policy"]
    form = page.form("/otp-test").set("contact", "qa@example.com").set("scenario", "residential")
    resp = _post(visitor, form)
    assert resp.status_code == 303
    assert resp.headers["Location"].startswith("https://utilityapi.example/oauth/authorize?")
    preview = visitor.get(live.site_url + "/otp-test", params={"scenario": "residential", "contact": "qa@example.com"})
    assert preview.doc.get_element_by_id("otp-outbox", None) is None    # no sandbox outbox for it
    # not checked against the sandbox: numbers it cannot read still go to the real platform
    intl = _post(visitor, page.form("/otp-test").set("contact", "+44 20 7946 0958"))
    assert intl.status_code == 303
    assert "TEST%255Fresidential%255F%252B442079460958" in intl.headers["Location"]


def test_delivery_settings_are_read_from_the_configuration(tmp_path):
    from demo.config import load_config
    from demo.site import create_app

    app = create_app(load_config({"instance_path": str(tmp_path), "secret_key": "k",
                                  "sandbox_smtp_host": "smtp.example.net", "sandbox_twilio_account_sid": "AC123"},
                                 env={}))
    html = app.test_client().get("/otp-test").get_data(as_text=True)
    assert "Email: really sent through the SMTP server smtp.example.net." in html
    assert "Text message: really sent through Twilio." in html
    assert "AC123" not in html


# --- the whole flow on both origins -------------------------------------------------------------------

def test_whole_flow_residential_by_email(live, visitor):
    contact = "otp.flow+residential@example.org"
    page = _fill(visitor, live, "residential", contact).submit(visitor)
    assert page.url.startswith(live.sandbox_url) and page.url.endswith("/authorize/verify"), page.body_text[:300]
    assert page.text_of("test-passcode") is None                 # sent to the tester, not shown
    code = outbox_code(Visitor(), live, contact)                 # the outbox is open to anyone
    page = page.form("/authorize/verify").set("code", code).submit(visitor)
    assert page.url.endswith("/authorize/consent"), page.body_text[:300]
    page = decide(visitor, page)
    assert re.match(re.escape(live.site_url) + r"/runs/[\w-]+$", page.url), page.url
    assert "Authorized" in page.text_of("status")
    assert len(page.doc.cssselect("#meters tbody tr")) == 1      # the residential meter
    data = visitor.get(page.url + ".json").response.json()
    assert data["lookup"] == {"type": "email", "value": f"TEST_residential_{contact}"}
    assert len(data["meters"]) == 1


def test_whole_flow_badlogin_by_phone(live, visitor):
    page = _fill(visitor, live, "badlogin", "+1 (650) 555-0183", blocks=("4",)).submit(visitor)
    assert page.url.endswith("/authorize/verify"), page.body_text[:300]
    code = outbox_code(Visitor(), live, "6505550183")
    page = page.form("/authorize/verify").set("code", code).submit(visitor)
    assert page.url.endswith("/authorize/lookup")
    assert NOT_FOUND in page.text_of("lookup-notice")


def _as_page(resp):
    from conftest import Page

    return Page(resp)


# --- in a browser -------------------------------------------------------------------------------------

@pytest.mark.browser
def test_fill_the_page_and_type_the_passcode_in_chromium(live, browser):
    from a11y import assert_accessible
    from browsing import SCREENSHOTS, open_page
    from playwright.sync_api import expect

    page = open_page(browser)
    context, problems = page.context, page.problems
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(live.site_url + "/otp-test")
        # a wrong contact: the server's message next to the field, the page still accessible
        page.get_by_label("Your phone number or email address").fill("555-01")
        page.get_by_role("button", name="Start the flow").click()
        expect(page.locator("#contact-errors")).to_contain_text("A US phone number has 10 digits")
        expect(page.locator("#contact")).to_have_attribute("aria-invalid", "true")
        expect(page.locator("#contact")).to_have_value("555-01")
        assert_accessible(page, "site-otp-test with an error")
        page.get_by_label("commercial").check()
        page.get_by_label("Your phone number or email address").fill("Browser.QA@Example.com")
        # otp-test.js shows the lookup as you type (built by the server)
        expect(page.locator("#otp-lookup")).to_have_text("TEST_commercial_browser.qa@example.com")
        expect(page.locator("#otp-scope")).to_have_text(
            "FB=4_16_51;AdditionalScope=auth-email-TEST_commercial_browser.qa@example.com")
        expect(page.locator("#otp-outbox")).to_have_attribute(
            "href", live.sandbox_url + "/outbox?to=browser.qa%40example.com")
        # the submit's error is gone once the preview reads the contact fine
        expect(page.locator("#contact-errors")).to_have_count(0)
        expect(page.locator("#contact")).not_to_have_attribute("aria-invalid", "true")
        assert "contact-errors" not in (page.locator("#contact").get_attribute("aria-describedby") or "")
        page.screenshot(path=str(SCREENSHOTS / "otp-test-01-builder.png"), full_page=True)
        page.get_by_role("button", name="Start the flow").click()
        page.wait_for_url(re.compile(re.escape(live.sandbox_url) + r"/.*authorize/verify$"))
        expect(page.locator("#test-passcode")).to_have_count(0)
        code = outbox_code(Visitor(), live, "browser.qa@example.com")
        page.get_by_label("Passcode").fill(code)
        page.screenshot(path=str(SCREENSHOTS / "otp-test-02-passcode.png"), full_page=True)
        page.get_by_role("button", name="Continue").click()
        page.wait_for_url(re.compile(re.escape(live.sandbox_url) + r"/.*authorize/consent$"))
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(re.compile(re.escape(live.site_url) + r"/runs/[\w-]+$"))
        expect(page.locator("#status")).to_contain_text("Authorized")
        expect(page.locator("#meters tbody tr")).to_have_count(4)
        page.screenshot(path=str(SCREENSHOTS / "otp-test-03-run.png"), full_page=True)
    finally:
        context.close()
    assert not problems.csp, problems.csp
    assert not problems.page_errors, problems.page_errors
    expected = "status of 400 (BAD REQUEST) [" + live.site_url + "/otp-test]"   # the wrong contact, on purpose
    assert not [e for e in problems.errors if not e.endswith(expected)], problems.errors

"""Unit tests for demo.lookup: identifier normalisation, the PCE test customers
and TEST_<scenario>_<contact> lookups (no Flask, no HTTP)."""
from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.lookup import (
    LOOKUP_TYPES,
    NOT_FOUND,
    Contact,
    CustomerDirectory,
    LookupError_,
    LookupResult,
    normalise,
    normalise_account,
    normalise_address,
    normalise_email,
    normalise_phone,
)
from demo.paths import CONFIG

CUSTOMERS_FILE = CONFIG / "pce-customers.toml"


@pytest.fixture(scope="module")
def directory() -> CustomerDirectory:
    return CustomerDirectory.from_file(CUSTOMERS_FILE)


# --- phone -----------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "111-111-1111",
    "(111) 111-1111",
    "1111111111",
    "+1 111 111 1111",
    "111.111.1111",
    "  111 111 1111  ",
    "11111111111",          # leading country code 1
])
def test_normalise_phone_accepts_common_spellings(raw):
    assert normalise_phone(raw) == "1111111111"


def test_normalise_phone_keeps_digit_order():
    assert normalise_phone("(555) 123-4567") == "5551234567"


@pytest.mark.parametrize("raw", [
    "111-111-111",          # 9 digits
    "111-111-1111-11",      # 12 digits
    "+44 111 111 1111",     # 12 digits, not a +1 number
    "21111111111",          # 11 digits not starting with 1
    "phone",                # letters only
    "111-ABC-1111",         # letters in place of digits
    "",
])
def test_normalise_phone_rejects_bad_numbers(raw):
    with pytest.raises(LookupError_, match="10 digits"):
        normalise_phone(raw)


# --- email -----------------------------------------------------------------

@pytest.mark.parametrize("raw", [
    "uapi-test-residential@example.com",
    "UAPI-Test-Residential@Example.COM",
    "  uapi-test-residential@EXAMPLE.com ",
])
def test_normalise_email_is_case_insensitive(raw):
    assert normalise_email(raw) == "uapi-test-residential@example.com"


@pytest.mark.parametrize("raw", [
    "",
    "no-at-sign.example.com",
    "name@",
    "@example.com",
    "name@example",           # no dot in domain
    "na me@example.com",
    "a@b@example.com",
])
def test_normalise_email_rejects_bad_addresses(raw):
    with pytest.raises(LookupError_, match="name@example.com"):
        normalise_email(raw)


# --- account ---------------------------------------------------------------

@pytest.mark.parametrize("raw", ["111111111-1", "1111111111", "111111111 1", " 111 111 111 - 1 "])
def test_normalise_account_ignores_dash_and_spaces(raw):
    assert normalise_account(raw) == "1111111111"


@pytest.mark.parametrize("raw", ["", "111111111/1", "1111.11111", "---"])
def test_normalise_account_rejects_other_characters(raw):
    with pytest.raises(LookupError_, match="account number"):
        normalise_account(raw)


# --- address ---------------------------------------------------------------

CANON_ADDRESS = "333 W EL CAMINO REAL STE 600 SUNNYVALE CA 94087"


@pytest.mark.parametrize("raw", [
    "333 W EL CAMINO REAL STE 600, SUNNYVALE CA 94087",
    "333 w el camino real ste 600, sunnyvale ca 94087",
    "333 W El Camino Real Ste 600 Sunnyvale CA 94087",
    "  333   W  EL CAMINO   REAL STE 600 ,  SUNNYVALE,  CA 94087 ",
    "333 W. EL CAMINO REAL STE #600, SUNNYVALE, CA. 94087",
    "333 W EL CAMINO REAL STE 600\tSUNNYVALE CA\n94087",
])
def test_normalise_address_any_case_commas_spaces_hash(raw):
    assert normalise_address(raw) == CANON_ADDRESS


@pytest.mark.parametrize("raw", ["", "   ", ", , #", "..."])
def test_normalise_address_rejects_empty(raw):
    with pytest.raises(LookupError_, match="billing address"):
        normalise_address(raw)


# --- normalise dispatcher --------------------------------------------------

def test_normalise_unknown_type():
    with pytest.raises(LookupError_, match="Unknown lookup type"):
        normalise("ssn", "123")


@pytest.mark.parametrize("lookup_type", LOOKUP_TYPES)
def test_normalise_rejects_over_300_chars(lookup_type):
    with pytest.raises(LookupError_, match="too long"):
        normalise(lookup_type, "1" * 301)


def test_normalise_allows_exactly_300_chars():
    assert normalise("address", "A" * 300) == "A" * 300


# --- the PCE directory -----------------------------------------------------

SCENARIO_IDENTIFIERS = {
    "residential": {
        "phone": "111-111-1111",
        "email": "uapi-test-residential@example.com",
        "address": "333 W EL CAMINO REAL STE 600, SUNNYVALE CA 94087",
        "account": "111111111-1",
    },
    "commercial": {
        "phone": "222-222-2222",
        "email": "uapi-test-commercial@example.com",
        "address": "333 W EL CAMINO REAL STE 700, SUNNYVALE CA 94087",
        "account": "222222222-2",
    },
    "badlogin": {
        "phone": "333-333-3333",
        "email": "uapi-test-badlogin@example.com",
        "address": "333 W EL CAMINO REAL STE 800, SUNNYVALE CA 94087",
        "account": "333333333-3",
    },
}
METER_COUNTS = {"residential": 1, "commercial": 4}

FINDABLE_CASES = [
    (scenario, lookup_type, value)
    for scenario, ids in SCENARIO_IDENTIFIERS.items() if scenario != "badlogin"
    for lookup_type, value in ids.items()
]


def test_directory_has_the_three_scenarios(directory):
    assert sorted(directory.scenarios) == ["badlogin", "commercial", "residential"]
    assert directory.scenario("RESIDENTIAL").scenario == "residential"
    assert directory.scenario("nosuch") is None


@pytest.mark.parametrize("scenario,lookup_type,value", FINDABLE_CASES)
def test_every_identifier_finds_its_scenario(directory, scenario, lookup_type, value):
    result = directory.find(lookup_type, value)
    assert isinstance(result, LookupResult)
    assert result.found
    assert result.customer.scenario == scenario
    assert len(result.customer.meters) == METER_COUNTS[scenario]
    assert result.test_contact is False
    assert result.message == ""
    # The passcode goes to the contact on file: email for email lookups, else SMS.
    if lookup_type == "email":
        assert result.contact == Contact("email", SCENARIO_IDENTIFIERS[scenario]["email"])
    else:
        assert result.contact == Contact("sms", normalise_phone(SCENARIO_IDENTIFIERS[scenario]["phone"]))


@pytest.mark.parametrize("lookup_type,value", [
    ("phone", "(111) 111-1111"),
    ("phone", "+1 111.111.1111"),
    ("email", "UAPI-TEST-RESIDENTIAL@EXAMPLE.COM"),
    ("account", "1111111111"),
    ("account", "111111111 1"),
    ("address", "333 w el camino real ste 600 sunnyvale ca 94087"),
    ("address", "333 W EL CAMINO REAL STE #600,  SUNNYVALE, CA 94087"),
])
def test_typed_variants_find_residential(directory, lookup_type, value):
    result = directory.find(lookup_type, value)
    assert result.found and result.customer.scenario == "residential"


@pytest.mark.parametrize("lookup_type,value", list(SCENARIO_IDENTIFIERS["badlogin"].items()))
def test_badlogin_identifiers_are_not_found(directory, lookup_type, value):
    result = directory.find(lookup_type, value)
    assert not result.found
    assert result.customer is None and result.contact is None
    assert result.message == NOT_FOUND
    assert result.message.startswith("We couldn't find that customer")


@pytest.mark.parametrize("lookup_type,value", [
    ("phone", "999-999-9999"),
    ("email", "nobody@example.com"),
    ("account", "444444444-4"),
    ("address", "1 NOWHERE ST, SAN MATEO CA 94402"),
    ("address", "333 W EL CAMINO REAL STE 900, SUNNYVALE CA 94087"),
])
def test_unknown_identifiers_are_not_found(directory, lookup_type, value):
    result = directory.find(lookup_type, value)
    assert not result.found
    assert result.message == NOT_FOUND


def test_by_account(directory):
    assert directory.by_account("2222222222").scenario == "commercial"
    assert directory.by_account("999999999-9") is None


def test_find_rejects_malformed_input(directory):
    with pytest.raises(LookupError_):
        directory.find("phone", "12345")
    with pytest.raises(LookupError_):
        directory.find("email", "not-an-email")
    with pytest.raises(LookupError_):
        directory.find("nosuchtype", "111-111-1111")


@pytest.mark.parametrize("lookup_type", LOOKUP_TYPES)
def test_find_rejects_very_long_input(directory, lookup_type):
    with pytest.raises(LookupError_, match="too long"):
        directory.find(lookup_type, "1" * 301)


@pytest.mark.parametrize("value", [
    "TEST_residential_" + "a" * 400 + "@example.com",
    "TEST_residential_" + " " * 300 + "5551234567",
])
def test_find_rejects_very_long_test_input(directory, value):
    assert len(value) > 300
    with pytest.raises(LookupError_):
        directory.find("phone", value)


# --- TEST_<scenario>_<contact> ---------------------------------------------

def test_test_lookup_with_phone(directory):
    result = directory.find("phone", "TEST_residential_5551234567")
    assert result.found
    assert result.customer.scenario == "residential"
    assert result.contact == Contact("sms", "5551234567")
    assert result.test_contact is True


def test_test_lookup_phone_is_normalised(directory):
    result = directory.find("phone", "TEST_commercial_+1 (555) 123-4567")
    assert result.customer.scenario == "commercial"
    assert result.contact == Contact("sms", "5551234567")


def test_full_width_digits_read_as_ascii(directory):
    result = directory.find("phone", "１１１-１１１-１１１１")
    assert result.customer.scenario == "residential"
    test = directory.find("phone", "TEST_commercial_５５５１２３４５６７")
    assert test.contact == Contact("sms", "5551234567")


def test_test_lookup_international_phone_is_e164(directory):
    result = directory.find("phone", "TEST_residential_+44 20 7946 0958")
    assert result.customer.scenario == "residential"
    assert result.contact == Contact("sms", "+442079460958")
    assert result.contact.masked == "+44•••0958"


@pytest.mark.parametrize("value", ["TEST_residential_+44 20", "TEST_residential_+0 20 7946 0958",
                                   "TEST_residential_+44 20 7946 0958 x12"])
def test_test_lookup_bad_international_phone(directory, value):
    with pytest.raises(LookupError_, match="international phone number"):
        directory.find("phone", value)


def test_test_lookup_with_email_case_insensitive_prefix(directory):
    result = directory.find("email", "test_commercial_QA@Example.com")
    assert result.found
    assert result.customer.scenario == "commercial"
    assert result.contact == Contact("email", "qa@example.com")
    assert result.test_contact is True


def test_test_lookup_scenario_name_is_case_insensitive(directory):
    result = directory.find("phone", "Test_Residential_5551234567")
    assert result.customer.scenario == "residential"


@pytest.mark.parametrize("lookup_type", LOOKUP_TYPES)
def test_test_lookup_works_from_any_lookup_type(directory, lookup_type):
    result = directory.find(lookup_type, "TEST_residential_5551234567")
    assert result.customer.scenario == "residential"
    assert result.contact.channel == "sms"


@pytest.mark.parametrize("contact", ["5551234567", "qa@example.com"])
def test_test_badlogin_is_found_for_otp(directory, contact):
    result = directory.find("phone", f"TEST_badlogin_{contact}")
    assert result.found
    assert result.customer.scenario == "badlogin"
    assert result.customer.findable is False
    assert result.test_contact is True


def test_test_lookup_unknown_scenario(directory):
    with pytest.raises(LookupError_) as info:
        directory.find("phone", "TEST_nosuch_5551234567")
    message = str(info.value)
    assert "residential" in message and "commercial" in message and "badlogin" in message


@pytest.mark.parametrize("value", [
    "TEST_residential_",
    "TEST_residential_12345",
    "TEST_residential_qa@",
    "TEST_residential_not a contact",
])
def test_test_lookup_bad_contact(directory, value):
    with pytest.raises(LookupError_):
        directory.find("phone", value)


# --- Contact.masked ---------------------------------------------------------

def test_masked_sms():
    masked = Contact("sms", "5551234567").masked
    assert masked == "(•••) •••-4567"
    assert "555123" not in masked


def test_masked_email():
    masked = Contact("email", "qa.tester@example.com").masked
    assert masked == "q•••@example.com"
    assert "qa.tester" not in masked


# --- find never raises anything but LookupError_ --------------------------

_contacts = st.one_of(st.text(max_size=40), st.emails(), st.from_regex(r"\+?1?[ .()\-0-9]{7,20}", fullmatch=True))
_inputs = st.one_of(
    st.text(max_size=400),
    st.builds(lambda scenario, rest: f"TEST_{scenario}_{rest}",
              st.sampled_from(["residential", "commercial", "badlogin", "RESIDENTIAL", "nosuch", ""]),
              _contacts),
    st.sampled_from([v for ids in SCENARIO_IDENTIFIERS.values() for v in ids.values()]).flatmap(
        lambda v: st.builds(lambda pre, post: pre + v + post, st.text(max_size=5), st.text(max_size=5))),
)


@pytest.mark.parametrize("lookup_type", LOOKUP_TYPES)
@settings(max_examples=300, deadline=None)
@given(value=_inputs)
def test_find_only_raises_lookup_error(directory, lookup_type, value):
    try:
        result = directory.find(lookup_type, value)
    except LookupError_ as exc:
        assert str(exc)  # always a message for the customer
        return
    assert isinstance(result, LookupResult)
    if result.found:
        assert result.contact is not None
        assert result.contact.channel in ("sms", "email")
    else:
        assert result.message == NOT_FOUND

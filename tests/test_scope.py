"""Tests for demo.scope: the Green Button / UtilityAPI scope grammar."""
from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.scope import (
    FUNCTION_BLOCKS,
    LOOKUP_TYPES,
    REQUESTABLE_FUNCTION_BLOCKS,
    AdditionalItem,
    Scope,
    ScopeError,
    auth_item,
    build_scope,
    decode_value,
    describe_function_block,
    encode_value,
    history_length_months,
    parse_relative,
    parse_scope,
)

PCE_ADDRESS = "333 W EL CAMINO REAL STE 600, SUNNYVALE CA 94087"
PCE_ADDRESS_ITEM = ("auth-address-333%20W%20EL%20CAMINO%20REAL%20STE%20600%2C"
                    "%20SUNNYVALE%20CA%2094087")
GRANTED = ("FB=1_3_4_5_8_13_14_18_19_34_35_39_51;IntervalDuration=900_3600;BlockDuration=daily;"
           "HistoryLength=34128000;SubscriptionFrequency=daily;AccountCollection=2")


# --- examples from PCE's and UtilityAPI's pages ------------------------------

@pytest.mark.parametrize("text, lookup", [
    ("FB=4_16_51;AdditionalScope=auth-phone-1111111111", ("phone", "1111111111")),
    ("FB=4_16_51;AdditionalScope=auth-account-111111111-1", ("account", "111111111-1")),
    ("FB=4_16_51;AdditionalScope=auth-phone-111-111-1111", ("phone", "111-111-1111")),
    ("FB=4_16_51;AdditionalScope=auth-email-uapi-test-residential%40example.com",
     ("email", "uapi-test-residential@example.com")),
    ("FB=4_16_51;AdditionalScope=" + PCE_ADDRESS_ITEM, ("address", PCE_ADDRESS)),
])
def test_pce_examples_parse_and_rebuild_byte_identical(text, lookup):
    scope = parse_scope(text)
    assert scope.function_blocks == (4, 16, 51)
    assert scope.lookup == lookup
    assert scope.warnings == ()
    assert scope.to_string() == text
    assert build_scope([4, 16, 51], lookup=lookup) == text
    assert text.endswith(auth_item(*lookup))


def test_auth_item_encoding_matches_pce_page():
    assert auth_item("phone", "1111111111") == "auth-phone-1111111111"
    assert auth_item("email", "uapi-test-residential@example.com") == \
        "auth-email-uapi-test-residential%40example.com"
    assert auth_item("address", PCE_ADDRESS) == PCE_ADDRESS_ITEM
    assert auth_item("phone", None) == "auth-phone"
    assert auth_item("phone", "") == "auth-phone"


def test_encode_value_rule():
    assert encode_value("a-b.c~d_e f,g@h;i=j%k") == "a-b.c~d%5Fe%20f%2Cg%40h%3Bi%3Dj%25k"
    assert decode_value("a-b.c~d%5Fe%20f%2Cg%40h%3Bi%3Dj%25k") == "a-b.c~d_e f,g@h;i=j%k"
    assert decode_value("a@b.com") == "a@b.com"


def test_full_example_with_history_and_options():
    text = "FB=4_16_51;HistoryLength=63072000;AdditionalScope=noedit_meters-all_auth-phone-1111111111"
    scope = parse_scope(text)
    assert scope.history_length == 63072000
    assert scope.noedit and scope.meters_all
    assert [i.kind for i in scope.additional] == ["noedit", "meters-all", "auth"]
    assert scope.get("AdditionalScope") == "noedit_meters-all_auth-phone-1111111111"
    assert scope.to_string() == text


def test_granted_scope_round_trips():
    scope = parse_scope(GRANTED)
    assert scope.function_blocks == (1, 3, 4, 5, 8, 13, 14, 18, 19, 34, 35, 39, 51)
    assert scope.history_length == 34128000
    assert scope.extra == (("IntervalDuration", "900_3600"), ("BlockDuration", "daily"),
                           ("SubscriptionFrequency", "daily"), ("AccountCollection", "2"))
    assert scope.warnings == ()
    for name in ("FB", "IntervalDuration", "BlockDuration", "HistoryLength",
                 "SubscriptionFrequency", "AccountCollection"):
        assert f"{name}={scope.get(name)}" in GRANTED
    assert scope.get("PreferredAuthEndDate") is None and scope.get("BR") is None
    # Canonical order moves HistoryLength right after FB; the meaning is unchanged.
    again = parse_scope(scope.to_string())
    assert again == scope
    assert again.to_string() == scope.to_string()
    assert scope.to_string().startswith("FB=1_3_4_5_8_13_14_18_19_34_35_39_51;HistoryLength=34128000;"
                                        "IntervalDuration=900_3600;BlockDuration=daily;")


def test_pge_trailing_semicolon_and_whitespace():
    scope = parse_scope("  FB=1_3_4_5_13_14_18_19_31_32_35_37_39;IntervalDuration=3600;BlockDuration=daily; \n")
    assert scope.function_blocks[-1] == 39
    assert scope.get("IntervalDuration") == "3600"
    assert not scope.to_string().endswith(";")


def test_iedr_test_scenario_with_underscore():
    scope = parse_scope("FB=4_16_51;AdditionalScope=auth-test-test_residential")
    (item,) = scope.additional
    assert (item.kind, item.name, item.value, item.raw) == \
        ("auth", "test", "test_residential", "auth-test-test_residential")
    assert scope.lookup is None  # "test" is recognised but is not a customer lookup
    assert scope.to_string() == "FB=4_16_51;AdditionalScope=auth-test-test%5Fresidential"
    assert parse_scope(scope.to_string()).additional[0].value == "test_residential"


def test_iedr_combined_items():
    scope = parse_scope("FB=4;AdditionalScope=auth-utility-nyseg_auth-phone-5554443333_noedit")
    assert [(i.kind, i.name, i.value) for i in scope.additional] == [
        ("auth", "utility", "nyseg"), ("auth", "phone", "5554443333"), ("noedit", None, None)]
    assert scope.lookup == ("phone", "5554443333")


def test_lenient_unencoded_values():
    scope = parse_scope("FB=4;AdditionalScope=auth-email-a@b.com_meters-all")
    assert scope.lookup == ("email", "a@b.com")
    assert scope.to_string() == "FB=4;AdditionalScope=auth-email-a%40b.com_meters-all"
    scope = parse_scope(f"FB=4;AdditionalScope=auth-address-{PCE_ADDRESS}")
    assert scope.lookup == ("address", PCE_ADDRESS)
    assert scope.to_string() == "FB=4;AdditionalScope=" + PCE_ADDRESS_ITEM
    # PCE's manual OTP test format has underscores in the value.
    scope = parse_scope("FB=4;AdditionalScope=auth-phone-TEST_residential_6505550100_noedit")
    assert scope.lookup == ("phone", "TEST_residential_6505550100")
    assert scope.noedit


def test_whitespace_around_items_is_ignored():
    scope = parse_scope("FB=4;AdditionalScope=noedit_ meters-all _sou-x _")
    assert [i.raw for i in scope.additional] == ["noedit", "meters-all", "sou-x"]
    assert parse_scope("FB=1;ADDITIONALSCOPE=0 _").to_string() == "FB=1;AdditionalScope=0"


def test_auth_without_value_is_allowed():
    scope = parse_scope("FB=4;AdditionalScope=auth-phone_auth-sso")
    assert [(i.name, i.value) for i in scope.additional] == [("phone", None), ("sso", None)]
    assert scope.lookup is None
    assert scope.to_string() == "FB=4;AdditionalScope=auth-phone_auth-sso"


def test_unknown_items_and_params_are_kept_with_warnings():
    text = ("FB=1_3_8_13;AdditionalScope=Usage_Billing_meters-all;IntervalDuration=900_3600;"
            "BR=12;dataCustodianId=PGE")
    scope = parse_scope(text)
    assert [i.kind for i in scope.additional] == ["unknown", "unknown", "meters-all"]
    assert scope.extra == (("IntervalDuration", "900_3600"), ("BR", "12"), ("dataCustodianId", "PGE"))
    assert any("dataCustodianId" in w for w in scope.warnings)
    assert any("'Usage'" in w for w in scope.warnings)
    assert not any("BR" in w for w in scope.warnings)
    assert scope.get("dataCustodianId") == "PGE"
    assert scope.to_string() == ("FB=1_3_8_13;IntervalDuration=900_3600;BR=12;dataCustodianId=PGE;"
                                 "AdditionalScope=Usage_Billing_meters-all")


def test_known_names_are_case_insensitive():
    scope = parse_scope("FB=1_3_4;historyLength=32148000")
    assert scope.history_length == 32148000
    assert any("historyLength" in w for w in scope.warnings)
    assert scope.to_string() == "FB=1_3_4;HistoryLength=32148000"
    assert scope.get("historylength") == "32148000"


def test_unknown_and_duplicate_blocks_warn():
    scope = parse_scope("FB=4_4_64")
    assert scope.function_blocks == (4, 4, 64)
    assert len(scope.warnings) == 2


def test_historical_ongoing_and_sou():
    scope = parse_scope("FB=4;IntervalDuration=900;"
                        "AdditionalScope=historical-2024-05-09_ongoing-2024-05-23_sou-default_noedit")
    assert [(i.kind, i.value) for i in scope.additional] == [
        ("historical", "2024-05-09"), ("ongoing", "2024-05-23"), ("sou", "default"), ("noedit", None)]
    assert [i.describe() for i in scope.additional] == [
        "Historical data back to 2024-05-09", "Ongoing data until 2024-05-23",
        "Show the default scope of use statement", "Customer cannot edit the request"]
    scope = parse_scope("FB=4_16_51;AdditionalScope=historical-2y_ongoing-1y_historical-none_ongoing-90d")
    assert [i.describe() for i in scope.additional] == [
        "Historical data for the past 2 years", "Ongoing data for 1 year",
        "No historical data", "Ongoing data for 90 days"]


def test_describe():
    assert AdditionalItem("auth", "phone", "111-111-1111", "auth-phone-111-111-1111").describe() == \
        "Find the customer by phone number 111-111-1111"
    assert AdditionalItem("meters-all", None, None, "meters-all").describe() == "Share all meters"
    assert "phone" in AdditionalItem("auth", "phone", None, "auth-phone").describe()
    assert "zzz" in AdditionalItem("unknown", None, None, "zzz").describe()
    assert describe_function_block(4) == "Interval usage data (15-minute meter readings)"
    assert describe_function_block(46) == "Retail customer (legacy alias of 51)"
    assert "Unknown" in describe_function_block(98)


def test_tables():
    assert set(REQUESTABLE_FUNCTION_BLOCKS) == {4, 16, 39, 51}
    for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 27, 28, 29,
              31, 32, 34, 35, 36, 37, 39, 40, 41, 44, 46, 51):
        assert FUNCTION_BLOCKS[n]
    assert LOOKUP_TYPES == ("account", "phone", "email", "address")


def test_relative_and_months():
    assert parse_relative("2y") == 2 * 365 * 86400
    assert parse_relative("18m") == 18 * 2629800
    assert parse_relative("90d") == 90 * 86400
    assert parse_relative("none") is None
    assert parse_relative("2024-05-09") is None
    assert parse_relative("soon") is None
    assert history_length_months(63072000) == 24.0
    assert history_length_months(34128000) == 13.0
    assert history_length_months(0) == 0.0


def test_scope_helpers():
    scope = parse_scope("FB=4_16;PreferredAuthEndDate=0")
    assert scope.preferred_auth_end_date == 0
    changed = scope.replace(history_length=100, function_blocks=(4,))
    assert isinstance(changed, Scope)
    assert changed.to_string() == "FB=4;HistoryLength=100;PreferredAuthEndDate=0"
    assert scope.get("AdditionalScope") is None


def test_build_scope():
    assert build_scope([4, 16, 51], history_length=63072000, additional=["noedit", "meters-all"],
                       lookup=("email", "a_b@example.com")) == \
        "FB=4_16_51;HistoryLength=63072000;AdditionalScope=noedit_meters-all_auth-email-a%5Fb%40example.com"
    item = AdditionalItem("historical", None, "2y", "historical-2y")
    assert build_scope((4,), preferred_auth_end_date=1403190000, additional=[item],
                       extra={"IntervalDuration": "900"}) == \
        "FB=4;PreferredAuthEndDate=1403190000;IntervalDuration=900;AdditionalScope=historical-2y"


@pytest.mark.parametrize("kwargs, message", [
    (dict(function_blocks=[]), "At least one function block"),
    (dict(function_blocks=[100]), "out of range"),
    (dict(function_blocks=[4], history_length=-1), "HistoryLength must be a whole number"),
    (dict(function_blocks=[4], lookup=("fax", "1")), "Unknown lookup type 'fax'"),
    (dict(function_blocks=[4], additional=["noedit;FB=5"]), "cannot contain ';'"),
    (dict(function_blocks=[4], extra=[("BR", "1;FB=5")]), "cannot contain ';'"),
    (dict(function_blocks=[4], additional=["historical-later"]), "historical- needs a date"),
])
def test_build_scope_errors(kwargs, message):
    with pytest.raises(ScopeError) as info:
        build_scope(**kwargs)
    assert message in info.value.message


# --- errors ------------------------------------------------------------------

def _error(text: str) -> ScopeError:
    with pytest.raises(ScopeError) as info:
        parse_scope(text)
    error = info.value
    assert str(error) == error.message
    if error.start >= 0:
        assert text[error.start:error.end] == error.part
    return error


@pytest.mark.parametrize("text, message, part", [
    ("", "The scope is empty", ""),
    ("   ", "The scope is empty", ""),
    ("HistoryLength=5", "FB is required", ""),
    ("FB=", "FB is empty", "FB="),
    ("FB=4_x_51", "Function block 'x' is not a number", "x"),
    ("FB=4__51", "FB has an empty item", "_"),
    ("FB=4_", "FB has an empty item", "_"),
    ("FB=_4", "FB has an empty item", "_"),
    ("FB=4_100", "Function block 100 is out of range (1-99)", "100"),
    ("FB=0", "Function block 0 is out of range (1-99)", "0"),
    ("FB=4;FB=16", "Parameter 'FB' appears more than once", "FB=16"),
    ("FB=4;HistoryLength=1;historylength=2", "Parameter 'HistoryLength' appears more than once",
     "historylength=2"),
    ("FB=4;noedit", "Parameter 'noedit' has no '='", "noedit"),
    ("FB=4;=5", "Parameter name is missing", "=5"),
    ("FB=4;;HistoryLength=5", "Empty parameter", ";"),
    ("FB=4;HistoryLength=abc", "HistoryLength must be a whole number of seconds, got 'abc'", "abc"),
    ("FB=4;HistoryLength=-5", "HistoryLength must be a whole number of seconds, got '-5'", "-5"),
    ("FB=4;HistoryLength=1_000", "HistoryLength must be a whole number", "1_000"),
    ("FB=4;HistoryLength=\u0663", "HistoryLength must be a whole number", "\u0663"),
    ("FB=4;PreferredAuthEndDate=soon", "PreferredAuthEndDate must be a Unix timestamp", "soon"),
    ("FB=4;AccountCollection=two", "AccountCollection must be a whole number, got 'two'", "two"),
    ("FB=4;AdditionalScope=auth-fax-5551234",
     "Unknown lookup type 'fax'; expected account, phone, email or address", "fax"),
    ("FB=4;AdditionalScope=noedit_auth-", "auth- needs a lookup type", "auth-"),
    ("FB=4;AdditionalScope=historical-2024-02-30", "historical- needs a date", "2024-02-30"),
    ("FB=4;AdditionalScope=ongoing-", "ongoing- needs a date", ""),
    ("FB=4;AdditionalScope=ongoing-forever", "ongoing- needs a date", "forever"),
    ("FB=4;AdditionalScope=sou-", "sou- needs a scope of use id", "sou-"),
])
def test_errors(text, message, part):
    error = _error(text)
    assert message in error.message
    assert error.part == part


def test_error_offsets_point_into_the_original_string():
    text = "  FB=4_16;HistoryLength=12x "
    error = _error(text)
    assert (error.start, error.end) == (text.index("12x"), text.index("12x") + 3)
    error = _error("FB=4;AdditionalScope=noedit_auth-fax-1")
    assert (error.start, error.end) == (33, 36)


def test_invalid_unicode_is_a_scope_error():
    with pytest.raises(ScopeError):
        parse_scope("FB=4;AdditionalScope=auth-email-\ud800")
    with pytest.raises(ScopeError):
        encode_value("\ud800")


# --- properties ----------------------------------------------------------------

SCOPE_ALPHABET = string.ascii_letters + string.digits + ";=_-%@ .,"
blocks = st.lists(st.integers(min_value=1, max_value=99), min_size=1, max_size=8)


@settings(max_examples=300)
@given(st.one_of(st.text(), st.text(alphabet=SCOPE_ALPHABET),
                 st.text(alphabet=SCOPE_ALPHABET).map(lambda t: "FB=4;" + t),
                 st.text(alphabet=SCOPE_ALPHABET).map(lambda t: "FB=4;AdditionalScope=" + t)))
def test_arbitrary_text_only_raises_scope_error(text):
    try:
        scope = parse_scope(text)
    except ScopeError as error:
        assert error.message
        if error.start >= 0:
            assert text[error.start:error.end] == error.part
        return
    # Whatever parses has a canonical form that parses to the same thing.
    canonical = scope.to_string()
    again = parse_scope(canonical)
    assert again.to_string() == canonical
    assert again.function_blocks == scope.function_blocks
    assert [(i.kind, i.name, i.value) for i in again.additional] == \
        [(i.kind, i.name, i.value) for i in scope.additional]
    for item in scope.additional:
        assert item.describe()


@settings(max_examples=300)
@given(blocks, st.sampled_from(LOOKUP_TYPES + ("test", "utility")), st.text(min_size=1),
       st.none() | st.integers(min_value=0, max_value=10**12),
       st.none() | st.integers(min_value=0, max_value=10**12),
       st.lists(st.sampled_from(["noedit", "meters-all", "sou-default", "historical-2y",
                                 "ongoing-none", "historical-2024-05-09", "auth-sso"]), max_size=4))
def test_build_parse_round_trip(fbs, kind, value, history, end, items):
    text = build_scope(fbs, history_length=history, preferred_auth_end_date=end,
                       additional=items, lookup=(kind, value))
    scope = parse_scope(text)
    assert scope.function_blocks == tuple(fbs)
    assert scope.history_length == history
    assert scope.preferred_auth_end_date == end
    assert [i.raw for i in scope.additional[:-1]] == items
    last = scope.additional[-1]
    assert (last.kind, last.name, last.value) == ("auth", kind, value)
    if kind in LOOKUP_TYPES:
        assert scope.lookup == (kind, value)
    assert scope.to_string() == text


@given(st.text())
def test_encode_decode_round_trip(value):
    """Any text survives encoding, and the encoded form has no separators in it."""
    encoded = encode_value(value)
    assert decode_value(encoded) == value
    assert not set(encoded) & set("_;= ")


def test_lookup_type_with_and_without_value():
    assert parse_scope("FB=4;AdditionalScope=noedit_auth-email").lookup_type == "email"
    assert parse_scope("FB=4;AdditionalScope=noedit_auth-email").lookup is None
    assert parse_scope("FB=4;AdditionalScope=auth-utility-x_auth-phone-1").lookup_type == "phone"
    assert parse_scope("FB=4").lookup_type is None

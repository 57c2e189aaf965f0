"""demo.scope's explain/compare: a scope in plain words, and what the customer and the utility
changed between the requested and the granted scope (the run page's scope card)."""
from __future__ import annotations

import pytest

from demo.scope import (
    INFORMATIONAL,
    ScopeError,
    compare,
    explain,
    explain_param,
    parse_scope,
)

REQUESTED = "FB=4_16_51;HistoryLength=63072000;AdditionalScope=noedit_auth-phone-1111111111"
GRANTED = "FB=1_3_4_5_13_16_51;IntervalDuration=900;BlockDuration=daily;HistoryLength=63072000;AccountCollection=4"


def rows(requested: str, granted: str, **kwargs) -> dict:
    return {d.topic: d for d in compare(parse_scope(requested), parse_scope(granted), **kwargs)}


def test_explain_names_every_parameter_in_order():
    found = explain(parse_scope(GRANTED))
    assert [e.name for e in found] == ["FB", "HistoryLength", "IntervalDuration", "BlockDuration", "AccountCollection"]
    fb = found[0]
    assert fb.items[0] == ("1", "Common usage data")
    assert ("4", "Interval usage data (15-minute meter readings)") in fb.items
    assert "24.0 months" in found[1].meaning and "63,072,000 s" in found[1].meaning and "730 days" in found[1].meaning
    assert found[2].meaning == "Meter readings every 15 minutes" and found[2].informational
    assert "daily blocks" in found[3].meaning
    assert found[4].meaning == "The authorization covers 4 meters (usage points)"
    assert not found[1].informational and set(INFORMATIONAL) >= {e.name for e in found if e.informational}


def test_explain_additional_scope_items_one_by_one():
    found = {e.name: e for e in explain(parse_scope(REQUESTED))}
    assert found["AdditionalScope"].items == (("noedit", "Customer cannot edit the request"),
                                              ("auth-phone-1111111111", "Find the customer by phone number 1111111111"))


@pytest.mark.parametrize("name, value, words", [
    ("HistoryLength", "0", "No past data"),
    ("HistoryLength", "34128000", "13.0 months (395 days)"),
    ("historylength", "31536000", "12.0 months"),
    ("PreferredAuthEndDate", "0", "until the customer revokes it"),
    ("PreferredAuthEndDate", "1900000000", "2030-03-17 17:46 UTC"),
    ("PreferredAuthEndDate", "999999999999999999", "too far in the future"),
    ("IntervalDuration", "900_3600", "every 15 minutes and every 1 hour"),
    ("BlockDuration", "86400", "1 day blocks"),
    ("SubscriptionFrequency", "daily", "sent daily"),
    ("SubscriptionFrequency", "7", "every 7 days"),
    ("SubscriptionFrequency", "billingPeriod", "once per billing period"),
    ("AccountCollection", "1", "covers 1 meter "),
    ("BR", "42", "Bulk id 42"),
    ("Mystery", "1", "Not a parameter this demo knows"),
])
def test_explain_param(name, value, words):
    assert words in explain_param(name, value)


def test_platform_additions_and_informational_parameters_are_marked_added():
    found = rows(REQUESTED, GRANTED)
    for fb in (1, 3, 5, 13):
        assert found[f"FB {fb}"].change == "added" and found[f"FB {fb}"].requested is None
    for fb in (4, 16, 51):
        assert found[f"FB {fb}"].change == "same" and not found[f"FB {fb}"].differs
    assert found["IntervalDuration"].change == "added" and "cannot be requested" in found["IntervalDuration"].note
    assert found["AccountCollection"].granted.startswith("4: The authorization covers 4 meters")
    assert found["History (HistoryLength)"].change == "same"


def test_customer_removals_and_shortening():
    found = rows(REQUESTED, "FB=1_3_4_5_13_51;HistoryLength=31536000;AccountCollection=1")
    assert found["FB 16"].change == "removed" and found["FB 16"].granted is None and found["FB 16"].differs
    history = found["History (HistoryLength)"]
    assert history.change == "shortened" and "24.0 to 12.0 months" in history.note
    assert "31,536,000 s" in history.granted


def test_consent_page_options_are_request_only():
    found = rows(REQUESTED, GRANTED)
    assert found["AdditionalScope noedit"].change == "request-only"
    assert found["AdditionalScope auth-phone-1111111111"].granted is None


def test_relative_history_and_legacy_alias():
    found = rows("FB=4_46;AdditionalScope=historical-2y", "FB=1_3_4_5_13_51;HistoryLength=63072000")
    assert found["FB 46"].change == "same" and "51" in found["FB 46"].note
    assert found["FB 51"].change == "same" and "46" in found["FB 51"].note
    assert found["History (HistoryLength)"].change == "same"
    assert found["History (HistoryLength)"].requested.startswith("historical-2y ≈ 24.0 months")


def test_history_added_when_not_requested():
    found = rows("FB=4", "FB=1_3_4_5_13;HistoryLength=63072000")
    assert found["History (HistoryLength)"].change == "added"
    assert "default" in found["History (HistoryLength)"].note


def test_end_date_from_the_authorized_period():
    requested = "FB=4;PreferredAuthEndDate=1900000000"
    found = rows(requested, "FB=1_3_4_5_13", authorized_period={"start": 1800000000, "duration": 50000000})
    end = found["Authorization end"]
    assert end.change == "shortened" and end.granted == "2028-08-16 00:53 UTC"
    assert "authorizedPeriod" in end.note
    same = rows(requested, "FB=4", authorized_period={"start": 1800000000, "duration": 100000000})
    assert same["Authorization end"].change == "same"
    forever = rows("FB=4;PreferredAuthEndDate=0", "FB=4", authorized_period={"start": 1800000000, "duration": 0})
    assert forever["Authorization end"].change == "same"
    assert forever["Authorization end"].granted == "until the customer revokes it"
    ongoing = rows("FB=4;AdditionalScope=ongoing-1y", "FB=4",
                   authorized_period={"start": 1800000000, "duration": 365 * 86400})
    assert ongoing["Authorization end"].change == "same"
    unknown = rows("FB=4;PreferredAuthEndDate=1900000000", "FB=4")
    assert unknown["Authorization end"].change == "request-only"


def test_changed_and_removed_informational_values():
    found = rows("FB=4;IntervalDuration=3600;BR=7", "FB=4;IntervalDuration=900")
    assert found["IntervalDuration"].change == "changed"
    assert "Requested 3600, granted 900" in found["IntervalDuration"].note
    assert found["BR"].change == "removed"


def test_nothing_to_compare():
    assert compare(None, parse_scope(GRANTED)) == []
    assert compare(parse_scope(REQUESTED), None) == []


def test_errors_carry_offsets_for_highlighting():
    text = "FB=4;AdditionalScope=auth-email-\ud800"
    with pytest.raises(ScopeError) as info:
        parse_scope(text)
    assert (info.value.start, info.value.end) == (len(text) - 1, len(text))
    assert text[info.value.start:info.value.end] == info.value.part

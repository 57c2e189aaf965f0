"""Unit tests for demo.sandbox.custodian: the scope the sandbox grants and the
choices it offers the customer (no Flask)."""
from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from demo.sandbox.custodian import (
    DAY,
    DEFAULT_AUTH_LENGTH,
    DEFAULT_HISTORY,
    YEAR,
    ScopeNotAllowed,
    check_requestable,
    end_choices,
    granted_scope,
    history_choices,
    requested_blocks,
    requested_end,
    requested_history,
)
from demo.scope import parse_scope

NOW = 1_750_000_000  # a fixed "now" (June 2025)


def _granted(scope: str, history: int = DEFAULT_HISTORY, meters: int = 1) -> str:
    return granted_scope(parse_scope(scope), history=history, meters=meters)


# --- granted scope ---------------------------------------------------------------

def test_granted_scope_for_pce_default():
    assert _granted("FB=4_16_51", history=63072000, meters=4) == (
        "FB=1_3_4_5_13_16_51;IntervalDuration=900;BlockDuration=daily;"
        "HistoryLength=63072000;AccountCollection=4"
    )


def test_granted_scope_reflects_history_and_meters():
    granted = _granted("FB=4_16_51", history=31536000, meters=1)
    assert granted.startswith("FB=1_3_4_5_13_16_51;IntervalDuration=900;BlockDuration=daily;HistoryLength=31536000;")
    assert granted.endswith(";AccountCollection=1")


def test_granted_scope_legacy_46_is_51():
    assert _granted("FB=4_16_46", meters=2) == _granted("FB=4_16_51", meters=2)
    assert "46" not in _granted("FB=4_16_46").split(";")[0].split("=")[1].split("_")


def test_granted_scope_push_adds_subscription_frequency():
    granted = _granted("FB=39", history=0, meters=1)
    assert granted == "FB=1_3_13_39;BlockDuration=daily;HistoryLength=0;SubscriptionFrequency=daily;AccountCollection=1"


def test_granted_scope_without_intervals_has_no_interval_duration():
    granted = _granted("FB=16_51")
    assert granted.startswith("FB=1_3_13_16_51;BlockDuration=daily;")
    assert "IntervalDuration" not in granted
    assert "SubscriptionFrequency" not in granted


def test_granted_scope_drops_blocks_not_requestable():
    # 6 and 12 are real function blocks but not ones this custodian shares.
    assert _granted("FB=4_6_12").startswith("FB=1_3_4_5_13;IntervalDuration=900;")


def test_granted_scope_is_parseable_and_round_trips_history():
    granted = parse_scope(_granted("FB=4_16_51_39", history=12345, meters=3))
    assert granted.function_blocks == (1, 3, 4, 5, 13, 16, 39, 51)
    assert granted.history_length == 12345
    assert dict(granted.extra)["AccountCollection"] == "3"


def test_requested_blocks_sorted_deduplicated():
    assert requested_blocks(parse_scope("FB=51_46_16_4_1_3")) == [4, 16, 51]


# --- check_requestable -------------------------------------------------------------

def test_check_requestable_rejects_platform_only_blocks():
    with pytest.raises(ScopeNotAllowed, match="function block"):
        check_requestable(parse_scope("FB=1_3"))


@pytest.mark.parametrize("scope", ["FB=4", "FB=16", "FB=39", "FB=51", "FB=46", "FB=1_3_4", "FB=4_16_51"])
def test_check_requestable_accepts_any_requestable_block(scope):
    assert check_requestable(parse_scope(scope)) is None


# --- requested history ---------------------------------------------------------------

def test_history_length_param():
    assert requested_history(parse_scope("FB=4;HistoryLength=1000")) == 1000


def test_history_length_wins_over_historical_item():
    scope = parse_scope("FB=4;HistoryLength=1000;AdditionalScope=historical-none")
    assert requested_history(scope) == 1000


def test_historical_relative():
    assert requested_history(parse_scope("FB=4;AdditionalScope=historical-2y")) == 2 * 365 * DAY
    assert requested_history(parse_scope("FB=4;AdditionalScope=historical-90d")) == 90 * DAY


def test_historical_none():
    assert requested_history(parse_scope("FB=4;AdditionalScope=historical-none")) == 0


def test_historical_date():
    day = datetime(2024, 1, 1, tzinfo=UTC)
    got = requested_history(parse_scope("FB=4;AdditionalScope=historical-2024-01-01"))
    expected = time.time() - day.timestamp()
    assert abs(got - expected) < 5


def test_historical_future_date_is_zero():
    assert requested_history(parse_scope("FB=4;AdditionalScope=historical-2999-01-01")) == 0


def test_history_default():
    assert requested_history(parse_scope("FB=4_16_51")) == 63072000 == DEFAULT_HISTORY


# --- requested end -------------------------------------------------------------------

def test_preferred_auth_end_date():
    assert requested_end(parse_scope("FB=4;PreferredAuthEndDate=1900000000"), now=NOW) == 1900000000


def test_preferred_auth_end_date_zero_means_until_revoked():
    assert requested_end(parse_scope("FB=4;PreferredAuthEndDate=0;AdditionalScope=ongoing-1y"), now=NOW) == 0


def test_ongoing_relative():
    assert requested_end(parse_scope("FB=4;AdditionalScope=ongoing-1y"), now=NOW) == NOW + YEAR


def test_ongoing_none_ends_now():
    assert requested_end(parse_scope("FB=4;AdditionalScope=ongoing-none"), now=NOW) == NOW


def test_ongoing_date():
    expected = int(datetime(2027, 6, 30, tzinfo=UTC).timestamp())
    assert requested_end(parse_scope("FB=4;AdditionalScope=ongoing-2027-06-30"), now=NOW) == expected


def test_end_default_three_years():
    assert requested_end(parse_scope("FB=4_16_51"), now=NOW) == NOW + DEFAULT_AUTH_LENGTH == NOW + 3 * 365 * DAY


def test_end_default_uses_clock():
    got = requested_end(parse_scope("FB=4_16_51"))
    assert abs(got - (time.time() + 3 * 365 * DAY)) < 5


# --- choices -------------------------------------------------------------------------

def test_history_choices_default_request():
    choices = history_choices(DEFAULT_HISTORY)
    assert [c.value for c in choices] == [DEFAULT_HISTORY, YEAR, 182 * DAY, 91 * DAY, 30 * DAY, 0]
    assert choices[0].label == "2 years of past data"
    assert choices[1].label == "1 year of past data"
    assert choices[-1].label == "No past data (from today on)"


def test_history_choices_small_request():
    assert [c.value for c in history_choices(60 * DAY)] == [60 * DAY, 30 * DAY, 0]
    assert [c.value for c in history_choices(0)] == [0]
    assert [c.value for c in history_choices(YEAR)] == [YEAR, 182 * DAY, 91 * DAY, 30 * DAY, 0]


@given(st.integers(min_value=0, max_value=20 * YEAR))
def test_history_choices_never_exceed_request(requested):
    choices = history_choices(requested)
    values = [c.value for c in choices]
    assert values[0] == requested
    assert all(v <= requested for v in values)
    assert len(set(values)) == len(values)
    assert all(c.label for c in choices)


def test_end_choices_default_request():
    requested = NOW + DEFAULT_AUTH_LENGTH
    values = [c.value for c in end_choices(requested, NOW)]
    assert values == [requested, NOW + YEAR, NOW + 182 * DAY, NOW + 30 * DAY]


def test_end_choices_until_revoked_offers_everything():
    choices = end_choices(0, NOW)
    assert [c.value for c in choices] == [0, NOW + YEAR, NOW + 182 * DAY, NOW + 30 * DAY]
    assert choices[0].label == "Until I revoke it"
    assert choices[1].label.startswith("Until ") and "2026" in choices[1].label


def test_end_choices_short_request():
    requested = NOW + 60 * DAY
    assert [c.value for c in end_choices(requested, NOW)] == [requested, NOW + 30 * DAY]
    assert [c.value for c in end_choices(NOW, NOW)] == [NOW]


@given(st.one_of(st.just(0), st.integers(min_value=NOW, max_value=NOW + 10 * YEAR)))
def test_end_choices_never_exceed_request(requested):
    choices = end_choices(requested, NOW)
    values = [c.value for c in choices]
    assert values[0] == requested
    assert len(set(values)) == len(values)
    for v in values[1:]:
        assert v > NOW
        if requested != 0:
            assert v < requested


def test_serve_decides_who_reads_an_authorization_and_when():
    """resources.serve without Flask: own authorization only, active and unexpired, data once ready."""
    from datetime import timedelta

    from demo.sandbox.credentials import ACCESS, API, Credential
    from demo.sandbox.models import AuthorizationRow, Base, ClientRow
    from demo.sandbox.resources import NotServed, serve
    from demo.storage import Database, utcnow

    db = Database("sqlite://", Base.metadata)
    now = utcnow()
    with db.session() as s:
        s.add(ClientRow(client_id="A", secret_hash="x", company_name="A"))
        s.flush()
        s.add(AuthorizationRow(uid="1", client_id="A", scenario="residential", account_number="1", scope="FB=4",
                               history_start=0, authorized_start=0, authorized_end=0,
                               ready_at=now + timedelta(seconds=30)))
    never = lambda _account: None  # noqa: E731
    with db.session() as s:
        assert serve(s, Credential(ACCESS, "A", "1"), "1", never, now, data=False).uid == "1"
        for cred in (Credential(ACCESS, "A", "2"), Credential(API, "B")):
            with pytest.raises(NotServed) as info:
                serve(s, cred, "1", never, now, data=False)
            assert info.value.status == 404
        with pytest.raises(NotServed) as info:
            serve(s, Credential(API, "A"), "1", never, now, data=True)
        assert info.value.status == 202 and 29 <= info.value.retry_after <= 30
        s.get(AuthorizationRow, "1").status = 0
        with pytest.raises(NotServed):
            serve(s, Credential(API, "A"), "1", never, now, data=False)

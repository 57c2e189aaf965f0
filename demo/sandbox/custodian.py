"""The custodian's rules, free of Flask: what a request asks for in plain words,
what the customer may change, and the final scope the platform grants.

UtilityAPI documents that the authorization URL's scope only *prefills* the
consent form, that the customer may shorten it, and that the platform adds
function blocks and informational parameters; the third party must read the
final scope from the token response (reference §2.1, §2.4).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from ..scope import REQUESTABLE_FUNCTION_BLOCKS, Scope, parse_relative

DAY = 86400
YEAR = 365 * DAY
DEFAULT_SCOPE = "FB=4_16_51"         # what the consent form starts from when no scope is sent
DEFAULT_HISTORY = 63072000            # 2 years, UtilityAPI's documented default
DEFAULT_AUTH_LENGTH = 3 * YEAR        # PreferredAuthEndDate default: 3 years from now
ALIASES = {46: 51}                    # legacy "FB=4_16_46" means what 51 means today
PLATFORM_BLOCKS = (1, 3, 13)          # always granted (common, CMD, security & privacy)
GRANTED_WITH = {4: (4, 5), 16: (16,), 39: (39,), 51: (51,)}


class ScopeNotAllowed(ValueError):
    """The scope names nothing this custodian can grant (-> ``invalid_scope``)."""


def requested_blocks(scope: Scope) -> list[int]:
    """The requestable function blocks a scope asks for (46 read as 51)."""
    blocks = []
    for fb in scope.function_blocks:
        fb = ALIASES.get(fb, fb)
        if fb in REQUESTABLE_FUNCTION_BLOCKS and fb not in blocks:
            blocks.append(fb)
    return sorted(blocks)


def check_requestable(scope: Scope) -> None:
    if not requested_blocks(scope):
        raise ScopeNotAllowed(
            "The scope asks for no function block this utility shares; request 4 (intervals), "
            "16 (bills), 39 (push) or 51 (account details)."
        )


def requested_history(scope: Scope) -> int:
    """History in seconds: ``HistoryLength``, else ``historical-<X>``, else 2 years."""
    if scope.history_length is not None:
        return scope.history_length
    for item in scope.additional:
        if item.kind == "historical" and item.value:
            if item.value == "none":
                return 0
            seconds = parse_relative(item.value)
            if seconds is not None:
                return seconds
            try:
                day = datetime.strptime(item.value, "%Y-%m-%d").replace(tzinfo=UTC)
                return max(0, int(time.time() - day.timestamp()))
            except ValueError:
                pass
    return DEFAULT_HISTORY


def requested_end(scope: Scope, now: int | None = None) -> int:
    """Authorization end (epoch s; 0 = until revoked): ``PreferredAuthEndDate``, else ``ongoing-<X>``."""
    now = int(time.time()) if now is None else now
    if scope.preferred_auth_end_date is not None:
        return scope.preferred_auth_end_date
    for item in scope.additional:
        if item.kind == "ongoing" and item.value:
            if item.value == "none":
                return now
            seconds = parse_relative(item.value)
            if seconds is not None:
                return now + seconds
            try:
                day = datetime.strptime(item.value, "%Y-%m-%d").replace(tzinfo=UTC)
                return int(day.timestamp())
            except ValueError:
                pass
    return now + DEFAULT_AUTH_LENGTH


@dataclass(frozen=True)
class Choice:
    value: int
    label: str


def history_choices(requested: int) -> list[Choice]:
    """What the customer may pick: the request itself or anything shorter."""
    options = [(requested, history_label(requested))]
    for seconds in (YEAR, 182 * DAY, 91 * DAY, 30 * DAY, 0):
        if seconds < requested:
            options.append((seconds, history_label(seconds)))
    return [Choice(v, label) for v, label in options]


def end_choices(requested_end_ts: int, now: int) -> list[Choice]:
    options = [(requested_end_ts, end_label(requested_end_ts))]
    for seconds in (YEAR, 182 * DAY, 30 * DAY):
        ts = now + seconds
        if requested_end_ts == 0 or ts < requested_end_ts:
            options.append((ts, end_label(ts)))
    return [Choice(v, label) for v, label in options]


def history_label(seconds: int) -> str:
    if seconds == 0:
        return "No past data (from today on)"
    months = round(seconds / (30.4375 * DAY))
    if months >= 12 and months % 12 == 0:
        years = months // 12
        return f"{years} year{'s' if years > 1 else ''} of past data"
    if months >= 1:
        return f"{months} month{'s' if months > 1 else ''} of past data"
    days = max(1, round(seconds / DAY))
    return f"{days} day{'s' if days > 1 else ''} of past data"


def end_label(ts: int) -> str:
    if ts == 0:
        return "Until I revoke it"
    return "Until " + datetime.fromtimestamp(ts, UTC).strftime("%B %-d, %Y")


def granted_scope(requested: Scope, *, history: int, meters: int) -> str:
    """The final scope, shaped like UtilityAPI's (reference §1.6 example)."""
    blocks = set(PLATFORM_BLOCKS)
    asked = requested_blocks(requested)
    for fb in asked:
        blocks.update(GRANTED_WITH[fb])
    parts = ["FB=" + "_".join(str(b) for b in sorted(blocks))]
    if 4 in asked:
        parts.append("IntervalDuration=900")
    parts.append("BlockDuration=daily")
    parts.append(f"HistoryLength={history}")
    if 39 in asked:
        parts.append("SubscriptionFrequency=daily")
    parts.append(f"AccountCollection={meters}")
    return ";".join(parts)

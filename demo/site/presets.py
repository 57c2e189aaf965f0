"""Shareable preset links, free of Flask: a signed, expiring token that names a utility, a
client_id and the connect form's choices (and optionally presenter mode).

A preset never carries a secret: :class:`Preset` has no field for one. The token is signed,
not encrypted (anyone holding the link can read what it asks for), with itsdangerous and a
key derived from the site's secret key with a salt of its own, so a preset token cannot be
confused with a session cookie or any other signed value. The expiry is inside the signed
payload; a link lives at most :data:`MAX_TTL`.
"""
from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from urllib.parse import urlencode

from itsdangerous import BadData, URLSafeSerializer

from ..scope import LOOKUP_TYPES, REQUESTABLE_FUNCTION_BLOCKS

SALT = "gbc-demo.preset-link.v1"
MAX_TTL = 90 * 24 * 3600
MAX_TOKEN_LENGTH = 4096
#: The expiry choices offered on the share page (seconds, label).
EXPIRY_CHOICES = ((3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"), (30 * 86400, "30 days"))
HISTORY_LABELS = {"": "the utility's default (2 years)", "0": "none", "15552000": "6 months",
                  "31536000": "1 year", "63072000": "2 years", "94608000": "3 years"}
_HISTORY = re.compile(r"[0-9]{1,10}")


class PresetError(Exception):
    """A link that cannot be used; ``message`` says why, for people."""

    message = "This link cannot be used."

    def __str__(self) -> str:
        return self.message


class PresetInvalid(PresetError):
    """Tampered with, cut short, or not a preset link at all."""

    message = "This link is not valid: it was changed after it was made or is incomplete."


class PresetExpired(PresetError):
    """Genuine, but past its expiry."""

    def __init__(self, expired_at: datetime) -> None:
        super().__init__(expired_at)
        self.expired_at = expired_at

    @property
    def message(self) -> str:  # type: ignore[override]
        return (f"This link expired on {self.expired_at.strftime('%Y-%m-%d %H:%M UTC')}; "
                "ask whoever sent it for a new one.")


@dataclass(frozen=True)
class Preset:
    """What a link chooses. No secret has a place here."""

    utility: str
    client_id: str
    function_blocks: tuple[int, ...] = (4, 16, 51)
    history: str = ""                 # "" (utility default) or seconds, as on the connect form
    end_date: date | None = None      # PreferredAuthEndDate
    lookup_type: str = "none"         # none | account | phone | email | address
    lookup_value: str = ""
    noedit: bool = False
    meters_all: bool = False
    presenter: bool = False
    expires: int = field(default=0)   # epoch seconds

    def __post_init__(self) -> None:
        problem = _problem(self)
        if problem:
            raise ValueError(problem)

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires, UTC)

    def home_params(self) -> list[tuple[str, str]]:
        """The home page's GET parameters for these choices (see the connect form)."""
        params = [("lookup_type", self.lookup_type)]
        if self.lookup_type != "none":
            params.append(("lookup_value", self.lookup_value))
        params += [("function_blocks", str(fb)) for fb in self.function_blocks]
        params.append(("history", self.history))
        if self.end_date is not None:
            params.append(("end_date", self.end_date.isoformat()))
        if self.noedit:
            params.append(("noedit", "y"))
        if self.meters_all:
            params.append(("meters_all", "y"))
        return params

    def home_query(self) -> str:
        return urlencode(self.home_params())


def _problem(p: Preset) -> str | None:
    """Why these values cannot be a preset, or None."""
    if not (isinstance(p.utility, str) and 0 < len(p.utility) <= 32):
        return "utility must be 1 to 32 characters"
    if not (isinstance(p.client_id, str) and 0 < len(p.client_id) <= 128):
        return "client_id must be 1 to 128 characters"
    fbs = p.function_blocks
    if not (isinstance(fbs, tuple) and fbs and all(type(fb) is int and fb in REQUESTABLE_FUNCTION_BLOCKS
                                                    for fb in fbs) and len(set(fbs)) == len(fbs)):
        return f"function_blocks must be some of {sorted(REQUESTABLE_FUNCTION_BLOCKS)}"
    if not (isinstance(p.history, str) and (p.history == "" or _HISTORY.fullmatch(p.history))):
        return "history must be empty or a number of seconds"
    if p.end_date is not None and type(p.end_date) is not date:
        return "end_date must be a date"
    if p.lookup_type not in ("none", *LOOKUP_TYPES):
        return f"lookup_type must be none or one of {', '.join(LOOKUP_TYPES)}"
    if not (isinstance(p.lookup_value, str) and len(p.lookup_value) <= 300):
        return "lookup_value must be at most 300 characters"
    if p.lookup_type != "none" and not p.lookup_value.strip():
        return "a lookup needs a value"
    if not all(type(v) is bool for v in (p.noedit, p.meters_all, p.presenter)):
        return "noedit, meters_all and presenter are true or false"
    if type(p.expires) is not int or p.expires < 0:
        return "expires must be epoch seconds"
    return None


#: One key, or several with the newest last (the current key after its fallbacks, as Flask's
#: SECRET_KEY_FALLBACKS): links are signed with the newest and accepted under any.
SigningKeys = str | bytes | Sequence[str | bytes]


def _serializer(secret_key: SigningKeys) -> URLSafeSerializer:
    keys = [secret_key] if isinstance(secret_key, str | bytes) else [k for k in secret_key if k]
    if not keys or not keys[-1]:
        raise ValueError("a secret key is needed to sign preset links")
    return URLSafeSerializer(keys, salt=SALT)


def _payload(p: Preset) -> dict:
    """Short keys keep links short."""
    out: dict = {"v": 1, "u": p.utility, "c": p.client_id, "fb": list(p.function_blocks), "x": p.expires}
    if p.history:
        out["h"] = p.history
    if p.end_date is not None:
        out["e"] = p.end_date.isoformat()
    if p.lookup_type != "none":
        out["lt"], out["lv"] = p.lookup_type, p.lookup_value
    flags = "".join(c for c, on in (("n", p.noedit), ("m", p.meters_all), ("p", p.presenter)) if on)
    if flags:
        out["f"] = flags
    return out


def _from_payload(data) -> Preset:
    if not isinstance(data, dict) or data.get("v") != 1:
        raise PresetInvalid()
    known = {"v", "u", "c", "fb", "x", "h", "e", "lt", "lv", "f"}
    if set(data) - known:
        raise PresetInvalid()
    flags = data.get("f", "")
    fbs = data.get("fb")
    if not isinstance(flags, str) or set(flags) - set("nmp") or not isinstance(fbs, list):
        raise PresetInvalid()
    try:
        end = data.get("e")
        end_date = date.fromisoformat(end) if end is not None else None
        return Preset(utility=data.get("u"), client_id=data.get("c"), function_blocks=tuple(fbs),
                      history=data.get("h", ""), end_date=end_date, lookup_type=data.get("lt", "none"),
                      lookup_value=data.get("lv", ""), noedit="n" in flags, meters_all="m" in flags,
                      presenter="p" in flags, expires=data.get("x"))
    except (TypeError, ValueError) as exc:
        raise PresetInvalid() from exc


def make(secret_key: SigningKeys, *, ttl: int, now: float | None = None, **choices) -> tuple[str, Preset]:
    """Sign a preset valid for ``ttl`` seconds (1 s to 90 days) with the newest key; returns (token, preset).

    ``choices`` are :class:`Preset`'s fields except ``expires``; a bad value raises ValueError.
    """
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_TTL:
        raise ValueError(f"a link lives between 1 second and {MAX_TTL // 86400} days, got {ttl!r}")
    if "expires" in choices:
        raise TypeError("the expiry comes from ttl")
    now = time.time() if now is None else now
    preset = Preset(**choices, expires=int(now) + ttl)
    return _serializer(secret_key).dumps(_payload(preset)), preset


def load(secret_key: SigningKeys, token: str, *, now: float | None = None) -> Preset:
    """The preset a link carries, signed with any of the keys. Raises :class:`PresetInvalid`
    (tampered, cut, not ours) or :class:`PresetExpired` (genuine but too old); never anything else."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        raise PresetInvalid()
    serializer = _serializer(secret_key)
    try:
        data = serializer.loads(token)
    except (BadData, UnicodeError, ValueError, TypeError) as exc:
        raise PresetInvalid() from exc
    preset = _from_payload(data)
    now = time.time() if now is None else now
    if preset.expires - now > MAX_TTL + 60:
        raise PresetInvalid()          # no genuine link lives that long
    if now >= preset.expires:
        raise PresetExpired(preset.expires_at)
    return preset


def describe(preset: Preset) -> list[tuple[str, str]]:
    """What a link chooses, in plain words: (what, value) pairs."""
    rows = [("Utility", preset.utility), ("client_id", preset.client_id),
            ("Data requested", "; ".join(f"FB {fb}: {REQUESTABLE_FUNCTION_BLOCKS[fb]}"
                                         for fb in preset.function_blocks)),
            ("History", HISTORY_LABELS.get(preset.history, f"{preset.history} seconds"))]
    if preset.end_date is not None:
        rows.append(("Authorization ends", preset.end_date.isoformat()))
    if preset.lookup_type != "none":
        rows.append(("Customer lookup, pre-filled", f"{preset.lookup_type}: {preset.lookup_value}"))
    else:
        rows.append(("Customer lookup", "not pre-filled: the customer looks themselves up"))
    rows.append(("Customer may edit the request", "no (noedit)" if preset.noedit else "yes"))
    if preset.meters_all:
        rows.append(("Meters", "all of the customer's meters (meters-all)"))
    rows.append(("Presenter mode", "on" if preset.presenter else "unchanged"))
    rows.append(("Link expires", preset.expires_at.strftime("%Y-%m-%d %H:%M UTC")))
    return rows


def expiry_choices(default_ttl: int) -> list[tuple[int, str]]:
    """The share page's expiry choices, with the configured default added when it is not one."""
    choices = list(EXPIRY_CHOICES)
    ttl = int(default_ttl)
    if 0 < ttl <= MAX_TTL and ttl not in dict(choices):
        label = f"{ttl // 86400} days" if ttl % 86400 == 0 else (
            f"{ttl // 3600} hours" if ttl % 3600 == 0 else f"{ttl} seconds")
        choices.append((ttl, f"{label} (configured default)"))
        choices.sort()
    return choices


def default_expiry(default_ttl: int) -> int:
    """The configured default if it is a valid lifetime, else 7 days."""
    ttl = int(default_ttl)
    return ttl if 0 < ttl <= MAX_TTL else 7 * 86400

"""Random values, hashing and masking of secrets (no Flask).

The sandbox stores only SHA-256 hashes of the codes and tokens it issues; the
demo site shows secrets only masked to their last four characters.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import secrets


def new_token(nbytes: int = 32) -> str:
    """A 64-hex-character token, the shape UtilityAPI uses for access and refresh tokens."""
    return secrets.token_hex(nbytes)


def new_uid(nbytes: int = 9) -> str:
    """A URL-safe identifier for stored records (runs, pending authorizations)."""
    return secrets.token_urlsafe(nbytes)


def new_otp(digits: int = 6) -> str:
    """A one-time passcode of ``digits`` decimal digits from the system CSPRNG."""
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def digest(value: str) -> str:
    """SHA-256 hex digest, used as the stored form of codes, tokens and states."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def same(a: str | None, b: str | None) -> bool:
    """Constant-time comparison of two strings (False when either is missing)."""
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def mask(value: str | None, keep: int = 4) -> str:
    """``••••3f02`` for a secret; the whole value is never returned."""
    if not value:
        return "(not set)"
    if len(value) <= keep * 2:
        return "•" * 4
    return "••••" + value[-keep:]


def basic_auth_header(client_id: str, client_secret: str) -> str:
    raw = f"{client_id}:{client_secret}".encode()
    return "Basic " + base64.b64encode(raw).decode("ascii")

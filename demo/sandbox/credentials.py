"""Which credential a Bearer token is, free of Flask (reference §1.9).

UtilityAPI's ESPI API knows four kinds of bearer token:

=================  ==========================================  =========================================
kind               obtained by                                 reaches
=================  ==========================================  =========================================
``access``         authorization_code or refresh_token grant   one authorization's Resource/Batch data
``client``         client_credentials grant                    the Authorization list, Bulk
``registration``   the dashboard (Green Button Hosting)        ApplicationInformation
``api``            the dashboard (API Settings)                the JSON API, and every ESPI endpoint
=================  ==========================================  =========================================

Only SHA-256 hashes are stored, so a token is looked up by its digest.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from ..storage import utcnow
from ..tokens import digest
from .models import ApiTokenRow, ClientRow, TokenRow

ACCESS, CLIENT, REGISTRATION, API = "access", "client", "registration", "api"

#: The scope of a client_access_token, as in UtilityAPI's example (reference §1.8).
CLIENT_SCOPE = "FB=1_3_14_32"


def bulk_id(client_id: str) -> str:
    """The client's Bulk id (``…/Batch/Bulk/{id}``): numeric-looking and stable, like UtilityAPI's uids."""
    return str(int.from_bytes(hashlib.sha256(client_id.encode()).digest()[:4], "big") % 9_000_000 + 1_000_000)


@dataclass(frozen=True)
class Credential:
    kind: str
    client_id: str
    authorization_uid: str | None = None
    scope: str = ""
    expires: datetime | None = None


class CredentialError(Exception):
    """401: missing, unknown, expired or revoked."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


NAMES = {ACCESS: "an access_token", CLIENT: "a client_access_token", REGISTRATION: "a registration_access_token",
         API: "an API token"}


class WrongClass(Exception):
    """403: a live token of a class this resource does not accept (reference §1.9)."""


def require(cred: Credential, *kinds: str, what: str) -> None:
    """Raise :class:`WrongClass`, saying which classes would do, unless ``cred`` is one of ``kinds``."""
    if cred.kind not in kinds:
        wanted = " or ".join(NAMES[k] for k in kinds)
        raise WrongClass(f"{what} needs {wanted}; this is {NAMES[cred.kind]}.")


def bearer_from_header(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (scheme case-insensitive)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


#: only the columns a Credential needs (no ORM object for a token checked on every call), built once
_ACCESS_TOKEN = (select(TokenRow.revoked, TokenRow.expires, TokenRow.token_class, TokenRow.client_id,
                        TokenRow.authorization_uid, TokenRow.scope)
                 .where(TokenRow.access_hash == bindparam("hashed")).limit(1))


def identify(s: Session, token: str | None, now: datetime | None = None) -> Credential:
    """The live credential a bearer token is; raises :class:`CredentialError` (-> 401)."""
    if not token:
        raise CredentialError("invalid_request", "No bearer token: send Authorization: Bearer <token>.")
    now = now or utcnow()
    hashed = digest(token)
    row = s.execute(_ACCESS_TOKEN, {"hashed": hashed}).first()
    if row is not None:
        if row.revoked:
            raise CredentialError("invalid_token", "This access token was revoked.")
        if row.expires <= now:
            raise CredentialError("invalid_token", "This access token has expired; use the refresh_token "
                                                   "grant (or client_credentials again) for a new one.")
        return Credential(ACCESS if row.token_class == "access" else CLIENT, row.client_id,
                          row.authorization_uid, row.scope, row.expires)
    api = s.query(ApiTokenRow).filter_by(token_hash=hashed).first()
    if api is not None:
        if api.expires <= now:
            raise CredentialError("invalid_token", "This API token has expired; create a new one in the "
                                                   "sandbox dashboard's API settings.")
        return Credential(API, api.client_id, expires=api.expires)
    client = s.query(ClientRow).filter_by(registration_token_hash=hashed).first()
    if client is not None:
        return Credential(REGISTRATION, client.client_id)
    raise CredentialError("invalid_token", "This bearer token is not known to the sandbox.")

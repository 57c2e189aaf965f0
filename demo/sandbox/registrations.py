"""A third party's registration with the utility and its dashboard settings, free
of Flask (reference §1.1): OAuth settings (redirect URIs, client secret), API
tokens, webhook endpoints and the Green Button ``registration_access_token``.

Secrets are returned once, to be shown once; only their SHA-256 hash is kept,
except a webhook secret, which the sandbox needs to sign deliveries and so keeps
encrypted (:class:`~demo.storage.Vault`). Every function takes a SQLAlchemy
session (or a row) and leaves committing to the caller.
"""
from __future__ import annotations

import hashlib
import re
from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy.orm import Session

from ..config import ConfigError
from ..storage import Vault, utcnow
from ..tokens import digest, new_token, same
from .jsonapi import event_sort_key
from .lifecycle import EVENT_TYPES
from .models import ApiTokenRow, ClientRow, EventRow, WebhookEndpointRow
from .webhooks import endpoint_vault
from .webhooks import new_secret as new_webhook_secret

MODES = ("sandbox", "live")
MAX_REDIRECT_URIS = 20
MAX_URL_LENGTH = 2000
MAX_WEBHOOKS = 10
MAX_API_TOKENS = 50
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def valid_id(row_id: int) -> bool:
    """A row id the database can hold (a huge number in a URL is "not found", not a crash)."""
    return 0 < row_id < 2 ** 63


class SettingsError(ValueError):
    """A dashboard setting that cannot be saved (-> 422 with this message)."""


def vault(settings: dict) -> Vault:
    """The vault for secrets at rest: the one the webhook dispatcher decrypts with."""
    return endpoint_vault(settings)


# ---- registration (config) ------------------------------------------------------------

def user_uid_for(client_id: str) -> str:
    """The registration's user uid (the JSON API's ``user_uid``): numeric-looking like the
    platform's uids and stable across restarts, because it derives from the client_id."""
    return str(int.from_bytes(hashlib.sha256(b"user:" + client_id.encode()).digest()[:4], "big") % 900_000 + 100_000)


def default_user_email(client_id: str) -> str:
    host = re.sub(r"[^a-z0-9-]+", "-", client_id.lower()).strip("-") or "client"
    return f"dev@{host}.example"


def config_entry(settings: dict, client_id: str) -> dict | None:
    for entry in settings.get("sandbox_clients", []):
        if entry.get("client_id") == client_id:
            return entry
    return None


def apply_config(row: ClientRow, entry: dict, *, credentials: bool) -> None:
    """Copy a ``[[sandbox_clients]]`` entry onto its row. ``credentials`` also copies the
    secret and redirect URIs: false once the dashboard manages them, so a restart does not
    undo what the third party changed there."""
    mode = entry.get("mode", "sandbox")
    if mode not in MODES:
        raise ConfigError(f"sandbox_clients {row.client_id}: mode must be 'sandbox' or 'live', got {mode!r}")
    row.company_name = entry.get("company_name", row.client_id)
    row.company_website = entry.get("company_website", "")
    row.scope_of_use = entry.get("scope_of_use", "")
    row.mode = mode
    row.user_email = entry.get("user_email") or default_user_email(row.client_id)
    row.user_uid = row.user_uid or user_uid_for(row.client_id)
    if credentials:
        row.secret_hash = digest(entry["client_secret"])
        row.redirect_uris = list(dict.fromkeys(entry.get("redirect_uris", [])))
        row.secret_rotated = None


def reset_to_config(row: ClientRow, settings: dict) -> bool:
    """"Reset to configuration": the config's secret and redirect URIs apply again, now and
    at every start. False when the client is not in the configuration."""
    entry = config_entry(settings, row.client_id)
    if entry is None:
        return False
    row.dashboard_managed = False
    apply_config(row, entry, credentials=True)
    return True


def sign_in(s: Session, client_id: str, client_secret: str) -> ClientRow | None:
    """The registration for this client_id + client_secret pair (constant-time compare)."""
    row = s.get(ClientRow, (client_id or "").strip()[:64])
    expected = row.secret_hash if row is not None else digest("no such client")
    ok = same(digest(client_secret or ""), expected)
    return row if row is not None and ok else None


# ---- OAuth settings ---------------------------------------------------------------------

def check_url(url: str, what: str = "URL") -> str:
    """An absolute http(s) URL without fragment or credentials; returned exactly as given."""
    if len(url) > MAX_URL_LENGTH:
        raise SettingsError(f"The {what} is longer than {MAX_URL_LENGTH} characters.")
    if _CONTROL.search(url):
        raise SettingsError(f"The {what} {url!r} contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise SettingsError(f"The {what} {url!r} is not a valid URL.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"The {what} {url!r} must be an absolute http:// or https:// URL.")
    if parts.fragment or url.endswith("#"):
        raise SettingsError(f"The {what} {url!r} must not have a #fragment.")
    if parts.username is not None or parts.password is not None:
        raise SettingsError(f"The {what} {url!r} must not contain a user name or password.")
    return url


def parse_redirect_uris(text: str) -> list[str]:
    """One redirect URI per line. They are matched byte for byte at ``/oauth/authorize``,
    so each is kept exactly as typed (only surrounding blanks and duplicates go)."""
    uris = list(dict.fromkeys(line.strip() for line in (text or "").splitlines() if line.strip()))
    if len(uris) > MAX_REDIRECT_URIS:
        raise SettingsError(f"At most {MAX_REDIRECT_URIS} redirect URIs can be registered; you entered {len(uris)}.")
    for uri in uris:
        check_url(uri, "redirect URI")
    return uris


def set_redirect_uris(row: ClientRow, uris: list[str]) -> None:
    row.redirect_uris = list(uris)
    row.dashboard_managed = True


def rotate_secret(row: ClientRow, now: datetime | None = None) -> str:
    """A new client secret; the old one stops working at once. Returned to be shown once."""
    secret = new_token()
    row.secret_hash = digest(secret)
    row.secret_rotated = now or utcnow()
    row.dashboard_managed = True
    return secret


# ---- API settings -----------------------------------------------------------------------

def add_years(when: datetime, years: int) -> datetime:
    try:
        return when.replace(year=when.year + years)
    except ValueError:  # 29 February
        return when.replace(year=when.year + years, day=28)


def create_api_token(s: Session, client_id: str, name: str, years: int,
                     now: datetime | None = None) -> tuple[ApiTokenRow, str]:
    """A JSON API token, valid ``years`` years (UtilityAPI: 10 by default)."""
    if s.query(ApiTokenRow).filter_by(client_id=client_id).count() >= MAX_API_TOKENS:
        raise SettingsError(f"At most {MAX_API_TOKENS} API tokens per registration; expire and "
                            "forget old ones first.")
    now = now or utcnow()
    token = new_token()
    row = ApiTokenRow(client_id=client_id, token_hash=digest(token), last4=token[-4:],
                      name=(name or "").strip()[:200], created=now, expires=add_years(now, int(years)))
    s.add(row)
    s.flush()
    return row, token


def api_tokens(s: Session, client_id: str) -> list[ApiTokenRow]:
    return s.query(ApiTokenRow).filter_by(client_id=client_id).order_by(ApiTokenRow.id.desc()).all()


def expire_api_token(s: Session, client_id: str, token_id: int, now: datetime | None = None) -> bool:
    """"Expire now": the token is refused from this moment. False if not this client's."""
    row = s.get(ApiTokenRow, token_id) if valid_id(token_id) else None
    if row is None or row.client_id != client_id:
        return False
    now = now or utcnow()
    if row.expires > now:
        row.expires = now
    return True


# ---- Webhook settings -------------------------------------------------------------------

def create_webhook(s: Session, box: Vault, client_id: str, url: str,
                   event_types: list[str] | None = None) -> tuple[WebhookEndpointRow, str]:
    """A webhook endpoint and its signing secret (returned once, kept encrypted)."""
    check_url(url.strip(), "webhook URL")
    unknown = [t for t in event_types or [] if t not in EVENT_TYPES]
    if unknown:
        raise SettingsError(f"Unknown event type {unknown[0]!r}.")
    if s.query(WebhookEndpointRow).filter_by(client_id=client_id).count() >= MAX_WEBHOOKS:
        raise SettingsError(f"At most {MAX_WEBHOOKS} webhook endpoints per registration.")
    secret = new_webhook_secret()
    row = WebhookEndpointRow(client_id=client_id, url=url.strip(), secret_encrypted=box.encrypt(secret),
                             event_types=[t for t in EVENT_TYPES if t in set(event_types or [])])
    s.add(row)
    s.flush()
    return row, secret


def webhooks(s: Session, client_id: str) -> list[WebhookEndpointRow]:
    return s.query(WebhookEndpointRow).filter_by(client_id=client_id).order_by(WebhookEndpointRow.id).all()


def _webhook(s: Session, client_id: str, endpoint_id: int) -> WebhookEndpointRow | None:
    row = s.get(WebhookEndpointRow, endpoint_id) if valid_id(endpoint_id) else None
    return row if row is not None and row.client_id == client_id else None


def set_webhook_disabled(s: Session, client_id: str, endpoint_id: int, disabled: bool) -> bool:
    row = _webhook(s, client_id, endpoint_id)
    if row is None:
        return False
    row.disabled = disabled
    return True


def delete_webhook(s: Session, client_id: str, endpoint_id: int) -> bool:
    """Remove an endpoint. Its past events stay listed (``/api/v2/events``); pending
    deliveries to it stop."""
    row = _webhook(s, client_id, endpoint_id)
    if row is None:
        return False
    events = s.query(EventRow).filter_by(endpoint_id=row.id)
    events.filter(EventRow.is_delivered.is_(False)).update(
        {"next_attempt": None, "last_result": "not delivered: endpoint deleted"}, synchronize_session=False)
    events.update({"endpoint_id": None}, synchronize_session=False)
    s.delete(row)
    return True


def recent_events(s: Session, client_id: str, limit: int = 25, now: datetime | None = None) -> list[EventRow]:
    """The latest events (not those scheduled for later), newest first."""
    now = now or utcnow()
    rows = (s.query(EventRow).filter(EventRow.client_id == client_id, EventRow.ts <= now)
            .order_by(EventRow.ts.desc()).limit(limit).all())
    return sorted(rows, key=event_sort_key, reverse=True)


# ---- Green Button hosting ---------------------------------------------------------------

def rotate_registration_token(row: ClientRow) -> str:
    """A new ``registration_access_token`` (ApplicationInformation); the old one dies."""
    token = new_token()
    row.registration_token_hash = digest(token)
    return token

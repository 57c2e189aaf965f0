"""The sandbox custodian's records (plain SQLAlchemy, no Flask).

Codes and tokens are stored only as SHA-256 hashes.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..storage import utcnow


class Base(DeclarativeBase):
    pass


class ClientRow(Base):
    """A registered third party (an OAuth client)."""

    __tablename__ = "clients"
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    company_name: Mapped[str] = mapped_column(String(200))
    company_website: Mapped[str] = mapped_column(String(500), default="")
    scope_of_use: Mapped[str] = mapped_column(Text, default="")
    redirect_uris: Mapped[list] = mapped_column(JSON, default=list)
    #: "sandbox" (test accounts only) or "live" (any customer), as UtilityAPI registrations
    mode: Mapped[str] = mapped_column(String(8), default="sandbox")
    #: the third party's user on the platform (the JSON API's user_email / user_uid)
    user_email: Mapped[str] = mapped_column(String(320), default="")
    user_uid: Mapped[str] = mapped_column(String(32), default="")
    #: once the dashboard changed redirect_uris or the secret, the config no longer overwrites them
    dashboard_managed: Mapped[bool] = mapped_column(Boolean, default=False)
    #: hash of the registration_access_token (ApplicationInformation); shown once when issued
    registration_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    secret_rotated: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class PendingAuthorization(Base):
    """A customer's trip through lookup -> passcode -> consent, bound to their browser session."""

    __tablename__ = "pending_authorizations"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    client_id: Mapped[str] = mapped_column(String(64))
    request_args: Mapped[dict] = mapped_column(JSON)          # the original /oauth/authorize query
    stage: Mapped[str] = mapped_column(String(16), default="lookup")  # lookup | otp | consent
    scenario: Mapped[str | None] = mapped_column(String(64), nullable=True)
    account_number: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lookup_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    contact_channel: Mapped[str | None] = mapped_column(String(8), nullable=True)
    contact_address: Mapped[str | None] = mapped_column(String(320), nullable=True)
    test_contact: Mapped[bool] = mapped_column(Boolean, default=False)
    otp_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    otp_shown: Mapped[str | None] = mapped_column(String(12), nullable=True)  # test accounts only
    otp_expires: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    otp_attempts: Mapped[int] = mapped_column(Integer, default=0)
    notice: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: TEST_<scenario>_<contact>: the passcode really goes out (SMTP / Twilio)
    deliver: Mapped[bool] = mapped_column(Boolean, default=False)
    #: when each passcode of the last hour was issued (epoch seconds): the resend limits
    otp_sent: Mapped[list] = mapped_column(JSON, default=list)
    #: the last passcode's delivery result and detail (see delivery.RESULTS)
    otp_delivery: Mapped[str | None] = mapped_column(String(16), nullable=True)
    otp_delivery_detail: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: SHA-256 of the sandbox browser session's random id (its outbox messages carry it)
    browser_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)


class AuthorizationRow(Base):
    """A customer's authorization of a third party (UtilityAPI's Authorization)."""

    __tablename__ = "authorizations"
    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"))
    scenario: Mapped[str] = mapped_column(String(64))
    account_number: Mapped[str] = mapped_column(String(64))
    customer_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    status: Mapped[int] = mapped_column(Integer, default=1)      # ESPI: 0 revoked, 1 active, 2 denied
    requested_scope: Mapped[str] = mapped_column(Text, default="")
    scope: Mapped[str] = mapped_column(Text, default="")         # the granted (final) scope
    meter_uids: Mapped[list] = mapped_column(JSON, default=list)
    history_start: Mapped[int] = mapped_column(Integer)          # publishedPeriod start (epoch s)
    authorized_start: Mapped[int] = mapped_column(Integer)
    authorized_end: Mapped[int] = mapped_column(Integer)         # 0 = until revoked
    is_test: Mapped[bool] = mapped_column(Boolean, default=True)
    #: how it was made: "oauth" (a customer went through the portal) or "test-submit"
    source: Mapped[str] = mapped_column(String(16), default="oauth")
    #: the test-submit scenario's behaviour; for OAuth authorizations "normal"
    behaviour: Mapped[str] = mapped_column(String(32), default="normal")
    form_uid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    referrals: Mapped[list] = mapped_column(JSON, default=list)
    nickname: Mapped[str | None] = mapped_column(String(200), nullable=True)
    is_archived: Mapped[bool] = mapped_column(Boolean, default=False)
    #: when the data is collected: batch endpoints answer 202 before this (readiness)
    ready_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(16), nullable=True)  # customer | third_party
    declined_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    expired_notified: Mapped[bool] = mapped_column(Boolean, default=False)


class MeterRow(Base):
    """A meter found for an authorization (UtilityAPI's Meter; ESPI's UsagePoint).

    ``uid`` is new for every authorization, as on the platform; ``service_uid``
    names the customer-directory meter whose deterministic data it serves.
    """

    __tablename__ = "meters"
    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    authorization_uid: Mapped[str] = mapped_column(ForeignKey("authorizations.uid"), index=True)
    service_uid: Mapped[str] = mapped_column(String(32))
    position: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    is_archived: Mapped[bool] = mapped_column(Boolean, default=False)
    #: months asked for by POST /meters/historical-collection (None: not triggered)
    collection_duration: Mapped[int | None] = mapped_column(Integer, nullable=True)
    collection_started: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class AuthorizationCodeRow(Base):
    __tablename__ = "authorization_codes"
    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64))
    authorization_uid: Mapped[str] = mapped_column(ForeignKey("authorizations.uid"))
    redirect_uri: Mapped[str] = mapped_column(Text, default="")
    scope: Mapped[str] = mapped_column(Text, default="")
    code_challenge: Mapped[str | None] = mapped_column(String(128), nullable=True)
    code_challenge_method: Mapped[str | None] = mapped_column(String(8), nullable=True)
    expires: Mapped[datetime] = mapped_column(DateTime)
    #: presented at the token endpoint once (rightly or not): spent. Kept a day past its expiry,
    #: so a second presentation is recognised as a replay and revokes what the code gave.
    used: Mapped[bool] = mapped_column(Boolean, default=False)
    #: presented again after it was spent: a token still being issued for it is born revoked
    replayed: Mapped[bool] = mapped_column(Boolean, default=False)


class TokenRow(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    access_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    refresh_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True, nullable=True)
    token_class: Mapped[str] = mapped_column(String(16), default="access")  # access | client
    client_id: Mapped[str] = mapped_column(String(64))
    authorization_uid: Mapped[str | None] = mapped_column(ForeignKey("authorizations.uid"), nullable=True)
    scope: Mapped[str] = mapped_column(Text, default="")
    issued: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires: Mapped[datetime] = mapped_column(DateTime)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the refresh token was exchanged (rotation): presenting it again is a replay
    refresh_used: Mapped[bool] = mapped_column(Boolean, default=False)
    #: when this refresh token was first issued (kept when it moves to a new record without rotation)
    refresh_issued: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)

    # what Authlib asks of a token record (refresh and revocation endpoints)
    def is_expired(self) -> bool:
        return self.expires < utcnow()

    def is_revoked(self) -> bool:
        return bool(self.revoked)

    def get_scope(self) -> str:
        return self.scope

    def check_client(self, client) -> bool:
        return self.client_id == client.get_client_id()


class ApiTokenRow(Base):
    """A JSON API token of a third party (dashboard "API Settings"); stored as a hash."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    last4: Mapped[str] = mapped_column(String(4))
    name: Mapped[str] = mapped_column(String(200), default="")
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires: Mapped[datetime] = mapped_column(DateTime)   # 10 years by default, or when expired by hand


class WebhookEndpointRow(Base):
    """Where a third party receives events (dashboard "Webhook Settings")."""

    __tablename__ = "webhook_endpoints"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), index=True)
    url: Mapped[str] = mapped_column(Text)
    secret_encrypted: Mapped[str] = mapped_column(Text)     # Fernet (storage.Vault): needed to sign
    event_types: Mapped[list] = mapped_column(JSON, default=list)   # empty: every type
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class EventRow(Base):
    """One event for one delivery target (UtilityAPI's Event object; reference §5.9).

    ``ts`` is when it happens; an event whose ts is in the future (the end of
    data collection) is neither listed nor delivered before then.
    """

    __tablename__ = "events"
    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), index=True)
    type: Mapped[str] = mapped_column(String(64))
    ts: Mapped[datetime] = mapped_column(DateTime, index=True)
    authorization_uid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    meter_uid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    form_uid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    endpoint_id: Mapped[int | None] = mapped_column(ForeignKey("webhook_endpoints.id"), nullable=True)
    delivery_target: Mapped[str | None] = mapped_column(Text, nullable=True)
    is_delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt: Mapped[datetime | None] = mapped_column(DateTime, nullable=True, index=True)
    last_result: Mapped[str | None] = mapped_column(Text, nullable=True)


class FormRow(Base):
    """An authorization form (the JSON API's Form; test-submit's target)."""

    __tablename__ = "forms"
    uid: Mapped[str] = mapped_column(String(32), primary_key=True)
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"), index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    template_uid: Mapped[str | None] = mapped_column(String(32), nullable=True)
    customer_email: Mapped[str | None] = mapped_column(String(320), nullable=True)
    utility: Mapped[str | None] = mapped_column(String(32), nullable=True)
    scope: Mapped[dict] = mapped_column(JSON, default=dict)
    is_archived: Mapped[bool] = mapped_column(Boolean, default=False)
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)


class OutboxMessage(Base):
    """Every one-time passcode message the sandbox sends (TEST_<scenario>_<contact>) or
    only records (the fictional real customers), with what became of it."""

    __tablename__ = "outbox"
    #: ids are never reused after a clear (a delivery still in flight records by id)
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    channel: Mapped[str] = mapped_column(String(8))
    to: Mapped[str] = mapped_column(String(320))
    scenario: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text)
    #: queued | sending | delivered | failed | recorded | not_sent (delivery.RESULTS)
    delivery: Mapped[str] = mapped_column(String(200), default="queued")
    detail: Mapped[str] = mapped_column(Text, default="")
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    #: the pending authorization (or My authorizations sign-in) that asked for it
    pending_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    #: SHA-256 of the random id of the sandbox browser session that caused it
    browser_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)

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

    # what Authlib's BearerTokenValidator asks of a token
    def is_expired(self) -> bool:
        return self.expires < utcnow()

    def is_revoked(self) -> bool:
        return bool(self.revoked)

    def get_scope(self) -> str:
        return self.scope


class OutboxMessage(Base):
    """Every one-time passcode message the sandbox would send (TEST_<scenario>_<contact>)."""

    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    channel: Mapped[str] = mapped_column(String(8))
    to: Mapped[str] = mapped_column(String(320))
    scenario: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    delivery: Mapped[str] = mapped_column(String(200), default="recorded (not delivered)")

"""The demo site's records (plain SQLAlchemy, no Flask). Secrets are stored
encrypted (:class:`demo.storage.Vault`), OAuth states only as hashes."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..storage import utcnow


class Base(DeclarativeBase):
    pass


class VisitorSettings(Base):
    """What a visitor changed on the settings page (the top configuration layer)."""

    __tablename__ = "visitor_settings"
    visitor_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    values: Mapped[dict] = mapped_column(JSON, default=dict)       # non-secret settings
    client_secret_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Run(Base):
    """One trip through the OAuth flow and what came back."""

    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    visitor_id: Mapped[str] = mapped_column(String(32), index=True)
    created: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending|authorized|declined|error
    utility: Mapped[str] = mapped_column(String(32))
    client_id: Mapped[str] = mapped_column(String(128))
    authorize_url: Mapped[str] = mapped_column(Text)
    token_url: Mapped[str] = mapped_column(Text)
    redirect_uri: Mapped[str] = mapped_column(Text)
    token_auth_method: Mapped[str] = mapped_column(String(32), default="client_secret_basic")
    client_secret_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    lookup_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    lookup_value: Mapped[str | None] = mapped_column(String(320), nullable=True)
    requested_scope: Mapped[str] = mapped_column(Text)
    granted_scope: Mapped[str | None] = mapped_column(Text, nullable=True)
    state_hash: Mapped[str | None] = mapped_column(String(64), unique=True, index=True, nullable=True)
    code_verifier_enc: Mapped[str | None] = mapped_column(Text, nullable=True)
    authorization_url: Mapped[str] = mapped_column(Text, default="")
    token_enc: Mapped[str | None] = mapped_column(Text, nullable=True)   # the whole token JSON, encrypted
    token_summary: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # masked values only
    callback: Mapped[dict | None] = mapped_column(JSON, nullable=True)   # callback query, code masked
    authorization: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    meters: Mapped[list | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    meter_count: Mapped[int | None] = mapped_column(Integer, nullable=True)

"""The demo site's records (plain SQLAlchemy, no Flask). Secrets are stored
encrypted (:class:`demo.storage.Vault`), OAuth states only as hashes."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, UniqueConstraint
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
    # mix-up protection (RFC 9207, RFC 9700 §4.4): the issuer this run's callback must name in "iss",
    # whether a callback without "iss" is refused, and the check's result at the callback
    issuer: Mapped[str | None] = mapped_column(Text, nullable=True)
    require_iss: Mapped[bool] = mapped_column(Boolean, default=False)
    iss_check: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    token_enc: Mapped[str | None] = mapped_column(Text, nullable=True)   # the whole token JSON, encrypted
    token_summary: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # masked values only
    callback: Mapped[dict | None] = mapped_column(JSON, nullable=True)   # callback query, code masked
    authorization: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    meters: Mapped[list | None] = mapped_column(JSON, nullable=True)
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    meter_count: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tools: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # last result of each token tool, masked


class Exchange(Base):
    """One step of a run as the integrator sees it: an HTTP request the site made to the
    custodian (token, ESPI, JSON API, tools) or a browser step (authorize redirect, callback).

    Everything here is masked before it is stored (:mod:`.exchanges`); bodies are kept up to
    :data:`demo.site.exchanges.STORE_LIMIT` bytes (``*_size`` is the full size). No foreign key
    to ``runs``: the authorize step is recorded before the run's row is committed.
    """

    __tablename__ = "exchanges"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_exchange_run_seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), index=True)
    seq: Mapped[int] = mapped_column(Integer)                         # 1, 2, … within the run
    ts: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))      # authorize|callback|token|espi|json|webhook|tool|…
    title: Mapped[str] = mapped_column(String(200), default="")
    method: Mapped[str | None] = mapped_column(String(10), nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)                       # masked
    request_headers: Mapped[list | None] = mapped_column(JSON, nullable=True)         # [[name, value]], masked
    request_body: Mapped[str | None] = mapped_column(Text, nullable=True)             # masked, truncated
    request_size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_headers: Mapped[list | None] = mapped_column(JSON, nullable=True)        # [[name, value]], masked
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)            # masked, truncated
    response_size: Mapped[int | None] = mapped_column(Integer, nullable=True)         # bytes received
    response_truncated: Mapped[bool] = mapped_column(Boolean, default=False)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    error: Mapped[dict | None] = mapped_column(JSON, nullable=True)   # {"kind", "message"}: no answer / cut
    fields: Mapped[dict | None] = mapped_column(JSON, nullable=True)  # notes: decoded params etc., masked

"""SQLAlchemy plumbing shared by both applications (no Flask).

SQLite in the instance folder by default (WAL, busy timeout); any SQLAlchemy
URL, PostgreSQL included, works through ``database_url``.
"""
from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import create_engine, event, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite files get WAL, a busy timeout and foreign keys."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, future=True, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    return engine


class SchemaOutdated(RuntimeError):
    """The database's tables are older than the models."""


class Database:
    """An engine plus a session factory; ``with db.session() as s:`` commits or rolls back."""

    def __init__(self, url: str, metadata) -> None:
        self.engine = make_engine(url)
        self.metadata = metadata
        self._factory = sessionmaker(self.engine, expire_on_commit=False, future=True)
        try:
            metadata.create_all(self.engine)
        except OperationalError:
            # another worker created the tables between our check and our CREATE
            metadata.create_all(self.engine)
        self._check_columns()

    def _check_columns(self) -> None:
        """Refuse to run on tables an older version created without today's columns:
        a clear message at start-up instead of errors on every request later."""
        inspector = inspect(self.engine)
        for table in self.metadata.sorted_tables:
            have = {c["name"] for c in inspector.get_columns(table.name)}
            missing = [c.name for c in table.columns if c.name not in have]
            if missing:
                url = self.engine.url.render_as_string(hide_password=True)
                raise SchemaOutdated(
                    f"The database {url} was created by an older version of GBC Demo: table "
                    f"{table.name!r} lacks {', '.join(missing)}. Move the database file aside (or drop "
                    "its tables) and start again; it is re-created empty.")

    @contextmanager
    def session(self) -> Iterator[Session]:
        s = self._factory()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def dispose(self) -> None:
        self.engine.dispose()


class Vault:
    """Symmetric encryption for secrets kept at rest (client secrets, tokens)."""

    def __init__(self, secret_key: str) -> None:
        key = hashlib.sha256(b"gbc-demo-vault\0" + secret_key.encode("utf-8")).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(key))

    def encrypt(self, value: str | None) -> str | None:
        if value is None:
            return None
        return self._fernet.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return self._fernet.decrypt(value.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeEncodeError):
            return None

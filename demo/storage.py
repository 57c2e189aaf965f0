"""SQLAlchemy plumbing shared by both applications (no Flask).

SQLite in the instance folder by default (WAL, busy timeout); PostgreSQL through
``database_url`` = ``postgresql+psycopg://user:password@host/db`` (``pip install
"gbc-demo[postgres]"``). Opening a :class:`Database` runs the schema's Alembic
migrations to head (:mod:`demo.migrations`), safely when several workers start at once.
"""
from __future__ import annotations

import base64
import hashlib
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
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
    # hide_parameters: bound values (states, hashes) stay out of error messages and so out of logs
    # connect_timeout: a PostgreSQL that drops packets fails /readyz in seconds instead of hanging
    connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    # pre-ping (a SELECT 1 at every checkout) finds connections a server dropped; a SQLite file has no server
    engine = create_engine(url, future=True, pool_pre_ping=not url.startswith("sqlite"), hide_parameters=True,
                           connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=5000")   # first: switching to WAL may wait for another worker
            _wal(cur)
            # in WAL mode NORMAL syncs the log at checkpoints, not at every commit: a commit stays
            # atomic and survives a killed process; only a power cut may undo the latest commits.
            # FULL held the write lock over an fsync per commit and serialized the workers on it.
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    return engine


def _wal(cur, attempts: int = 50) -> None:
    """Switch a SQLite file to WAL. The switch needs the file to itself, and SQLite answers "database
    is locked" at once (no busy wait) while another process starting at the same moment holds it:
    try again for up to about 5 s. Once the file is in WAL (it stays so) this is a plain read."""
    for attempt in range(attempts):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.1)


class SchemaOutdated(RuntimeError):
    """The database's tables are older than the models."""


class Database:
    """An engine plus a session factory; ``with db.session() as s:`` commits or rolls back."""

    def __init__(self, url: str, metadata) -> None:
        self.engine = make_engine(url)
        self.metadata = metadata
        self._factory = sessionmaker(self.engine, expire_on_commit=False, future=True)
        #: what opening did to the schema: current, created, stamped or upgraded (demo.migrations.upgrade)
        self.migration = self._migrate()

    def _migrate(self) -> str:
        """The apps' schemas (the site's, the sandbox's) are migrated by Alembic; other metadata
        (throwaway tables in tests) is created directly."""
        from . import migrations

        name = migrations.name_of(self.metadata)
        try:
            if name is not None:
                return migrations.upgrade(self.engine, name)
            try:
                self.metadata.create_all(self.engine)
            except OperationalError:
                # another worker created the tables between our check and our CREATE
                self.metadata.create_all(self.engine)
            self._check_columns()
            return "created"
        except BaseException:
            self.engine.dispose()
            raise

    def _check_columns(self) -> None:
        """Refuse to run on tables an older version created without today's columns:
        a clear message at start-up instead of errors on every request later
        (metadata without migrations only; :mod:`demo.migrations` checks the apps' own)."""
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
    """Symmetric encryption for secrets kept at rest (client secrets, tokens), with key rotation.

    Values are encrypted with the current secret key and decrypted with it or any fallback
    (cryptography's MultiFernet), so a database written under an older key stays readable while
    ``gbc-demo rotate-keys`` (:mod:`demo.keys`) re-encrypts it. Each Fernet key is derived from a
    secret key as ``sha256("gbc-demo-vault\\0" + secret_key)``: the derivation never changes, so
    existing databases keep decrypting.
    """

    CURRENT, FALLBACK, UNREADABLE = "current", "fallback", "unreadable"

    def __init__(self, secret_key: str, fallbacks: Iterable[str] = ()) -> None:
        if not secret_key:
            raise ValueError("the vault needs a secret key")
        keys = [secret_key] + [k for k in dict.fromkeys(fallbacks) if k and k != secret_key]
        self._fernets = [Fernet(self._derive(k)) for k in keys]
        self._multi = MultiFernet(self._fernets)   # the first key encrypts; any key decrypts

    @classmethod
    def from_settings(cls, settings: dict) -> Vault:
        """The vault both apps and ``gbc-demo rotate-keys`` use: ``secret_key`` (or the instance
        key file) encrypts; ``secret_key_fallbacks`` and an unfinished ``--new-key``'s old key decrypt."""
        from .keys import current_secret, fallback_secrets

        return cls(current_secret(settings), fallback_secrets(settings))

    @staticmethod
    def _derive(secret_key: str) -> bytes:
        key = hashlib.sha256(b"gbc-demo-vault\0" + secret_key.encode("utf-8")).digest()
        return base64.urlsafe_b64encode(key)

    @property
    def fallback_count(self) -> int:
        return len(self._fernets) - 1

    def encrypt(self, value: str | None) -> str | None:
        if value is None:
            return None
        return self._multi.encrypt(value.encode("utf-8")).decode("ascii")

    def decrypt(self, value: str | None) -> str | None:
        """The plaintext, or None when no key opens ``value`` (or it is None)."""
        if value is None:
            return None
        try:
            return self._multi.decrypt(value.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            return None

    def state(self, value: str) -> str:
        """Which key opens ``value``: :attr:`CURRENT`, :attr:`FALLBACK` (it needs re-encrypting)
        or :attr:`UNREADABLE` (no configured key opens it)."""
        try:
            raw = value.encode("ascii")
        except UnicodeError:
            return self.UNREADABLE
        for index, fernet in enumerate(self._fernets):
            try:
                fernet.decrypt(raw)
            except InvalidToken:
                continue
            return self.CURRENT if index == 0 else self.FALLBACK
        return self.UNREADABLE

    def needs_rotation(self, value: str) -> bool:
        """True when ``value`` opens only with a fallback key."""
        return self.state(value) == self.FALLBACK

    def rotate(self, value: str) -> str:
        """``value`` re-encrypted under the current key (its Fernet timestamp kept).
        Raises :class:`cryptography.fernet.InvalidToken` when no key opens it."""
        try:
            raw = value.encode("ascii")
        except UnicodeError:
            raise InvalidToken from None
        return self._multi.rotate(raw).decode("ascii")

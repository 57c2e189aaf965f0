"""Secret keys and their rotation (no Flask): ``gbc-demo rotate-keys``.

One secret key (``secret_key``, or the file ``instance/secret_key`` when it is not configured)
encrypts the secrets both databases keep (:class:`~demo.storage.Vault`) and, through keys
derived from it, signs session cookies, CSRF tokens, preset links and receipt links. Older keys
listed in ``secret_key_fallbacks`` still decrypt and verify, so a key can change while the
servers run:

1. set the new ``secret_key``, move the old one to ``secret_key_fallbacks``, restart;
2. ``gbc-demo rotate-keys`` re-encrypts every encrypted column under the new key;
3. remove the old key from ``secret_key_fallbacks`` and restart. Sessions, open forms, preset
   links and receipt links made under it stop working then.

When the key lives in the instance folder, ``gbc-demo rotate-keys --new-key`` does step 1
(with the servers stopped): it copies the key to ``instance/secret_key.old`` (read as a
fallback while it exists), then writes a new ``instance/secret_key`` and re-encrypts.
``--drop-old`` later deletes the old file once no value needs it. Every step writes a file
atomically, so a crash at any point leaves every value readable. After a crash during
``--new-key``'s re-encryption, plain ``gbc-demo rotate-keys`` finishes it (a second ``--new-key``
is refused until ``--drop-old`` has run); after a crash in ``--drop-old``, run it again.

Re-encryption works on the tables by name (reflected, not through the models), in batches of
rows, one transaction each; a value is replaced only if it is still the value that was read,
so a concurrent write by a running server is never overwritten. Values no key opens are left
alone and reported, never deleted.
"""
from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from cryptography.fernet import InvalidToken

from .config import ensure_secret_key
from .storage import Vault, make_engine
from .tokens import mask

KEY_FILE = "secret_key"
FALLBACK_FILE = "secret_key.old"
BATCH = 200


@dataclass(frozen=True)
class EncryptedTable:
    """The encrypted columns of one table. ``private_key``: the primary key names a visitor
    (their cookie's id), so reports show only its last 4 characters."""

    database: str          # "site" or "sandbox"
    table: str
    key: str               # the primary key column
    columns: tuple[str, ...]
    private_key: bool = False


#: Every column :class:`~demo.storage.Vault` writes (tests/test_keys.py checks the models against it).
ENCRYPTED: tuple[EncryptedTable, ...] = (
    EncryptedTable("site", "visitor_settings", "visitor_id", ("client_secret_enc",), private_key=True),
    EncryptedTable("site", "runs", "id", ("client_secret_enc", "code_verifier_enc", "token_enc")),
    EncryptedTable("site", "integrator_settings", "visitor_id", ("api_token_enc", "webhook_secret_enc"),
                   private_key=True),
    EncryptedTable("sandbox", "webhook_endpoints", "id", ("secret_encrypted",)),
)

#: Which setting names each database.
DATABASES = {"site": "database_url", "sandbox": "sandbox_database_url"}


class RotationError(RuntimeError):
    """A key change that cannot be done now, with what to do instead."""


# ---- the keys ---------------------------------------------------------------------------------

def current_secret(settings: dict) -> str:
    """The key that encrypts and signs: ``secret_key``, else the instance key file."""
    return ensure_secret_key(settings, KEY_FILE)


def fallback_file(settings: dict) -> Path:
    return Path(settings["instance_path"]) / FALLBACK_FILE


def _read_key(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def fallback_secrets(settings: dict) -> list[str]:
    """Older keys that still decrypt and verify: ``secret_key_fallbacks``, then the key an
    unfinished ``--new-key`` kept in ``instance/secret_key.old``."""
    keys = [k for k in settings.get("secret_key_fallbacks") or [] if isinstance(k, str) and k]
    old = _read_key(fallback_file(settings))
    if old:
        keys.append(old)
    return list(dict.fromkeys(keys))


def signing_keys(current: str | bytes, fallbacks: Iterable[str | bytes] = ()) -> list[str | bytes]:
    """Keys for itsdangerous: it signs with the last and verifies with any (newest last)."""
    return [*(k for k in fallbacks if k and k != current), current]


def _write_key(path: Path, value: str) -> None:
    """Write ``value`` to ``path`` atomically (0600): readers see the old file or the new one,
    never a part, and the new one is on disk before this returns."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(value)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def new_instance_key(settings: dict) -> str:
    """Replace the instance key file with a new random key, keeping the current one in
    ``secret_key.old`` first. Returns the new key. Safe to run again after a crash."""
    if settings.get("secret_key"):
        raise RotationError(
            "secret_key is configured (GBC_SECRET_KEY or a config file), so --new-key cannot change it. Put a new "
            "key there, move the old one to secret_key_fallbacks, restart, then run gbc-demo rotate-keys.")
    folder = Path(settings["instance_path"])
    current = current_secret(settings)           # creates the key file on a fresh instance
    old_path = folder / FALLBACK_FILE
    old = _read_key(old_path)
    if old and old != current:
        raise RotationError(
            f"an earlier --new-key is not finished: the key before it is still kept in {old_path}. Run "
            "gbc-demo rotate-keys (re-encrypts), then gbc-demo rotate-keys --drop-old, before making another key.")
    if not old:
        _write_key(old_path, current)            # 1. the current key is safe as a fallback ...
    new = secrets.token_hex(32)
    _write_key(folder / KEY_FILE, new)           # 2. ... before the new key takes its place
    return new


# ---- re-encryption ----------------------------------------------------------------------------

@dataclass
class ColumnReport:
    database: str
    table: str
    column: str
    reencrypted: int = 0     # opened with a fallback key, now under the current key
    current: int = 0         # already under the current key
    unreadable: int = 0      # no key opens it: left alone
    changed: int = 0         # a server rewrote it meanwhile: left to that write (run again to check)
    unreadable_ids: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.database} {self.table}.{self.column}"


@dataclass
class Report:
    columns: list[ColumnReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)     # databases or tables not found
    dry_run: bool = False

    def total(self, what: str) -> int:
        return sum(getattr(c, what) for c in self.columns)

    def lines(self) -> list[str]:
        verb = "to re-encrypt" if self.dry_run else "re-encrypted"
        out = list(self.notes)
        for c in self.columns:
            line = f"{c.name}: {c.reencrypted} {verb}, {c.current} already current, {c.unreadable} unreadable"
            if c.changed:
                line += f", {c.changed} changed meanwhile (left as written)"
            if c.unreadable_ids:
                more = c.unreadable - len(c.unreadable_ids)
                line += f" (rows {', '.join(c.unreadable_ids)}{f' and {more} more' if more > 0 else ''})"
            out.append(line)
        out.append(f"total: {self.total('reencrypted')} {verb}, {self.total('current')} already current, "
                   f"{self.total('unreadable')} unreadable with any key"
                   + (f", {self.total('changed')} changed meanwhile" if self.total("changed") else ""))
        return out


def _persistent(url: str) -> bool:
    """False for a SQLite database that does not exist yet (nothing to do, and no file to create)."""
    if not url.startswith("sqlite:"):
        return True
    if url in ("sqlite://", "sqlite:///:memory:") or url.startswith("sqlite:///:memory:"):
        return False
    return Path(url[len("sqlite:///"):]).exists()


def reencrypt_table(engine: sa.Engine, vault: Vault, spec: EncryptedTable, *, batch: int = BATCH,
                    dry_run: bool = False) -> list[ColumnReport]:
    """Re-encrypt one table's columns under the vault's current key, ``batch`` rows per transaction."""
    table = sa.Table(spec.table, sa.MetaData(), autoload_with=engine)
    key = table.c[spec.key]
    reports = {name: ColumnReport(spec.database, spec.table, name) for name in spec.columns}
    last = None
    while True:
        with engine.begin() as conn:
            query = sa.select(key, *(table.c[name] for name in spec.columns)).order_by(key).limit(batch)
            if last is not None:
                query = query.where(key > last)
            rows = conn.execute(query).all()
            for row in rows:
                row_id = row[0]
                for index, name in enumerate(spec.columns, start=1):
                    value, report = row[index], reports[name]
                    if value is None:
                        continue
                    state = vault.state(value)
                    if state == Vault.CURRENT:
                        report.current += 1
                    elif state == Vault.UNREADABLE:
                        report.unreadable += 1
                        if len(report.unreadable_ids) < 10:
                            shown = str(row_id)
                            report.unreadable_ids.append(mask(shown) if spec.private_key else shown)
                    elif dry_run:
                        report.reencrypted += 1
                    else:
                        try:
                            fresh = vault.rotate(value)
                        except InvalidToken:   # pragma: no cover - state() just opened it
                            report.unreadable += 1
                            continue
                        done = conn.execute(sa.update(table).where(key == row_id, table.c[name] == value)
                                            .values({name: fresh}))
                        if done.rowcount == 1:
                            report.reencrypted += 1
                        else:
                            report.changed += 1
        if len(rows) < batch:
            break
        last = rows[-1][0]
    return list(reports.values())


def rotate(settings: dict, vault: Vault | None = None, *, batch: int = BATCH, dry_run: bool = False,
           tables: Iterable[EncryptedTable] = ENCRYPTED) -> Report:
    """Re-encrypt every encrypted column of both databases under the current key. Idempotent."""
    if batch < 1:
        raise ValueError("batch must be at least 1")
    vault = vault or Vault.from_settings(settings)
    report = Report(dry_run=dry_run)
    by_db: dict[str, list[EncryptedTable]] = {}
    for spec in tables:
        by_db.setdefault(spec.database, []).append(spec)
    for database, specs in by_db.items():
        url = settings[DATABASES[database]]
        if not _persistent(url):
            report.notes.append(f"{database}: no database yet, nothing to do")
            continue
        engine = make_engine(url)
        try:
            present = set(sa.inspect(engine).get_table_names())
            for spec in specs:
                if spec.table not in present:
                    report.notes.append(f"{database} {spec.table}: no such table yet, nothing to do")
                    continue
                report.columns.extend(reencrypt_table(engine, vault, spec, batch=batch, dry_run=dry_run))
        finally:
            engine.dispose()
    return report


def drop_fallback_file(settings: dict, *, batch: int = BATCH,
                       tables: Iterable[EncryptedTable] = ENCRYPTED) -> tuple[Report, bool]:
    """Re-encrypt, check that nothing needs ``secret_key.old`` any more, then delete it.
    Returns the re-encryption's report and whether the file was deleted."""
    path = fallback_file(settings)
    tables = tuple(tables)
    report = rotate(settings, batch=batch, tables=tables)
    if not path.exists():
        return report, False
    check = rotate(settings, batch=batch, dry_run=True, tables=tables)
    if report.total("changed") or check.total("reencrypted"):
        raise RotationError(
            f"values were written under an older key while this ran, so {path} is kept. Restart every server "
            "(they keep the key they started with), then run gbc-demo rotate-keys --drop-old again.")
    path.unlink()
    return report, True

"""Unit tests for demo.tokens (secrets, hashing, masking) and demo.storage
(the encryption vault and the SQLite database plumbing); no Flask."""
from __future__ import annotations

import hashlib
import re

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from demo.storage import Database, Vault
from demo.tokens import basic_auth_header, digest, mask, new_otp, new_token, new_uid, same

# --- mask ----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [None, ""])
def test_mask_missing(value):
    assert mask(value) == "(not set)"


@pytest.mark.parametrize("value", ["a", "abcd", "abcdefgh"])
def test_mask_short_values_reveal_nothing(value):
    masked = mask(value)
    assert masked == "••••"
    assert not any(ch in masked for ch in value)


def test_mask_long_value_shows_last_four():
    assert mask("0123456789abcdef3f02") == "••••3f02"
    assert mask("123456789") == "••••6789"


@given(st.text(alphabet=st.characters(blacklist_characters="•"), max_size=200))
def test_mask_never_reveals_more_than_last_four(value):
    masked = mask(value)
    if not value:
        assert masked == "(not set)"
        return
    assert masked.startswith("••••")
    shown = masked[4:]
    assert len(shown) <= 4
    assert value.endswith(shown)
    if len(value) <= 8:
        assert shown == ""
    if len(value) > 4:
        assert masked != value


# --- digest / same ---------------------------------------------------------------------

def test_digest_is_sha256_hex():
    assert digest("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert digest("é") == hashlib.sha256("é".encode()).hexdigest()


def test_digest_stable_and_distinct():
    token = new_token()
    assert digest(token) == digest(token)
    assert digest(token) != digest(token + "x")
    assert re.fullmatch(r"[0-9a-f]{64}", digest(""))


@pytest.mark.parametrize("a,b,expected", [
    ("secret", "secret", True),
    ("", "", True),
    ("émoji✓", "émoji✓", True),
    ("secret", "Secret", False),
    ("secret", "secret ", False),
    ("secret", "", False),
    (None, "secret", False),
    ("secret", None, False),
    (None, None, False),
])
def test_same(a, b, expected):
    assert same(a, b) is expected


# --- random values -------------------------------------------------------------------

def test_new_otp_is_six_digits():
    codes = {new_otp() for _ in range(200)}
    assert all(re.fullmatch(r"[0-9]{6}", code) for code in codes)
    assert len(codes) > 150   # random, not a constant


def test_new_otp_length_parameter():
    assert re.fullmatch(r"[0-9]{8}", new_otp(8))


def test_new_token_and_uid_shapes():
    assert re.fullmatch(r"[0-9a-f]{64}", new_token())
    assert new_token() != new_token()
    assert re.fullmatch(r"[A-Za-z0-9_-]{12}", new_uid())


def test_basic_auth_header():
    assert basic_auth_header("PCE_ccccccccc", "s3cret") == "Basic UENFX2NjY2NjY2NjYzpzM2NyZXQ="


# --- Vault ------------------------------------------------------------------------------

def test_vault_round_trip():
    vault = Vault("key-one")
    for plain in ["pce-sandbox-public-test-company-secret", "", "émoji ✓"]:
        assert vault.decrypt(vault.encrypt(plain)) == plain


def test_vault_same_key_new_instance_decrypts():
    assert Vault("key-one").decrypt(Vault("key-one").encrypt("secret")) == "secret"


def test_vault_other_key_cannot_decrypt():
    token = Vault("key-one").encrypt("secret")
    assert Vault("key-two").decrypt(token) is None


def test_vault_ciphertext_hides_plaintext():
    plain = "access-token-0123456789abcdef"
    token = Vault("key-one").encrypt(plain)
    assert plain not in token
    assert "0123456789" not in token
    assert token.isascii()
    # Randomised: encrypting twice gives different ciphertexts.
    assert Vault("key-one").encrypt(plain) != token


def test_vault_none_passes_through():
    vault = Vault("key-one")
    assert vault.encrypt(None) is None
    assert vault.decrypt(None) is None


@pytest.mark.parametrize("garbage", ["", "not-a-token", "gAAAAAB" + "A" * 80])
def test_vault_garbage_decrypts_to_none(garbage):
    assert Vault("key-one").decrypt(garbage) is None


def test_vault_tampered_ciphertext_is_none():
    vault = Vault("key-one")
    token = vault.encrypt("secret")
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    assert vault.decrypt(flipped) is None


def test_vault_non_ascii_garbage_decrypts_to_none():
    assert Vault("key-one").decrypt("é-not-a-token") is None


# --- Database -------------------------------------------------------------------------------

def _metadata() -> sa.MetaData:
    metadata = sa.MetaData()
    sa.Table("parent", metadata, sa.Column("id", sa.Integer, primary_key=True), sa.Column("name", sa.String(50)))
    sa.Table("child", metadata, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("parent_id", sa.Integer, sa.ForeignKey("parent.id"), nullable=False))
    return metadata


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path}/nested/dir/test.sqlite3", _metadata())
    yield database
    database.dispose()


def test_database_creates_file_and_tables(db, tmp_path):
    assert (tmp_path / "nested" / "dir" / "test.sqlite3").exists()
    assert set(sa.inspect(db.engine).get_table_names()) == {"parent", "child"}


def test_database_uses_wal_and_pragmas(db):
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_database_session_commits(db):
    parent = db.metadata.tables["parent"]
    with db.session() as s:
        s.execute(parent.insert().values(id=1, name="a"))
    with db.session() as s:
        assert s.execute(sa.select(parent.c.name)).scalars().all() == ["a"]


def test_database_session_rolls_back_on_error(db):
    parent = db.metadata.tables["parent"]
    with pytest.raises(RuntimeError):
        with db.session() as s:
            s.execute(parent.insert().values(id=2, name="b"))
            raise RuntimeError("boom")
    with db.session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(parent)).scalar() == 0


def test_database_enforces_foreign_keys(db):
    child = db.metadata.tables["child"]
    with pytest.raises(sa.exc.IntegrityError):
        with db.session() as s:
            s.execute(child.insert().values(id=1, parent_id=999))


def test_database_reopen_keeps_data(tmp_path):
    url = f"sqlite:///{tmp_path}/again.sqlite3"
    first = Database(url, _metadata())
    with first.session() as s:
        s.execute(first.metadata.tables["parent"].insert().values(id=7, name="kept"))
    first.dispose()
    second = Database(url, _metadata())
    with second.session() as s:
        assert s.execute(sa.select(second.metadata.tables["parent"].c.name)).scalar() == "kept"
    second.dispose()


def test_an_outdated_schema_is_refused_with_a_clear_message(tmp_path):
    import pytest
    from sqlalchemy import Column, Integer, MetaData, String, Table

    from demo.storage import Database, SchemaOutdated

    url = f"sqlite:///{tmp_path}/old.sqlite3"
    old = MetaData()
    Table("things", old, Column("id", Integer, primary_key=True))
    Database(url, old).dispose()
    new = MetaData()
    Table("things", new, Column("id", Integer, primary_key=True), Column("name", String(10)))
    with pytest.raises(SchemaOutdated, match="lacks name"):
        Database(url, new)

"""Secrets at rest and key rotation (demo/storage.py Vault, demo/keys.py, ``gbc-demo rotate-keys``).

Unit tests for the vault and the re-encryption, then over real HTTP: data written under key A
stays usable with key B and A as a fallback, ``rotate-keys`` moves it to B, and the apps work
with B alone; sessions, forms, preset links and receipt links made under A work while A is a
fallback and stop once it is dropped. No table holds a secret in plaintext on either side."""
from __future__ import annotations

import base64
import hashlib
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken
from sandbox_steps import exact_form, sign_in
from test_json_api_view import save_settings

from demo import cli, keys
from demo.config import ConfigError, load_config
from demo.sandbox import portal
from demo.site import presets
from demo.storage import Vault
from demo.web import role_key

from conftest import Visitor, _StopDispatcher, start_servers
from flow import callback_params, connect, full_flow, token_of

KEY_A = "rotation-test-key-a-0123456789abcdef"
KEY_B = "rotation-test-key-b-fedcba9876543210"
KEY_X = "a-key-nobody-configured-000000000000"
CLIENT_ID = "PCE_ccccccccc"
CLIENT_SECRET = "pce-sandbox-public-test-company-secret"
WEBHOOK_SECRET = "site-webhook-secret-for-rotation-0001"


# ---- the vault ------------------------------------------------------------------------------

def test_vault_encrypts_with_the_current_key_and_decrypts_with_any():
    old = Vault(KEY_A).encrypt("client-secret-1")
    vault = Vault(KEY_B, fallbacks=[KEY_A])
    assert vault.decrypt(old) == "client-secret-1"
    new = vault.encrypt("client-secret-2")
    assert Vault(KEY_B).decrypt(new) == "client-secret-2"      # the current key alone opens new values
    assert Vault(KEY_A).decrypt(new) is None
    assert Vault(KEY_B).decrypt(old) is None                   # without the fallback, old values are lost


def test_vault_keeps_the_derivation_existing_databases_use():
    """A value written by the single-key vault of earlier versions (Fernet keyed by
    sha256("gbc-demo-vault\\0" + secret_key)) still opens, and the reverse."""
    legacy = Fernet(base64.urlsafe_b64encode(hashlib.sha256(b"gbc-demo-vault\0" + KEY_A.encode()).digest()))
    assert Vault(KEY_A).decrypt(legacy.encrypt(b"written-before").decode()) == "written-before"
    assert Vault(KEY_B, [KEY_A]).decrypt(legacy.encrypt(b"x").decode()) == "x"
    assert legacy.decrypt(Vault(KEY_A).encrypt("now").encode()) == b"now"


def test_vault_tells_which_key_opens_a_value_and_rotates_it():
    vault = Vault(KEY_B, [KEY_A])
    old, new, lost = Vault(KEY_A).encrypt("v"), vault.encrypt("v"), Vault(KEY_X).encrypt("v")
    assert (vault.state(old), vault.state(new), vault.state(lost)) == ("fallback", "current", "unreadable")
    assert vault.needs_rotation(old) and not vault.needs_rotation(new)
    assert vault.state("not a token") == "unreadable" and vault.state("é") == "unreadable"
    rotated = vault.rotate(old)
    assert rotated != old and Vault(KEY_B).decrypt(rotated) == "v" and vault.state(rotated) == "current"
    with pytest.raises(InvalidToken):
        vault.rotate(lost)
    with pytest.raises(InvalidToken):
        vault.rotate("é")


def test_vault_ignores_empty_and_repeated_fallbacks():
    vault = Vault(KEY_B, ["", KEY_B, KEY_A, KEY_A])
    assert vault.fallback_count == 1
    with pytest.raises(ValueError):
        Vault("")


def test_vault_from_settings_reads_configured_fallbacks_and_the_old_key_file(tmp_path):
    settings = {"instance_path": str(tmp_path), "secret_key": KEY_B, "secret_key_fallbacks": [KEY_A]}
    assert Vault.from_settings(settings).decrypt(Vault(KEY_A).encrypt("a")) == "a"
    assert Vault.from_settings(settings).decrypt(Vault(KEY_X).encrypt("x")) is None
    (tmp_path / "secret_key.old").write_text(KEY_X + "\n")
    assert keys.fallback_secrets(settings) == [KEY_A, KEY_X]
    assert Vault.from_settings(settings).decrypt(Vault(KEY_X).encrypt("x")) == "x"
    # without a configured key, the instance key file encrypts
    bare = {"instance_path": str(tmp_path / "i"), "secret_key": "", "secret_key_fallbacks": []}
    token = Vault.from_settings(bare).encrypt("y")
    assert Vault((tmp_path / "i" / "secret_key").read_text().strip()).decrypt(token) == "y"


def test_signing_keys_put_the_current_key_last():
    assert keys.signing_keys("new", ["old1", "", "new", "old2"]) == ["old1", "old2", "new"]


def test_receipt_keys_verify_under_fallbacks_and_sign_with_the_newest():
    old = portal.receipt_key(KEY_A, "uid-1")
    assert portal.receipt_key_valid([KEY_A, KEY_B], "uid-1", old)
    assert not portal.receipt_key_valid(KEY_B, "uid-1", old)
    new = portal.receipt_key([KEY_A, KEY_B], "uid-1")
    assert new == portal.receipt_key(KEY_B, "uid-1") and not portal.receipt_key_valid(KEY_A, "uid-1", new)
    assert not portal.receipt_key_valid([KEY_A, KEY_B], "uid-2", old)


def test_preset_links_verify_under_fallbacks_and_sign_with_the_newest():
    choices = dict(utility="PCE", client_id=CLIENT_ID, function_blocks=(4, 16, 51), ttl=3600)
    old, _ = presets.make(KEY_A, **choices)
    assert presets.load([KEY_A, KEY_B], old).client_id == CLIENT_ID
    with pytest.raises(presets.PresetInvalid):
        presets.load(KEY_B, old)
    new, _ = presets.make([KEY_A, KEY_B], **choices)
    assert presets.load(KEY_B, new).client_id == CLIENT_ID
    with pytest.raises(presets.PresetInvalid):
        presets.load(KEY_A, new)
    with pytest.raises(ValueError):
        presets.make([], **choices)


# ---- configuration ----------------------------------------------------------------------------

def test_secret_key_fallbacks_from_the_environment_are_a_list(tmp_path):
    settings = load_config({"instance_path": str(tmp_path)},
                           env={"GBC_SECRET_KEY_FALLBACKS": f"{KEY_A}, {KEY_X}"})
    assert settings["secret_key_fallbacks"] == [KEY_A, KEY_X]


@pytest.mark.parametrize("bad", [KEY_A, [KEY_A, ""], [KEY_A, "  "], [123], {"k": KEY_A}])
def test_secret_key_fallbacks_must_be_a_list_of_keys(tmp_path, bad):
    with pytest.raises(ConfigError, match="secret_key_fallbacks") as caught:
        load_config({"instance_path": str(tmp_path), "secret_key_fallbacks": bad}, env={})
    assert KEY_A not in str(caught.value)           # a key is a secret: never in the message


# ---- the registry of encrypted columns -----------------------------------------------------

def test_every_encrypted_column_is_rotated():
    """Every column the models mark as encrypted (…_enc, …_encrypted) is in keys.ENCRYPTED, and
    every entry there exists: a new encrypted column cannot be forgotten by rotate-keys."""
    import demo.site.integrator  # noqa: F401 - its tables join the site's metadata
    from demo.sandbox.models import Base as SandboxBase
    from demo.site.models import Base as SiteBase

    found = set()
    for database, metadata in (("site", SiteBase.metadata), ("sandbox", SandboxBase.metadata)):
        for table in metadata.sorted_tables:
            found |= {(database, table.name, c.name) for c in table.columns
                      if c.name.endswith(("_enc", "_encrypted"))}
    listed = {(t.database, t.table, c) for t in keys.ENCRYPTED for c in t.columns}
    assert found == listed
    assert len(listed) == 7


# ---- re-encryption in batches, crashes, concurrent writes ------------------------------------

def _secrets_db(tmp_path: Path, values: list[str]) -> tuple[dict, keys.EncryptedTable]:
    url = f"sqlite:///{tmp_path / 'site.sqlite3'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE secrets (id INTEGER PRIMARY KEY, value TEXT, other TEXT)"))
        for i, value in enumerate(values, start=1):
            conn.execute(sa.text("INSERT INTO secrets (id, value) VALUES (:i, :v)"), {"i": i, "v": value})
    engine.dispose()
    settings = {"instance_path": str(tmp_path), "secret_key": "", "secret_key_fallbacks": [],
                "database_url": url, "sandbox_database_url": f"sqlite:///{tmp_path / 'nope.sqlite3'}"}
    return settings, keys.EncryptedTable("site", "secrets", "id", ("value", "other"))


def _values(settings: dict) -> dict[int, str]:
    con = sqlite3.connect(settings["database_url"][len("sqlite:///"):])
    try:
        return dict(con.execute("SELECT id, value FROM secrets ORDER BY id"))
    finally:
        con.close()


def test_rotation_counts_and_is_idempotent(tmp_path):
    values = [Vault(KEY_A).encrypt(f"a{i}") for i in range(5)] + [Vault(KEY_B).encrypt("b")] \
        + [Vault(KEY_X).encrypt("x")]
    settings, spec = _secrets_db(tmp_path, values)
    settings.update(secret_key=KEY_B, secret_key_fallbacks=[KEY_A])
    report = keys.rotate(settings, batch=2, tables=[spec])
    value = report.columns[0]
    assert (value.reencrypted, value.current, value.unreadable, value.changed) == (5, 1, 1, 0)
    assert value.unreadable_ids == ["7"] and report.columns[1].current == 0          # NULLs are skipped
    stored = _values(settings)
    assert stored[7] == values[6]                                    # unreadable: kept exactly as it was
    assert [Vault(KEY_B).decrypt(stored[i]) for i in range(1, 7)] == [f"a{i}" for i in range(5)] + ["b"]
    again = keys.rotate(settings, batch=2, tables=[spec]).columns[0]
    assert (again.reencrypted, again.current, again.unreadable) == (0, 6, 1)
    assert "1 unreadable" in "\n".join(report.lines()) and "5 re-encrypted" in "\n".join(report.lines())


def test_dry_run_changes_nothing(tmp_path):
    settings, spec = _secrets_db(tmp_path, [Vault(KEY_A).encrypt("a")])
    settings.update(secret_key=KEY_B, secret_key_fallbacks=[KEY_A])
    before = _values(settings)
    report = keys.rotate(settings, dry_run=True, tables=[spec])
    assert report.columns[0].reencrypted == 1 and _values(settings) == before
    assert "1 to re-encrypt" in "\n".join(report.lines())


def test_a_crash_halfway_loses_nothing_and_a_rerun_finishes(tmp_path, monkeypatch):
    settings, spec = _secrets_db(tmp_path, [Vault(KEY_A).encrypt(f"v{i}") for i in range(7)])
    settings.update(secret_key=KEY_B, secret_key_fallbacks=[KEY_A])
    real, calls = Vault.rotate, []

    def dies_on_the_fifth(self, value):
        calls.append(value)
        if len(calls) == 5:
            raise KeyboardInterrupt("power cut")
        return real(self, value)

    monkeypatch.setattr(Vault, "rotate", dies_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        keys.rotate(settings, batch=2, tables=[spec])
    monkeypatch.setattr(Vault, "rotate", real)
    stored = _values(settings)
    both = Vault(KEY_B, [KEY_A])
    assert [both.decrypt(v) for v in stored.values()] == [f"v{i}" for i in range(7)]
    assert sum(Vault(KEY_B).decrypt(v) is not None for v in stored.values()) == 4   # two whole batches
    report = keys.rotate(settings, batch=2, tables=[spec]).columns[0]
    assert (report.reencrypted, report.current) == (3, 4)
    assert all(Vault(KEY_B).decrypt(v) for v in _values(settings).values())


def test_a_value_a_server_rewrites_meanwhile_is_not_overwritten(tmp_path, monkeypatch):
    settings, spec = _secrets_db(tmp_path, [Vault(KEY_A).encrypt("old-token")])
    settings.update(secret_key=KEY_B, secret_key_fallbacks=[KEY_A])
    fresh = Vault(KEY_B).encrypt("refreshed-token")
    real = Vault.rotate

    def server_writes_first(self, value):
        con = sqlite3.connect(settings["database_url"][len("sqlite:///"):])
        with con:
            con.execute("UPDATE secrets SET value = ? WHERE id = 1", (fresh,))
        con.close()
        return real(self, value)

    monkeypatch.setattr(Vault, "rotate", server_writes_first)
    report = keys.rotate(settings, tables=[spec]).columns[0]
    assert (report.reencrypted, report.changed) == (0, 1)
    assert _values(settings)[1] == fresh


# ---- --new-key and --drop-old: a crash at any step loses nothing -----------------------------

def test_new_key_procedure_survives_a_crash_at_every_step(tmp_path, monkeypatch):
    settings, spec = _secrets_db(tmp_path, [])
    old_key = keys.current_secret(settings)
    engine = sa.create_engine(settings["database_url"])
    with engine.begin() as conn:
        for i in range(5):
            conn.execute(sa.text("INSERT INTO secrets (id, value) VALUES (:i, :v)"),
                         {"i": i + 1, "v": Vault(old_key).encrypt(f"s{i}")})
    engine.dispose()
    expected = [f"s{i}" for i in range(5)]

    def readable() -> list[str | None]:
        vault = Vault.from_settings(settings)          # what a server starting now would use
        return [vault.decrypt(v) for v in _values(settings).values()]

    # crash after the old key was copied aside, before the new key took its place
    real_write, writes = keys._write_key, []

    def second_write_fails(path, value):
        writes.append(path)
        if len(writes) == 2:
            raise OSError("disk gone")
        real_write(path, value)

    monkeypatch.setattr(keys, "_write_key", second_write_fails)
    with pytest.raises(OSError):
        keys.new_instance_key(settings)
    monkeypatch.setattr(keys, "_write_key", real_write)
    assert keys.current_secret(settings) == old_key and keys.fallback_file(settings).read_text() == old_key
    assert readable() == expected
    assert not list(tmp_path.glob(".*.tmp"))

    # run again: the new key is written
    new_key = keys.new_instance_key(settings)
    assert new_key != old_key and keys.current_secret(settings) == new_key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "secret_key.old").stat().st_mode & 0o777 == 0o600
    assert readable() == expected

    # crash during the re-encryption
    real_rotate = Vault.rotate
    calls = []

    def dies_on_the_third(self, value):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_rotate(self, value)

    monkeypatch.setattr(Vault, "rotate", dies_on_the_third)
    with pytest.raises(KeyboardInterrupt):
        keys.rotate(settings, batch=2, tables=[spec])
    monkeypatch.setattr(Vault, "rotate", real_rotate)
    assert readable() == expected

    # another --new-key now is refused (the old file holds a key still needed); nothing changes
    with pytest.raises(keys.RotationError, match="not finished"):
        keys.new_instance_key(settings)
    assert keys.current_secret(settings) == new_key and keys.fallback_file(settings).read_text() == old_key

    # a plain rerun finishes; --drop-old removes the old key
    report, dropped = keys.drop_fallback_file(settings, tables=[spec])
    assert dropped and report.columns[0].reencrypted == 3 and report.columns[0].current == 2
    assert not keys.fallback_file(settings).exists() and keys.fallback_secrets(settings) == []
    assert readable() == expected
    assert [Vault(old_key).decrypt(v) for v in _values(settings).values()] == [None] * 5
    # and a next rotation may start
    assert keys.new_instance_key(settings) not in (old_key, new_key)


def test_drop_old_keeps_the_file_when_an_old_server_wrote_under_it(tmp_path, monkeypatch):
    settings, spec = _secrets_db(tmp_path, [])
    old_key = keys.current_secret(settings)
    keys.new_instance_key(settings)
    real = keys.rotate

    def old_server_writes_after_the_pass(*args, **kwargs):
        report = real(*args, **kwargs)
        if not kwargs.get("dry_run"):
            con = sqlite3.connect(settings["database_url"][len("sqlite:///"):])
            with con:
                con.execute("INSERT INTO secrets (value) VALUES (?)", (Vault(old_key).encrypt("late"),))
            con.close()
        return report

    monkeypatch.setattr(keys, "rotate", old_server_writes_after_the_pass)
    with pytest.raises(keys.RotationError, match="Restart every server"):
        keys.drop_fallback_file(settings, tables=[spec])
    assert keys.fallback_file(settings).read_text() == old_key
    assert Vault.from_settings(settings).decrypt(_values(settings)[1]) == "late"


def test_new_key_refuses_a_configured_secret_key(tmp_path, monkeypatch, capsys):
    _env(monkeypatch, tmp_path, secret_key=KEY_A)
    assert cli.main(["rotate-keys", "--new-key"]) == 2
    err = capsys.readouterr().err
    assert "secret_key is configured" in err and KEY_A not in err
    assert not (tmp_path / "secret_key").exists()


def test_cli_new_key_then_drop_old_on_the_real_tables(tmp_path, monkeypatch, capsys):
    from demo.site.models import Base as SiteBase
    from demo.site.models import VisitorSettings
    from demo.storage import Database

    _env(monkeypatch, tmp_path)
    settings = load_config({}, env={"GBC_INSTANCE_PATH": str(tmp_path)})
    db = Database(settings["database_url"], SiteBase.metadata)
    with db.session() as s:
        s.add(VisitorSettings(visitor_id="v" * 32, values={},
                              client_secret_enc=Vault.from_settings(settings).encrypt("visitor-secret")))
    db.dispose()
    first = (tmp_path / "secret_key").read_text()

    assert cli.main(["rotate-keys", "--new-key"]) == 0
    out = capsys.readouterr().out
    assert "site visitor_settings.client_secret_enc: 1 re-encrypted, 0 already current, 0 unreadable" in out
    assert "sandbox: no database yet" in out and first not in out
    assert (tmp_path / "secret_key.old").read_text() == first != (tmp_path / "secret_key").read_text()

    assert cli.main(["rotate-keys", "--drop-old"]) == 0
    out = capsys.readouterr().out
    assert "1 already current" in out and "Removed" in out and not (tmp_path / "secret_key.old").exists()
    with Database(settings["database_url"], SiteBase.metadata).session() as s:
        stored = s.get(VisitorSettings, "v" * 32).client_secret_enc
    assert Vault((tmp_path / "secret_key").read_text()).decrypt(stored) == "visitor-secret"


# ---- over HTTP: data written under A, rotated to B ----------------------------------------

def _env(monkeypatch, tmp: Path, secret_key: str = "", fallbacks: list[str] = ()) -> None:
    """The environment ``gbc-demo`` reads, pointing at this test's instance folder."""
    import os

    for name in list(os.environ):
        if name.startswith("GBC_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GBC_INSTANCE_PATH", str(tmp))
    monkeypatch.setenv("GBC_SECRET_KEY", secret_key)
    monkeypatch.setenv("GBC_SECRET_KEY_FALLBACKS", ",".join(fallbacks))


def _restart(live, servers, **overrides):
    """A restart with new configuration: new apps behind the same listening sockets (same ports,
    so the run's stored URLs stay right; no port is given up for another process to take)."""
    from demo.sandbox import create_app as create_sandbox
    from demo.site import create_app as create_site

    for srv in servers[2:]:
        srv.shutdown()                               # the old sandbox's webhook thread
    live.site_app.extensions["gbc_site"].db.dispose()
    live.sandbox_app.extensions["gbc_sandbox"].db.dispose()
    settings = load_config({"instance_path": live.settings["instance_path"], "site_port": live.settings["site_port"],
                            "sandbox_port": live.settings["sandbox_port"], "sandbox_ready_delay": 0,
                            "sandbox_webhook_poll": 0.2, **overrides}, env={})
    site_app, sandbox_app = create_site(settings), create_sandbox(settings)
    servers[0].app.app, servers[1].app.app = site_app, sandbox_app
    from conftest import LiveServers

    live = LiveServers(settings, settings["site_url"], settings["sandbox_url"], site_app, sandbox_app)
    return live, servers[:2] + [_StopDispatcher(sandbox_app)]


def _stop(servers) -> None:
    for srv in servers:
        srv.shutdown()


def _dump(path: Path) -> str:
    """Every row of a SQLite database (WAL included) as SQL text."""
    con = sqlite3.connect(path)
    try:
        return "\n".join(con.iterdump())
    finally:
        con.close()


def _encrypted_values(tmp: Path) -> list[str]:
    out = []
    for spec in keys.ENCRYPTED:
        con = sqlite3.connect(tmp / f"{spec.database}.sqlite3")
        try:
            for column in spec.columns:
                out += [v for (v,) in con.execute(f"SELECT {column} FROM {spec.table}")  # noqa: S608 - fixed names
                        if v is not None]
        finally:
            con.close()
    return out


def _tool(visitor, run_url, name):
    page = visitor.get(run_url).form(f"/tools/{name}").submit(visitor)
    assert page.status == 200, page.body_text[:300]
    return page


def test_rotation_end_to_end(tmp_path, monkeypatch, capsys):
    # ---- key A: a visitor's settings, a run, the sandbox's API token and webhook endpoint
    live, servers = start_servers(tmp_path, secret_key=KEY_A, client_secret="")
    try:
        dash = Visitor()
        page = sign_in(dash, live, CLIENT_ID, CLIENT_SECRET)
        page = dash.get(live.sandbox_url + "/dashboard/settings/api")
        api_token = page.form("/dashboard/settings/api").set("name", "rotation").submit(dash).text_of("new-api-token")
        page = dash.get(live.sandbox_url + "/dashboard/settings/webhooks")
        page = exact_form(page, "/dashboard/settings/webhooks").set("url", "http://127.0.0.1:9/hook").submit(dash)
        endpoint_secret = page.text_of("new-webhook-secret")
        assert api_token and endpoint_secret

        visitor = Visitor()
        save_settings(visitor, live, client_secret=CLIENT_SECRET, api_token=api_token, webhook_secret=WEBHOOK_SECRET)
        page = full_flow(visitor, live, "residential", "phone")
        assert page.status == 200 and "/runs/" in page.url, page.body_text[:500]
        run_url = page.url.split("#")[0]
        code = callback_params(visitor)["code"]
        token = token_of(live, page)
        # a second run left pending at the custodian keeps its PKCE verifier (spent ones are wiped)
        assert connect(visitor, live, "phone", "111-111-1111").url.endswith("/authorize/verify")
        site = live.site_app.extensions["gbc_site"]
        with site.db.session() as s:
            from demo.site.models import Run

            assert s.get(Run, run_url.rsplit("/", 1)[1]).code_verifier_enc is None
            verifier = site.vault.decrypt(s.query(Run).filter_by(status="pending").one().code_verifier_enc)
        assert verifier and token["access_token"] and token["refresh_token"]
    except BaseException:
        _stop(servers)
        raise

    # no table of either app holds a secret in plaintext (the sandbox: only hashes or ciphertext)
    site_rows, sandbox_rows = _dump(tmp_path / "site.sqlite3"), _dump(tmp_path / "sandbox.sqlite3")
    secrets = {"client secret": CLIENT_SECRET, "access token": token["access_token"],
               "refresh token": token["refresh_token"], "code": code, "PKCE verifier": verifier,
               "API token": api_token, "site webhook secret": WEBHOOK_SECRET, "endpoint secret": endpoint_secret}
    for name, value in secrets.items():
        assert value not in site_rows, f"site database holds the {name}"
        assert value not in sandbox_rows, f"sandbox database holds the {name}"
    values = _encrypted_values(tmp_path)
    assert len(values) >= 7 and all(Vault(KEY_A).decrypt(v) for v in values)

    # ---- key B with A as a fallback: everything written under A still works
    live, servers = _restart(live, servers, secret_key=KEY_B, secret_key_fallbacks=[KEY_A], client_secret="")
    try:
        assert run_url.rsplit("/", 1)[1] in visitor.get(live.site_url + "/runs").text   # the A session
        page = _tool(visitor, run_url, "refresh")               # A-encrypted token and client secret
        assert page.text_of("tool-refresh-rotated").startswith("yes")
        page = full_flow(visitor, live, "commercial", "email")  # the visitor's A-encrypted client secret
        assert page.status == 200 and "/runs/" in page.url, page.body_text[:500]
        assert live.sandbox_app.extensions["gbc_webhooks"].vault.decrypt(
            _one(tmp_path / "sandbox.sqlite3", "SELECT secret_encrypted FROM webhook_endpoints")) == endpoint_secret

        # rotate-keys while the servers run
        _env(monkeypatch, tmp_path, KEY_B, [KEY_A])
        assert cli.main(["rotate-keys", "--batch", "1"]) == 0
        out = capsys.readouterr().out
        assert "sandbox webhook_endpoints.secret_encrypted: 1 re-encrypted" in out
        assert "site integrator_settings.api_token_enc: 1 re-encrypted" in out
        assert "0 unreadable with any key" in out and "secret_key_fallbacks may be emptied" in out
        for secret in (KEY_A, KEY_B, CLIENT_SECRET, api_token):
            assert secret not in out
        assert all(Vault(KEY_B).decrypt(v) for v in _encrypted_values(tmp_path))       # B alone opens all
        assert cli.main(["rotate-keys"]) == 0
        assert "total: 0 re-encrypted" in capsys.readouterr().out                      # idempotent
    except BaseException:
        _stop(servers)
        raise

    # ---- A dropped: the apps work with B alone
    live, servers = _restart(live, servers, secret_key=KEY_B, client_secret="")
    try:
        fresh = Visitor()
        fresh.http.cookies.update(visitor.http.cookies)      # cookies re-signed under B in the last phase
        page = _tool(fresh, run_url, "refresh")
        assert page.text_of("tool-refresh-rotated").startswith("yes")
        page = _tool(fresh, run_url, "fetch")
        assert "Read 1 meter" in page.text_of("tool-fetch-result")
        assert full_flow(fresh, live, "residential", "account").status == 200
        with live.site_app.extensions["gbc_site"].db.session() as s:
            from demo.site.integrator import IntegratorSettings

            row = s.query(IntegratorSettings).one()
            vault = live.site_app.extensions["gbc_site"].vault
            assert (vault.decrypt(row.api_token_enc), vault.decrypt(row.webhook_secret_enc)) == \
                (api_token, WEBHOOK_SECRET)
        assert live.sandbox_app.extensions["gbc_webhooks"].vault.decrypt(
            _one(tmp_path / "sandbox.sqlite3", "SELECT secret_encrypted FROM webhook_endpoints")) == endpoint_secret
    finally:
        _stop(servers)

    # ---- a value under a key nobody configured: reported, never deleted
    lost = Vault(KEY_X).encrypt("lost-secret")
    con = sqlite3.connect(tmp_path / "site.sqlite3")
    with con:
        con.execute("INSERT INTO visitor_settings (visitor_id, \"values\", client_secret_enc, updated) "
                    "VALUES (?, '{}', ?, CURRENT_TIMESTAMP)", ("x" * 32, lost))
    con.close()
    _env(monkeypatch, tmp_path, KEY_B)
    assert cli.main(["rotate-keys"]) == 1
    captured = capsys.readouterr()
    assert "site visitor_settings.client_secret_enc: 0 re-encrypted, 1 already current, 1 unreadable (rows ••••xxxx)" \
        in captured.out
    assert "1 value(s) open with no configured key" in captured.err
    assert _one(tmp_path / "site.sqlite3", f"SELECT client_secret_enc FROM visitor_settings "
                f"WHERE visitor_id = '{'x' * 32}'") == lost


def _one(path: Path, query: str):
    con = sqlite3.connect(path)
    try:
        return con.execute(query).fetchone()[0]
    finally:
        con.close()


# ---- over HTTP: sessions, forms, preset links and receipt links made under A --------------

@pytest.fixture(scope="module")
def made_under_a(tmp_path_factory):
    """Phase A: a visitor with a run (site session), a signed-in dashboard (sandbox session),
    an open settings form, a preset link and a receipt link, all made under key A."""
    tmp = tmp_path_factory.mktemp("signed")
    live, servers = start_servers(tmp, secret_key=KEY_A)
    try:
        visitor = Visitor()
        page = full_flow(visitor, live, "residential", "email")
        run_id = page.url.split("#")[0].rsplit("/", 1)[1]
        uid = visitor.get(live.site_url + f"/runs/{run_id}.json").response.json()["authorization"]["uid"]
        site_cookie = visitor.http.cookies.get("gbc_site_session")
        dash = Visitor()
        assert sign_in(dash, live, CLIENT_ID, CLIENT_SECRET).url.endswith("/dashboard/authorizations")
        form = visitor.get(live.site_url + "/settings").form("/settings")
        preset, _ = presets.make(role_key(KEY_A, "site"), ttl=3600, utility="PCE", client_id=CLIENT_ID)
        receipt = portal.receipt_key(role_key(KEY_A, "sandbox"), uid)
        dash_cookie = dash.http.cookies.get("gbc_sandbox_session")
    finally:
        _stop(servers)
    return {"tmp": tmp, "run_id": run_id, "uid": uid, "site_cookie": site_cookie, "form": form.fields,
            "dash_cookie": dash_cookie, "preset": preset, "receipt": receipt}


def _with_cookie(name: str, value: str) -> Visitor:
    visitor = Visitor()
    visitor.http.cookies.set(name, value, domain="127.0.0.1", path="/")
    return visitor


@pytest.fixture(params=["fallback", "dropped"])
def phase(request, made_under_a):
    """Servers with key B, and A either still a fallback or dropped."""
    fallbacks = [KEY_A] if request.param == "fallback" else []
    live, servers = start_servers(made_under_a["tmp"], secret_key=KEY_B, secret_key_fallbacks=fallbacks)
    yield request.param == "fallback", live, made_under_a
    _stop(servers)


def test_sessions_made_under_an_old_key(phase):
    accepted, live, a = phase
    site = _with_cookie("gbc_site_session", a["site_cookie"])
    assert (a["run_id"] in site.get(live.site_url + "/runs").text) is accepted
    dash = _with_cookie("gbc_sandbox_session", a["dash_cookie"])
    page = dash.get(live.sandbox_url + "/dashboard/authorizations")
    assert page.url.endswith("/dashboard/authorizations") is accepted, page.url


def test_receipt_links_made_under_an_old_key(phase):
    accepted, live, a = phase
    page = Visitor().get(live.sandbox_url + f"/authorizations/{a['uid']}/receipt", params={"key": a["receipt"]})
    assert page.status == (200 if accepted else 404)


def test_preset_links_made_under_an_old_key(phase):
    accepted, live, a = phase
    resp = Visitor().http.get(live.site_url + f"/p/{a['preset']}", allow_redirects=False, timeout=10)
    assert resp.status_code == (303 if accepted else 400), resp.text[:300]


def test_forms_opened_under_an_old_key(phase):
    """A form rendered before the key changed still submits while the old key is a fallback
    (its CSRF token was signed with it); once the key is dropped, the visitor must reload."""
    accepted, live, a = phase
    visitor = _with_cookie("gbc_site_session", a["site_cookie"])
    page = visitor.request("POST", live.site_url + "/settings", data=a["form"])
    if accepted:
        assert page.status == 200 and "Settings saved" in page.body_text, page.body_text[:300]
    else:
        assert page.status == 400 and "Settings saved" not in page.body_text

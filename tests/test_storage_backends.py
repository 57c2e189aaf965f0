"""Storage on SQLite and PostgreSQL (GBC_TEST_POSTGRES_URL) and rate limits on Redis (GBC_TEST_REDIS_URL):
the Alembic migrations (demo/migrations) agree with the models, run once when several workers start
at once, stamp tables made before migrations and refuse outdated ones; two app instances sharing one
Redis share one allowance."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sandbox_steps import sign_in

from demo import migrations
from demo.storage import Database, SchemaOutdated, make_engine

from conftest import Visitor, fresh_postgres, fresh_redis, start_servers

ROOT = Path(__file__).resolve().parents[1]
CLIENT = {"client_id": "PCE_storage01", "client_secret": "storage-secret-000001", "company_name": "Storage Co",
          "redirect_uris": ["{site_url}/callback"]}


@pytest.fixture(params=["sqlite", "postgres"])
def new_url(request, tmp_path):
    """Makes URLs of new, empty databases on the backend under test."""
    made = []

    def make() -> str:
        made.append(None)
        if request.param == "sqlite":
            return f"sqlite:///{tmp_path / f'db{len(made)}.sqlite3'}"
        return fresh_postgres("st")
    return make


def metadata(name):
    return migrations.target_metadata(name)


def version(engine, name) -> str | None:
    with engine.connect() as conn:
        if migrations.version_table(name) not in sa.inspect(conn).get_table_names():
            return None
        return conn.execute(sa.text(f"SELECT version_num FROM {migrations.version_table(name)}")).scalar()


def head(name) -> str:
    return migrations.scripts(name).get_current_head()


@pytest.mark.parametrize("name", migrations.NAMES)
def test_the_migrations_build_exactly_the_models(new_url, name):
    # a model changed without a migration makes this fail: python -m demo.migrations revision <name> -m "..."
    engine = make_engine(new_url())
    try:
        assert migrations.upgrade(engine, name) == "created"
        assert migrations.differences(engine, name) == []
        # the comparison does see a difference: a column the models have and the database lacks
        with engine.begin() as conn:
            conn.execute(sa.text(f"ALTER TABLE {next(iter(metadata(name).tables))} ADD COLUMN stray INTEGER"))
        assert [d[0] for d in migrations.differences(engine, name)] == ["remove_column"]
    finally:
        engine.dispose()


def test_the_check_command_agrees():
    proc = subprocess.run([sys.executable, "-m", "demo.migrations", "check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "site: models and migrations agree" in proc.stdout
    assert "sandbox: models and migrations agree" in proc.stdout


@pytest.mark.parametrize("name", migrations.NAMES)
def test_a_new_database_is_migrated_to_head_once(new_url, name):
    url = new_url()
    first = Database(url, metadata(name))
    assert first.migration == "created"
    assert version(first.engine, name) == head(name)
    assert set(metadata(name).tables) <= set(sa.inspect(first.engine).get_table_names())
    second = Database(url, metadata(name))
    assert second.migration == "current"
    first.dispose()
    second.dispose()


def test_both_apps_can_share_one_database(new_url):
    url = new_url()
    site, sandbox = Database(url, metadata("site")), Database(url, metadata("sandbox"))
    assert (site.migration, sandbox.migration) == ("created", "created")
    assert version(site.engine, "site") == head("site")
    assert version(site.engine, "sandbox") == head("sandbox")
    assert migrations.differences(site.engine, "site") == []
    assert migrations.differences(site.engine, "sandbox") == []
    site.dispose()
    sandbox.dispose()


def _made_before_migrations(url: str, name: str, change: str | None = None) -> None:
    """Tables as create_all made them before migrations existed (optionally changed by ``change``)."""
    engine = make_engine(url)
    try:
        metadata(name).create_all(engine)
        with engine.begin() as conn:
            conn.execute(sa.text("INSERT INTO visitor_settings (visitor_id, \"values\", updated) "
                                 "VALUES ('v-kept', '{}', CURRENT_TIMESTAMP)"))
            if change:
                conn.execute(sa.text(change))
    finally:
        engine.dispose()


def test_tables_made_before_migrations_are_stamped_and_kept(new_url):
    url = new_url()
    _made_before_migrations(url, "site")
    db = Database(url, metadata("site"))
    assert db.migration == "stamped"
    assert version(db.engine, "site") == head("site")
    with db.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT visitor_id FROM visitor_settings")).scalars().all() == ["v-kept"]
    assert migrations.differences(db.engine, "site") == []
    assert Database(url, metadata("site")).migration == "current"
    db.dispose()


@pytest.mark.parametrize(("change", "message"), [
    ("ALTER TABLE runs DROP COLUMN iss_check", "table 'runs' lacks iss_check"),
    ("DROP TABLE integrator_data", "it has no table 'integrator_data'"),
])
def test_outdated_tables_made_before_migrations_are_refused_and_left_alone(new_url, change, message):
    url = new_url()
    _made_before_migrations(url, "site", change)
    with pytest.raises(SchemaOutdated, match=message) as caught:
        Database(url, metadata("site"))
    assert "created by an older version of GBC Demo" in str(caught.value)
    assert "Move the database file aside" in str(caught.value)
    engine = make_engine(url)
    try:
        assert version(engine, "site") is None                         # not stamped
        with engine.connect() as conn:                                  # nothing lost
            assert conn.execute(sa.text("SELECT count(*) FROM visitor_settings")).scalar() == 1
    finally:
        engine.dispose()


WORKER = """
import json, sys, time
from demo import migrations
from demo.storage import Database
url, name, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
metadata = migrations.target_metadata(name)
time.sleep(max(0.0, start - time.time()))
print(json.dumps(Database(url, metadata).migration))
"""


@pytest.mark.parametrize("name", migrations.NAMES)
def test_workers_starting_at_once_migrate_once(new_url, name):
    url = new_url()
    start = time.time() + 3   # every worker imported and waiting by then
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, name, str(start)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(6)]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(results) == ["created"] + ["current"] * 5
    engine = make_engine(url)
    try:
        assert version(engine, name) == head(name)
        assert migrations.differences(engine, name) == []
    finally:
        engine.dispose()


def _servers(tmp: Path, storage: str):
    return start_servers(tmp, sandbox_clients=[CLIENT], sandbox_webhooks=False, ratelimit_storage_url=storage,
                         ratelimit_signin="2 per minute")


@pytest.mark.parametrize("storage", ["redis", "memory"])
def test_two_instances_sharing_redis_share_one_allowance(tmp_path, storage):
    url = fresh_redis() if storage == "redis" else "memory://"
    (a, a_servers), (b, b_servers) = _servers(tmp_path / "a", url), _servers(tmp_path / "b", url)
    try:
        wrong = [sign_in(Visitor(), live, CLIENT["client_id"], "wrong-secret").status for live in (a, b)]
        assert wrong == [401, 401]
        third = sign_in(Visitor(), a, CLIENT["client_id"], "wrong-secret").status
        # one allowance of 2 across both instances with Redis; each instance counts alone in memory
        assert third == (429 if storage == "redis" else 401)
        fourth = sign_in(Visitor(), b, CLIENT["client_id"], "wrong-secret").status
        assert fourth == third
    finally:
        for srv in a_servers + b_servers:
            srv.shutdown()


def test_the_package_ships_the_migrations():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(project["packages"])
    for init in (ROOT / "demo").rglob("__init__.py"):
        package = ".".join(init.parent.relative_to(ROOT).parts)
        assert package in packages, f"{package} is missing from [tool.setuptools] packages"
    for mako in (ROOT / "demo").rglob("*.mako"):
        package = ".".join(mako.parent.relative_to(ROOT).parts)
        assert mako.name in project["package-data"].get(package, []), f"{mako} is missing from package-data"
    for name in migrations.NAMES:
        assert (ROOT / "demo" / "migrations" / name / "env.py").exists()
        assert len(list((ROOT / "demo" / "migrations" / name / "versions").glob("*.py"))) >= 2

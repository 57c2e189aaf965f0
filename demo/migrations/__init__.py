"""Alembic migrations of both databases, run at start-up (no Flask).

One folder per database: ``site/`` (the demo site: :mod:`demo.site.models` and the tables
:mod:`demo.site.integrator` adds) and ``sandbox/`` (:mod:`demo.sandbox.models`). Each keeps its
version in its own table (``alembic_version_site``, ``alembic_version_sandbox``), so both apps can
share one PostgreSQL database as well as use two.

:func:`upgrade` brings a database to the newest revision. Several workers may start at once: each
takes a lock first (PostgreSQL: ``pg_advisory_xact_lock``; SQLite: ``BEGIN IMMEDIATE``, the
database's write lock), then looks at the version, so the first one migrates and the others find
the database at head. A database made before migrations existed (tables, no version table) is
stamped with the first revision when its columns match it, and refused when they don't.

Making a revision after a model change (see ``python -m demo.migrations --help``)::

    .venv/bin/python -m demo.migrations revision site -m "add runs.note"
"""
from __future__ import annotations

import sys
import zlib
from functools import cache
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine

HERE = Path(__file__).resolve().parent
NAMES = ("site", "sandbox")
#: which module's ``Base.metadata`` each database holds
MODELS = {"site": "demo.site.models", "sandbox": "demo.sandbox.models"}
#: how long a starting worker waits for another one's migration on SQLite
SQLITE_LOCK_WAIT_MS = 60_000


def version_table(name: str) -> str:
    return f"alembic_version_{name}"


def target_metadata(name: str):
    """The models' metadata of database ``name`` (every module adding tables imported)."""
    if name == "site":
        from demo.site import integrator, models  # noqa: F401 - integrator's tables join models.Base
        return models.Base.metadata
    if name == "sandbox":
        from demo.sandbox import models
        return models.Base.metadata
    raise ValueError(f"no migrations for {name!r} (one of {', '.join(NAMES)})")


def name_of(metadata) -> str | None:
    """"site" or "sandbox" when ``metadata`` is one of the apps' metadata; None for any other
    (throwaway tables in tests)."""
    for name, module in MODELS.items():
        loaded = sys.modules.get(module)   # metadata of a module never imported can't be this one
        if loaded is not None and loaded.Base.metadata is metadata:
            return name
    return None


def config(name: str, connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic configuration for database ``name``, without an ini file."""
    if name not in NAMES:
        raise ValueError(f"no migrations for {name!r} (one of {', '.join(NAMES)})")
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE / name))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["gbc_name"] = name
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def not_the_other_apps(name: str):
    """An ``include_name`` hook: leave the other app's tables and version table alone (both apps may
    share one database), so comparing ``name`` never proposes to drop them."""
    others = set()
    for other in NAMES:
        if other != name:
            others |= {version_table(other), *target_metadata(other).tables}

    def include_name(object_name, type_, _parent_names) -> bool:
        return not (type_ == "table" and object_name in others)
    return include_name


def scripts(name: str) -> ScriptDirectory:
    return ScriptDirectory.from_config(config(name))


def run_env(name: str) -> None:
    """The body of each folder's ``env.py``: run the migrations on the connection
    :func:`upgrade` passes in, or on ``sqlalchemy.url`` (the ``alembic`` command line)."""
    cfg = context.config
    if context.is_offline_mode():
        raise SystemExit("GBC Demo's migrations run online only (no --sql)")
    options = {
        "target_metadata": target_metadata(name),
        "version_table": version_table(name),
        "render_as_batch": True,    # SQLite can't ALTER most things: autogenerate copy-and-move batches
        "compare_type": True,
        "include_name": not_the_other_apps(name),
    }
    connection = cfg.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **options)
        with context.begin_transaction():
            context.run_migrations()
        return
    from demo.storage import make_engine

    engine = make_engine(cfg.get_main_option("sqlalchemy.url"))
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, **options)
            with context.begin_transaction():
                context.run_migrations()
            connection.commit()
    finally:
        engine.dispose()


def _lock(connection: Connection, name: str) -> None:
    """Hold the database's migration lock until this connection's transaction ends."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        key = zlib.crc32(f"gbc-demo migrations {name}".encode())   # a stable 32-bit number per database
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
    elif dialect == "sqlite":
        connection.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_LOCK_WAIT_MS}")
        connection.exec_driver_sql("BEGIN IMMEDIATE")   # the write lock: other starters wait here


def _unlock(connection: Connection) -> None:
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA busy_timeout=5000")   # back to make_engine's value


@cache
def initial_columns(name: str) -> dict[str, frozenset[str]]:
    """Each table's column names right after the first revision (built once in a scratch SQLite)."""
    base = scripts(name).get_base()
    engine = create_engine("sqlite://")
    try:
        with engine.connect() as connection:
            command.upgrade(config(name, connection), base)
            inspector = inspect(connection)
            return {table: frozenset(c["name"] for c in inspector.get_columns(table))
                    for table in inspector.get_table_names() if table != version_table(name)}
    finally:
        engine.dispose()


def outdated(connection: Connection, name: str) -> list[str]:
    """What a database made before migrations lacks compared with the first revision ([] if nothing)."""
    inspector = inspect(connection)
    present = set(inspector.get_table_names())
    problems = []
    for table, columns in sorted(initial_columns(name).items()):
        if table not in present:
            problems.append(f"it has no table {table!r}")
            continue
        have = {c["name"] for c in inspector.get_columns(table)}
        missing = sorted(columns - have)
        if missing:
            problems.append(f"table {table!r} lacks {', '.join(missing)}")
    return problems


def upgrade(engine: Engine, name: str) -> str:
    """Bring the database to head under the migration lock. Returns what was done: "current"
    (already at head), "created" (an empty database), "stamped" (tables made before migrations,
    then upgraded) or "upgraded". Raises :class:`demo.storage.SchemaOutdated` for tables made
    before migrations that don't match the first revision; nothing is changed then."""
    from demo.storage import SchemaOutdated

    script = scripts(name)
    head = script.get_current_head()
    with engine.connect() as connection:
        try:
            _lock(connection, name)
            current = MigrationContext.configure(
                connection, opts={"version_table": version_table(name)}).get_current_revision()
            if current == head:
                connection.rollback()
                return "current"
            done = "upgraded"
            if current is None:
                ours = set(initial_columns(name))
                if ours & set(inspect(connection).get_table_names()):
                    problems = outdated(connection, name)
                    if problems:
                        url = engine.url.render_as_string(hide_password=True)
                        raise SchemaOutdated(
                            f"The database {url} was created by an older version of GBC Demo: "
                            f"{'; '.join(problems)}. Move the database file aside (or drop its tables) and start "
                            "again; it is re-created empty.")
                    command.stamp(config(name, connection), script.get_base())
                    done = "stamped"
                else:
                    done = "created"
            command.upgrade(config(name, connection), "head")
            connection.commit()
            return done
        except BaseException:
            connection.rollback()
            raise
        finally:
            _unlock(connection)


def differences(engine: Engine, name: str) -> list:
    """Alembic's autogenerate comparison of the database (at head) with the models: [] when they agree."""
    from alembic.autogenerate import compare_metadata

    with engine.connect() as connection:
        mc = MigrationContext.configure(connection, opts={
            "version_table": version_table(name), "compare_type": True,
            "target_metadata": target_metadata(name), "include_name": not_the_other_apps(name)})
        return compare_metadata(mc, target_metadata(name))

"""Make and check migrations (for developers; the apps migrate by themselves at start-up).

    python -m demo.migrations check                      # models and migrations agree? (exit 1 if not)
    python -m demo.migrations revision site -m "why"     # a new revision from the models' changes
    python -m demo.migrations initial site               # rewrite the first revision from the models

``revision`` compares the models with a scratch SQLite database upgraded to head, so it needs
no running database. ``initial`` is only for before the first release of a schema: it replaces
the only revision there is (it refuses when there are more).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from alembic import command

from . import HERE, NAMES, config, differences, scripts, upgrade

INITIAL_IDS = {"site": "site0001", "sandbox": "sandbox0001"}


def _scratch_url(tmp: str) -> str:
    return f"sqlite:///{Path(tmp) / 'scratch.sqlite3'}"


def revision(name: str, message: str, rev_id: str | None = None) -> Path | None:
    from demo.storage import make_engine

    with tempfile.TemporaryDirectory() as tmp:
        url = _scratch_url(tmp)
        engine = make_engine(url)
        try:
            if scripts(name).get_current_head() is not None:
                upgrade(engine, name)
                if not differences(engine, name):
                    return None   # the models match head: nothing to write
        finally:
            engine.dispose()
        script = command.revision(config(name, url=url), message=message, autogenerate=True, rev_id=rev_id)
    return Path(script.path) if script is not None else None


def check() -> int:
    from demo.storage import make_engine

    status = 0
    for name in NAMES:
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(_scratch_url(tmp))
            try:
                upgrade(engine, name)
                diff = differences(engine, name)
            finally:
                engine.dispose()
        print(f"{name}: {'models and migrations agree' if not diff else 'models differ from the migrations:'}")
        for item in diff:
            print(f"  {item}")
        status |= bool(diff)
    return status


def initial(name: str) -> Path | None:
    versions = HERE / name / "versions"
    old = [p for p in versions.glob("*.py") if p.name != "__init__.py"]
    if len(old) > 1:
        raise SystemExit(f"{name} has {len(old)} revisions: add one with 'revision' instead")
    for path in old:
        path.unlink()
    return revision(name, "initial schema", rev_id=INITIAL_IDS[name])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m demo.migrations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("check", help="exit 1 when a model changed without a migration")
    rev = sub.add_parser("revision", help="autogenerate a new revision")
    rev.add_argument("name", choices=NAMES)
    rev.add_argument("-m", "--message", required=True)
    ini = sub.add_parser("initial", help="rewrite the only revision from the models")
    ini.add_argument("name", choices=NAMES)
    args = parser.parse_args(argv)
    if args.command == "check":
        return check()
    path = revision(args.name, args.message) if args.command == "revision" else initial(args.name)
    print(f"wrote {path}" if path else "no changes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

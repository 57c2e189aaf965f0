"""Several workers (or machines) starting at once on a fresh database all register the configured
third parties: none of them fails on the others' rows."""
from __future__ import annotations

import threading

from demo.config import load_config
from demo.sandbox import SandboxContext, register_clients
from demo.sandbox.models import Base, ClientRow
from demo.storage import Database


def test_workers_registering_the_same_clients_at_once_all_start(tmp_path):
    settings = load_config({"instance_path": str(tmp_path), "secret_key": "k" * 32}, env={})
    url = f"sqlite:///{tmp_path}/race.sqlite3"
    Database(url, Base.metadata).dispose()                 # the tables, as the first worker makes them
    workers = 8
    barrier, errors = threading.Barrier(workers), []

    def start():
        db = Database(url, Base.metadata)
        ctx = SandboxContext(settings, db, None)
        barrier.wait()
        try:
            register_clients(ctx)
        except Exception as exc:   # noqa: BLE001 - any failure is the finding
            errors.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    db = Database(url, Base.metadata)
    with db.session() as s:
        ids = sorted(row.client_id for row in s.query(ClientRow))
    db.dispose()
    assert ids == sorted(c["client_id"] for c in settings["sandbox_clients"])

"""The sandbox's batched bookkeeping after a decision (demo/sandbox/lifecycle.py): uids checked
in one query, events recorded in one go, and the same rows, order and uid format as recording
them one by one."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import event, select

from demo.sandbox import lifecycle
from demo.sandbox.models import AuthorizationRow, Base, ClientRow, EventRow, MeterRow, WebhookEndpointRow
from demo.storage import Database, utcnow

CLIENT = "PCE_perf"


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'sandbox.sqlite3'}", Base.metadata)
    with database.session() as s:
        s.add(ClientRow(client_id=CLIENT, secret_hash="x", company_name="Perf Co"))
    yield database
    database.dispose()


def _authorization(s, behaviour="normal") -> AuthorizationRow:
    row = AuthorizationRow(uid=lifecycle.numeric_uid(s, AuthorizationRow), client_id=CLIENT, scenario="residential",
                           account_number="1", history_start=0, authorized_start=0, authorized_end=0,
                           behaviour=behaviour)
    s.add(row)
    s.flush()
    return row


def _statements(db):
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def test_numeric_uids_are_distinct_digits_and_skip_taken_ones(db, monkeypatch):
    with db.session() as s:
        s.add(EventRow(uid="100000005", client_id=CLIENT, type="ping", ts=utcnow()))
    # the first draws repeat and hit a taken uid: each is drawn again until all are new
    draws = iter([5, 5, 7, 8, 9, 123456789])
    monkeypatch.setattr(lifecycle.secrets, "randbelow", lambda n: next(draws))
    with db.session() as s:
        uids = lifecycle.numeric_uids(s, EventRow, 4, 9)
    assert uids == ["100000007", "100000008", "100000009", "223456789"]
    assert all(re.fullmatch(r"[1-9]\d{8}", u) for u in uids)


def test_numeric_uids_sees_rows_added_but_not_flushed(db, monkeypatch):
    draws = iter([3, 3, 4])
    monkeypatch.setattr(lifecycle.secrets, "randbelow", lambda n: next(draws))
    with db.session() as s:
        auth = _authorization(s)
        s.add(MeterRow(uid=lifecycle.numeric_uid(s, MeterRow), authorization_uid=auth.uid, service_uid="m"))
        assert lifecycle.numeric_uid(s, MeterRow) == "1000004"


def test_authorized_records_the_same_events_in_order_with_one_query_each(db):
    with db.session() as s:
        s.add_all([WebhookEndpointRow(client_id=CLIENT, url="https://a.example/hook", secret_encrypted="x"),
                   WebhookEndpointRow(client_id=CLIENT, url="https://b.example/hook", secret_encrypted="x",
                                      event_types=["meter_created"]),
                   WebhookEndpointRow(client_id=CLIENT, url="https://c.example/hook", secret_encrypted="x",
                                      disabled=True)])
    now = utcnow().replace(microsecond=0)
    with db.session() as s:
        auth = _authorization(s)
        seen = _statements(db)
        meters = lifecycle.authorized(s, auth, ["s1", "s2", "s3", "s4"], {"sandbox_ready_delay": 5}, now=now)
        uid = auth.uid
    # one query for the meters' uids, one for the endpoints, one for the events' uids
    selects = [q for q in seen if q.lstrip().upper().startswith("SELECT")]
    assert len(selects) == 3, selects
    with db.session() as s:
        rows = s.scalars(select(EventRow).where(EventRow.authorization_uid == uid)
                         .order_by(EventRow.ts, EventRow.uid)).all()
        stored_meters = lifecycle.meters_of(s, uid)
        stored = s.get(AuthorizationRow, uid)
        assert stored.meter_uids == [m.uid for m in meters] == [m.uid for m in stored_meters]
        assert [m.service_uid for m in stored_meters] == ["s1", "s2", "s3", "s4"]
        assert stored.created == now and stored.ready_at == now + timedelta(seconds=5)
        assert all(m.created == now for m in stored_meters)
    got = sorted((r.ts, lifecycle.EVENT_ORDER[r.type], r.meter_uid or "", r.delivery_target) for r in rows)
    want = []
    for type_, meter in [("authorization_created", None), ("authorization_update_started", None),
                         *[("meter_created", m.uid) for m in meters]]:
        targets = ["https://a.example/hook"] + (["https://b.example/hook"] if type_ == "meter_created" else [])
        want += [(now, lifecycle.EVENT_ORDER[type_], meter or "", t) for t in targets]
    want.append((now + timedelta(seconds=5), lifecycle.EVENT_ORDER["authorization_update_finished_successful"], "",
                 "https://a.example/hook"))
    assert got == sorted(want)
    assert all(re.fullmatch(r"[1-9]\d{8}", r.uid) for r in rows) and len({r.uid for r in rows}) == len(rows)
    assert all(r.next_attempt == r.ts and r.endpoint_id is not None for r in rows)


def test_emit_without_endpoints_keeps_one_undelivered_row(db):
    with db.session() as s:
        rows = lifecycle.emit(s, CLIENT, "ping")
        assert len(rows) == 1 and rows[0].delivery_target is None and rows[0].next_attempt is None


def test_errored_at_login_has_no_meters_and_an_errored_finish(db):
    now = utcnow().replace(microsecond=0)
    with db.session() as s:
        auth = _authorization(s, behaviour="badlogin")
        assert lifecycle.authorized(s, auth, ["s1"], {}, now=now) == []
        types = [r.type for r in s.scalars(select(EventRow).where(EventRow.authorization_uid == auth.uid))]
        assert auth.meter_uids == []
    assert sorted(types, key=lifecycle.EVENT_ORDER.get) == [
        "authorization_created", "authorization_update_started", "authorization_update_finished_errored"]

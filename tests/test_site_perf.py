"""The site's cheaper request paths keep their behaviour: exchange numbering with several
recorders, the shared watchdog that cuts slow calls, and proxies read from the environment."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from demo.site import client as gbc
from demo.site import exchanges as ex
from demo.site.models import Base
from demo.storage import Database


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'site.sqlite3'}", Base.metadata)
    yield database
    database.dispose()


def _seqs(db, run_id="run1") -> list[tuple[int, str]]:
    with db.session() as s:
        return [(x.seq, x.title) for x in ex.exchanges_for(s, run_id)]


def test_recorders_of_one_run_interleave_without_losing_an_exchange(db):
    first, second = ex.Recorder(db, "run1"), ex.Recorder(db, "run1")
    first.note("a", "one")
    second.note("b", "two")        # counts from the table: 2
    first.note("a", "three")       # its own count says 2, taken: retried from the table
    second.note("b", "four")       # its own count says 3, taken: 4
    assert _seqs(db) == [(1, "one"), (2, "two"), (3, "three"), (4, "four")]
    assert (first.last_seq, second.last_seq) == (3, 4)


def test_a_new_run_starts_at_one_and_a_wrong_first_seq_is_corrected(db):
    ex.Recorder(db, "run1", first_seq=1).note("authorize", "first")
    late = ex.Recorder(db, "run1", first_seq=1)     # wrong guess: #1 exists
    late.note("callback", "second")
    assert _seqs(db) == [(1, "first"), (2, "second")] and late.last_seq == 2


class _Probe(gbc._SocketTimer):
    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.a, self.b = socket.socketpair()
        self.a.settimeout(5)       # a broken watchdog fails the test instead of hanging it

    def sockets(self) -> list:
        return [self.a]


def test_the_watchdog_cuts_a_blocked_read_in_time_and_leaves_disarmed_timers_alone():
    idle = [_Probe(0.3) for _ in range(50)]
    for t in idle:
        t.__enter__()
        t.__exit__(None, None, None)
    probe = _Probe(0.5)
    start = time.monotonic()
    with probe:
        assert probe.a.recv(10) == b""          # blocked until the watchdog shut the socket down
    took = time.monotonic() - start
    assert probe.expired and 0.4 <= took < 3
    time.sleep(0.1)
    assert not any(t.expired for t in idle)
    for t in idle:
        t.b.sendall(b"x")
        assert t.a.recv(10) == b"x"             # still open: never cut
        t.a.close(), t.b.close()
    probe.a.close(), probe.b.close()


def test_timers_of_several_threads_each_fire_at_their_own_time():
    fired: dict[float, float] = {}

    def run(seconds: float) -> None:
        probe = _Probe(seconds)
        start = time.monotonic()
        with probe:
            probe.a.recv(10)
        fired[seconds] = time.monotonic() - start
        probe.a.close(), probe.b.close()

    threads = [threading.Thread(target=run, args=(s,)) for s in (1.2, 0.3, 0.7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(fired) == [0.3, 0.7, 1.2]
    for seconds, took in fired.items():
        assert seconds - 0.05 <= took < seconds + 1.5


def test_proxies_from_the_environment_still_apply(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "skip.example")
    sess = gbc.Session()
    for _ in range(2):      # the second answer comes from the session's own memory
        got = sess.merge_environment_settings("http://custodian.example/espi/x", {}, True, None, None)
        assert got["proxies"].get("http") == "http://proxy.example:3128"
        assert "http" not in sess.merge_environment_settings("http://skip.example/x", {}, True, None, None)["proxies"]
    got["proxies"]["http"] = "changed by a caller"
    again = sess.merge_environment_settings("http://custodian.example/espi/x", {}, True, None, None)
    assert again["proxies"]["http"] == "http://proxy.example:3128"
    monkeypatch.setenv("HTTP_PROXY", "http://other.example:8080")
    fresh = gbc.Session().merge_environment_settings("http://custodian.example/x", {}, True, None, None)
    assert fresh["proxies"]["http"] == "http://other.example:8080"     # a new session reads it again


def test_exchange_rows_read_as_the_objects_were(db):
    from demo.site.models import Exchange

    rec = ex.Recorder(db, "run1")
    rec.note("callback", "first", url="https://x.test/cb?code=secret-code-123", params={"a": "1"})
    with db.session() as s:
        s.add(Exchange(run_id="run1", seq=2, kind="token", title="second", status=200, response_truncated=True,
                       response_headers=[["Content-Type", "application/json"]], response_body='{"a": 1}'))
        rows = ex.exchanges_for(s, "run1")      # a pending object is flushed first, as with a query
        assert [r.seq for r in rows] == [1, 2]
        objects = s.query(Exchange).filter_by(run_id="run1").order_by(Exchange.seq).all()
        assert [ex.exchange_dict(r) for r in rows] == [ex.exchange_dict(o) for o in objects]
        assert [ex.exchange_view(r) for r in rows] == [ex.exchange_view(o) for o in objects]
        assert rows[1].response_truncated is True and rows[0].fields == {"params": {"a": "1"}}
        assert ex.exchanges_for(s, "other") == []


def test_events_of_an_authorization_keep_their_order_limit_and_owner(db):
    from datetime import datetime, timedelta

    from demo.site import integrator

    t0 = datetime(2026, 1, 1)
    with db.session() as s:
        for i, (visitor, uid) in enumerate([("v1", "A"), ("v1", "A"), ("v2", "A"), ("v1", "B"), ("v1", "A")]):
            s.add(integrator.WebhookEvent(visitor_id=visitor, authorization_uid=uid, event_uid=f"e{i}",
                                          received=t0 - timedelta(minutes=i), verified=True))
        s.add(integrator.IntegratorData(run_id="r1", kind="json_api", data={"x": 1}, fetched=t0))
        events = integrator.events_for_authorization(s, "v1", "A")
        assert [e["uid"] for e in events] == ["e4", "e1", "e0"]          # oldest first, this visitor's only
        assert [e["uid"] for e in integrator.events_for_authorization(s, "v1", "A", limit=2)] == ["e4", "e1"]
        assert integrator.load_data(s, "r1", "json_api") == {"x": 1}    # pending row flushed first
        assert integrator.load_data(s, "r1", "other") is None


class _Failing(gbc._SocketTimer):
    def sockets(self) -> list:
        raise RuntimeError("a bug in one timer")


class _Wrapped:
    """Like urllib3's SSLTransport (TLS through an HTTPS proxy): no shutdown, the real socket inside."""

    def __init__(self, sock) -> None:
        self.socket = sock


class _WrappedProbe(_Probe):
    def sockets(self) -> list:
        return [_Wrapped(self.a)]


def test_a_timer_that_fails_to_cut_does_not_stop_later_ones(caplog):
    with _Failing(0.05):
        time.sleep(0.3)          # fired, and raised inside the watchdog thread
    assert "could not cut" in caplog.text
    probe = _WrappedProbe(0.3)
    start = time.monotonic()
    with probe:
        assert probe.a.recv(10) == b""          # still cut in time, through the wrapper's socket
    assert probe.expired and time.monotonic() - start < 3
    probe.a.close(), probe.b.close()


def test_a_dead_watchdog_thread_is_started_again():
    dog = gbc._the_watchdog()
    with _Probe(0.05) as warm:
        pass
    warm.a.close(), warm.b.close()
    dog._thread = threading.Thread(target=lambda: None)   # a thread that has ended
    dog._thread.start()
    dog._thread.join()
    probe = _Probe(0.3)
    with probe:
        assert probe.a.recv(10) == b""
    assert probe.expired and dog._thread.is_alive()
    probe.a.close(), probe.b.close()

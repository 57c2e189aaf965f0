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


def test_a_new_authorization_is_written_once_with_its_meters_and_events(db):
    """lifecycle.authorized on a row not yet in the session: the three queries first, then one
    INSERT per table (no UPDATE of the authorization just inserted), final values stored."""
    now = utcnow().replace(microsecond=0)
    with db.session() as s:
        uid = lifecycle.numeric_uid(s, AuthorizationRow)
        auth = AuthorizationRow(uid=uid, client_id=CLIENT, scenario="residential", account_number="1",
                                history_start=0, authorized_start=0, authorized_end=0)
        seen = _statements(db)
        meters = lifecycle.authorized(s, auth, ["s1", "s2"], {"sandbox_ready_delay": 5}, now=now)
        assert auth in s
    verbs = [q.lstrip().split()[0].upper() for q in seen]
    assert verbs[:3] == ["SELECT"] * 3 and "SELECT" not in verbs[3:], seen
    assert not any(q.lstrip().upper().startswith("UPDATE") for q in seen), seen
    assert sum(1 for q in seen if "INSERT INTO authorizations" in q) == 1
    with db.session() as s:
        stored = s.get(AuthorizationRow, uid)
        assert stored.meter_uids == [m.uid for m in meters] == [m.uid for m in lifecycle.meters_of(s, uid)]
        assert stored.created == now and stored.ready_at == now + timedelta(seconds=5)
        types = sorted((r.ts, lifecycle.EVENT_ORDER[r.type])
                       for r in s.scalars(select(EventRow).where(EventRow.authorization_uid == uid)))
    assert [t for _, t in types] == [lifecycle.EVENT_ORDER[t] for t in (
        "authorization_created", "authorization_update_started", "meter_created", "meter_created",
        "authorization_update_finished_successful")]


def test_clean_up_runs_at_most_once_a_minute_per_database(db, tmp_path):
    """portal.begin clears day-old pending requests and codes expired a day ago, but only when the
    last clean-up of this database in this process is CLEAN_UP_EVERY seconds old."""
    from demo.sandbox import portal
    from demo.sandbox.models import AuthorizationCodeRow, PendingAuthorization

    def stale(s, n):
        old = utcnow() - timedelta(days=2)
        s.add(PendingAuthorization(id=f"old{n}", client_id=CLIENT, request_args={}, created=old))
        s.add(AuthorizationCodeRow(code_hash=f"h{n}", client_id=CLIENT, authorization_uid=_authorization(s).uid,
                                   expires=old))

    def left(s):
        pending = sorted(s.scalars(select(PendingAuthorization.id).where(PendingAuthorization.id.like("old%"))))
        return pending, sorted(s.scalars(select(AuthorizationCodeRow.code_hash)))

    with db.session() as s:
        stale(s, 1)
    with db.session() as s:
        portal.begin(s, CLIENT, {})
    with db.session() as s:
        assert left(s) == ([], [])
        stale(s, 2)
    with db.session() as s:
        portal.begin(s, CLIENT, {})      # within the minute: kept
    with db.session() as s:
        assert left(s) == (["old2"], ["h2"])
    # another database is cleaned on its own schedule
    other = Database(f"sqlite:///{tmp_path / 'other.sqlite3'}", Base.metadata)
    with other.session() as s:
        s.add(ClientRow(client_id=CLIENT, secret_hash="x", company_name="Perf Co"))
    with other.session() as s:
        stale(s, 3)
    with other.session() as s:
        portal.begin(s, CLIENT, {})
    with other.session() as s:
        assert left(s) == ([], [])
    other.dispose()
    # a minute later this one is cleaned again
    portal._last_clean_up[db.engine] -= portal.CLEAN_UP_EVERY
    with db.session() as s:
        portal.begin(s, CLIENT, {})
    with db.session() as s:
        assert left(s) == ([], [])


def test_serve_reads_the_authorization_and_its_meters_in_order_in_one_query(db):
    from demo.sandbox import resources
    from demo.sandbox.credentials import API, Credential

    with db.session() as s:
        auth = _authorization(s)
        empty = _authorization(s)
        uid, empty_uid = auth.uid, empty.uid
        for position, service in [(2, "c"), (0, "a"), (1, "b")]:
            s.add(MeterRow(uid=f"90000{position}", authorization_uid=uid, service_uid=service, position=position))
    cred = Credential(API, CLIENT)
    found = []
    seen = _statements(db)
    with db.session() as s:
        resources.serve(s, cred, uid, lambda account: None, utcnow(), data=False)
        # load() skips meters the directory does not know: look at what serve passed it
    assert len([q for q in seen if q.lstrip().upper().startswith("SELECT")]) == 1
    original = resources.load
    try:
        resources.load = lambda row, meters, customer, now: found.append((row.uid, [m.uid for m in meters]))
        with db.session() as s:
            resources.serve(s, cred, uid, lambda account: None, utcnow(), data=False)
            resources.serve(s, cred, empty_uid, lambda account: None, utcnow(), data=False)
            with pytest.raises(resources.NotServed) as unknown:
                resources.serve(s, cred, "404404", lambda account: None, utcnow(), data=False)
            with pytest.raises(resources.NotServed) as other_client:
                resources.serve(s, Credential(API, "PCE_other"), uid, lambda account: None, utcnow(), data=False)
    finally:
        resources.load = original
    assert found == [(uid, ["900000", "900001", "900002"]), (empty_uid, [])]
    assert unknown.value.status == 404 and other_client.value.status == 404


# ---- whole requests, in process ---------------------------------------------------------------

@pytest.fixture
def sandbox(tmp_path):
    from demo.config import load_config
    from demo.sandbox import create_app

    settings = load_config({"instance_path": str(tmp_path), "secret_key": "k", "sandbox_ready_delay": 0,
                            "sandbox_webhooks": False}, env={})
    app = create_app(settings)
    yield app, settings
    app.extensions["gbc_sandbox"].db.dispose()


def _to_code(app, settings, seen):
    """Customer's side of a prefilled flow with the test client; the statements of each step."""
    import html as html_lib
    from urllib.parse import parse_qs, urlencode, urlsplit

    base, client = settings["sandbox_url"].rstrip("/"), app.test_client()
    redirect_to = settings["site_url"].rstrip("/") + "/callback"
    query = urlencode({"response_type": "code", "client_id": "PCE_ccccccccc", "redirect_uri": redirect_to,
                       "state": "s" * 20, "scope": "FB=1_3_4_13_14_16_51;AdditionalScope=auth-account-111111111-1"})
    steps = {}

    def step(name, method, path, **kw):
        seen.clear()
        resp = getattr(client, method)(path, base_url=base, **kw)
        steps[name] = list(seen)
        return resp

    assert step("authorize", "get", "/oauth/authorize?" + query).status_code == 303
    page = step("verify_page", "get", "/authorize/verify").get_data(as_text=True)
    code = re.search(r'id="test-passcode"[^>]*>\s*([0-9]+)\s*<', page).group(1)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    assert step("passcode", "post", "/authorize/verify", data={"csrf_token": csrf, "code": code}).status_code == 303
    page = step("consent_page", "get", "/authorize/consent").get_data(as_text=True)
    assert "Share your energy data with" in page
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    meters = re.findall(r'name="meters"[^>]*value="([^"]+)"', page)
    history = re.search(r'<option selected value="([^"]*)"', page).group(1)
    ends = re.findall(r'<option selected value="([^"]*)"', page)[1]
    resp = step("consent", "post", "/authorize/consent", data={
        "csrf_token": html_lib.unescape(csrf), "history": history, "end": ends, "meters": meters,
        "authorize": "Authorize"})
    assert resp.status_code in (302, 303), resp.get_data(as_text=True)[:500]
    return client, parse_qs(urlsplit(resp.location).query)["code"][0], redirect_to, steps


def _token(app, settings, client, code, redirect_to):
    import base64
    basic = base64.b64encode(b"PCE_ccccccccc:pce-sandbox-public-test-company-secret").decode()
    return client.post("/oauth/token", base_url=settings["sandbox_url"].rstrip("/"),
                       data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_to},
                       headers={"Authorization": "Basic " + basic})


def test_the_flow_reads_each_row_once(sandbox):
    app, settings = sandbox
    seen = []
    event.listen(app.extensions["gbc_sandbox"].db.engine, "before_cursor_execute",
                 lambda *args: seen.append(args[2].lstrip()))
    client, code, redirect_to, steps = _to_code(app, settings, seen)
    # the pages read the pending request and its registration in one statement
    assert len(steps["verify_page"]) == len(steps["consent_page"]) == 1
    assert "JOIN clients" in steps["consent_page"][0]
    # the authorization is inserted with its final values (no UPDATE right after)
    assert sorted(q.split("(")[0].strip() for q in steps["consent"] if q.startswith(("INSERT", "UPDATE"))) == [
        "INSERT INTO authorization_codes", "INSERT INTO authorizations", "INSERT INTO events", "INSERT INTO meters"]
    seen.clear()
    resp = _token(app, settings, client, code, redirect_to)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    # client; code spent and its authorization read (one transaction); code held, the
    # authorization's status read again, token saved
    assert [q.split()[0] for q in seen] == ["SELECT", "UPDATE", "SELECT", "UPDATE", "SELECT", "INSERT"]


def test_a_code_whose_authorization_was_revoked_meanwhile_gets_no_token(sandbox):
    app, settings = sandbox
    client, code, redirect_to, _ = _to_code(app, settings, [])
    with app.extensions["gbc_sandbox"].db.session() as s:
        row = s.scalars(select(AuthorizationRow)).one()
        assert lifecycle.revoke(s, row, "customer")
    resp = _token(app, settings, client, code, redirect_to)
    assert resp.status_code == 400 and resp.json["error"] == "invalid_grant", resp.get_data(as_text=True)


def test_a_revocation_racing_the_token_save_leaves_the_token_revoked(sandbox, monkeypatch):
    """The authorization is revoked after the code was spent but before the token is saved (a
    concurrent revocation, which can't see the token yet): the token is born revoked."""
    from demo.sandbox import oauth
    from demo.sandbox.models import TokenRow

    app, settings = sandbox
    db = app.extensions["gbc_sandbox"].db
    client, code, redirect_to, _ = _to_code(app, settings, [])
    replayed = oauth._code_replayed

    def revoke_first(s, request):
        with db.session() as other:
            assert lifecycle.revoke(other, other.scalars(select(AuthorizationRow)).one(), "customer")
        return replayed(s, request)

    monkeypatch.setattr(oauth, "_code_replayed", revoke_first)
    resp = _token(app, settings, client, code, redirect_to)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    with db.session() as s:
        assert [t.revoked for t in s.scalars(select(TokenRow))] == [True]
    espi = client.get("/DataCustodian/espi/1_1/resource/Authorization",
                      base_url=settings["sandbox_url"].rstrip("/"),
                      headers={"Authorization": "Bearer " + resp.json["access_token"]})
    assert espi.status_code == 401

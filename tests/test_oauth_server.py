"""The sandbox as an authorization server, against RFC 6749, RFC 7636 (PKCE) and RFC 9700:
S256 only, the verifier checked, codes bound to their client and redirect_uri, single-use,
and only hashes of codes and tokens at rest. Everything over HTTP on loopback."""
from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sandbox_steps import RESIDENTIAL_PHONE, decide, lookup, passcode
from sqlalchemy import text

from demo.tokens import digest

CLIENT, SECRET = "PCE_ccccccccc", "pce-sandbox-public-test-company-secret"


def challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def redirect_uri(live) -> str:
    return live.site_url + "/callback"


def authorize_code(visitor, live, **extra) -> tuple[str, dict]:
    """Run the customer's side with these extra authorize parameters; the code and the callback query."""
    params = {"response_type": "code", "client_id": CLIENT, "redirect_uri": redirect_uri(live),
              "scope": "FB=4_16_51", "state": secrets.token_urlsafe(16), **extra}
    page = visitor.get(live.sandbox_url + "/oauth/authorize", params=params)
    page = lookup(visitor, page, "phone", RESIDENTIAL_PHONE)
    page = passcode(visitor, live, page)
    resp = decide(visitor, page)
    assert resp.status_code in (302, 303), resp.text[:300]
    query = {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}
    assert query["state"] == params["state"]
    return query["code"], query


def token(live, code: str, *, client=(CLIENT, SECRET), uri: str | None = None, **fields) -> requests.Response:
    data = {"grant_type": "authorization_code", "code": code,
            "redirect_uri": uri if uri is not None else redirect_uri(live), **fields}
    return requests.post(live.sandbox_url + "/oauth/token", auth=client, data=data, timeout=10)


def authorize_error(visitor, live, **extra) -> dict:
    """The error redirect an authorize request with ``extra`` gets (no customer step is reached)."""
    params = {"response_type": "code", "client_id": CLIENT, "redirect_uri": redirect_uri(live),
              "scope": "FB=4_16_51", "state": "st-err", **extra}
    resp = visitor.http.get(live.sandbox_url + "/oauth/authorize", params=params, allow_redirects=False, timeout=10)
    assert resp.status_code in (302, 303), resp.text[:300]
    assert resp.headers["Location"].startswith(redirect_uri(live) + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}


# --- PKCE (RFC 7636; RFC 9700 §2.1.1) -----------------------------------------------------------

def test_s256_with_the_right_verifier_gets_a_token(live, visitor):
    verifier = secrets.token_urlsafe(48)
    code, _ = authorize_code(visitor, live, code_challenge=challenge(verifier), code_challenge_method="S256")
    resp = token(live, code, code_verifier=verifier)
    assert resp.status_code == 200, resp.text
    assert resp.json()["access_token"]


def test_plain_pkce_is_refused_at_the_authorize_step(live, visitor):
    query = authorize_error(visitor, live, code_challenge="a" * 43, code_challenge_method="plain")
    assert query["error"] == "invalid_request" and query["state"] == "st-err"
    assert "code" not in query


@pytest.mark.parametrize("sent", ["wrong", "missing", "plain"])
def test_a_code_with_a_challenge_needs_its_verifier(live, visitor, sent):
    verifier = secrets.token_urlsafe(48)
    code, _ = authorize_code(visitor, live, code_challenge=challenge(verifier), code_challenge_method="S256")
    fields = {"wrong": {"code_verifier": secrets.token_urlsafe(48)}, "missing": {},
              # the challenge itself as the verifier: what a "plain" downgrade would send
              "plain": {"code_verifier": challenge(verifier)}}[sent]
    resp = token(live, code, **fields)
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] in ("invalid_grant", "invalid_request")
    # a failed attempt does not leave the code usable by whoever holds the verifier next
    again = token(live, code, code_verifier=verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_a_verifier_without_a_challenge_is_refused(live, visitor):
    # RFC 9700 §4.8.2: a verifier sent for a code issued without a challenge is a downgrade sign
    code, _ = authorize_code(visitor, live)
    resp = token(live, code, code_verifier=secrets.token_urlsafe(48))
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"] in ("invalid_grant", "invalid_request")


# --- codes: bound, single-use, short-lived, stored as hashes --------------------------------------

def test_a_code_is_bound_to_its_redirect_uri(live, visitor):
    code, _ = authorize_code(visitor, live)
    resp = token(live, code, uri=live.site_url + "/callback/other")
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant", resp.text


def test_a_code_is_bound_to_its_client(live, visitor):
    code, _ = authorize_code(visitor, live)
    other = ("PCE_livedemo1", "pce-sandbox-public-live-demo-secret")
    resp = token(live, code, client=other)
    assert resp.status_code == 400 and resp.json()["error"] == "invalid_grant", resp.text
    # ... and the rightful client can't use it afterwards either: a stolen code is spent
    assert token(live, code).status_code == 400


def test_a_code_works_once(live, visitor):
    code, _ = authorize_code(visitor, live)
    assert token(live, code).status_code == 200
    replay = token(live, code)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"


def test_codes_live_ten_minutes_at_most(live, visitor):
    code, _ = authorize_code(visitor, live)
    db = live.sandbox_app.extensions["gbc_sandbox"].db
    with db.session() as s:
        issued, expires = s.execute(text(
            "SELECT a.created, c.expires FROM authorization_codes c JOIN authorizations a "
            "ON a.uid = c.authorization_uid WHERE c.code_hash = :h"), {"h": digest(code)}).one()
    lifetime = (_dt(expires) - _dt(issued)).total_seconds()
    assert 0 < lifetime <= live.settings["sandbox_code_ttl"] + 5 <= 605


def _dt(value):
    from datetime import datetime
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def test_the_token_response_is_never_cached(live, visitor):
    code, _ = authorize_code(visitor, live)
    resp = token(live, code)
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers.get("Pragma") == "no-cache"


def test_only_hashes_of_codes_and_tokens_are_stored(live, visitor):
    """Read every column of every sandbox table: no code, access token or refresh token in clear."""
    code, _ = authorize_code(visitor, live)
    issued = token(live, code).json()
    secrets_issued = {"code": code, "access_token": issued["access_token"],
                      "refresh_token": issued["refresh_token"]}
    db = live.sandbox_app.extensions["gbc_sandbox"].db
    dump = []
    with db.session() as s:
        for table in db.metadata.sorted_tables:
            for row in s.execute(table.select()):
                dump.extend(str(v) for v in row)
    blob = "\n".join(dump)
    for name, value in secrets_issued.items():
        assert value not in blob, f"the {name} is stored in clear"
        assert value[:16] not in blob, f"a prefix of the {name} is stored"
    # what is stored is the SHA-256 of each
    assert digest(code) in blob and digest(issued["access_token"]) in blob and digest(issued["refresh_token"]) in blob


def test_the_client_secret_is_stored_as_a_hash(live):
    db = live.sandbox_app.extensions["gbc_sandbox"].db
    with db.session() as s:
        rows = [tuple(str(v) for v in row) for row in s.execute(text("SELECT * FROM clients"))]
    blob = "\n".join(" ".join(r) for r in rows)
    assert SECRET not in blob and "pce-sandbox-public-live-demo-secret" not in blob


def test_a_replayed_code_revokes_the_tokens_it_gave(live, visitor):
    code, _ = authorize_code(visitor, live)
    issued = token(live, code).json()

    bearer = {"Authorization": f"Bearer {issued['access_token']}"}
    assert requests.get(issued["authorizationURI"], headers=bearer, timeout=10).status_code == 200
    assert token(live, code).status_code == 400                  # the replay ...
    assert requests.get(issued["authorizationURI"], headers=bearer, timeout=10).status_code == 401  # ... revokes
    refresh = requests.post(live.sandbox_url + "/oauth/token", auth=(CLIENT, SECRET), timeout=10,
                            data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]})
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def test_two_requests_racing_with_one_code_get_one_token(live, visitor):
    import threading

    code, _ = authorize_code(visitor, live)
    barrier, responses = threading.Barrier(6), []

    def race():
        barrier.wait()
        responses.append(token(live, code))

    threads = [threading.Thread(target=race) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    results = [r.status_code for r in responses]
    assert sorted(results) == [200] + [400] * 5, results
    # the winner raced replays of its own code: its token is revoked, whichever order they ran in
    winner = [r for r in responses if r.status_code == 200][0].json()
    bearer = {"Authorization": f"Bearer {winner['access_token']}"}
    assert requests.get(winner["authorizationURI"], headers=bearer, timeout=10).status_code == 401


def test_a_replay_while_the_first_token_is_being_issued_still_kills_it(live, visitor, monkeypatch):
    """The replay lands after the code was spent but before the first request saved its token."""
    import threading
    import time

    from demo.sandbox import oauth

    code, _ = authorize_code(visitor, live)
    slow = oauth.AuthorizationCodeGrant.authenticate_user

    def authenticate_slowly(self, authorization_code):
        time.sleep(1.0)
        return slow(self, authorization_code)

    monkeypatch.setattr(oauth.AuthorizationCodeGrant, "authenticate_user", authenticate_slowly)
    first = []
    thread = threading.Thread(target=lambda: first.append(token(live, code)))
    thread.start()
    time.sleep(0.3)
    assert token(live, code).status_code == 400           # the replay, while the first is slowed
    thread.join(20)
    assert first[0].status_code == 200, first[0].text
    issued = first[0].json()
    bearer = {"Authorization": f"Bearer {issued['access_token']}"}
    assert requests.get(issued["authorizationURI"], headers=bearer, timeout=10).status_code == 401

"""The sandbox's token endpoint beyond the authorization code: refresh_token
(with and without rotation, replay detection), client_credentials, RFC 7009
revocation and token expiry, over real HTTP."""
from __future__ import annotations

import time

import pytest
import requests

from demo.sandbox.credentials import CLIENT_SCOPE, bulk_id

from conftest import Visitor, start_servers
from flow import full_flow, token_of

CLIENT = ("PCE_ccccccccc", "pce-sandbox-public-test-company-secret")


def post_token(live, auth=CLIENT, **form):
    return requests.post(live.sandbox_url + "/oauth/token", data=form, auth=auth, timeout=10)


def get(url, token):
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.fixture
def grant(live, visitor):
    return token_of(live, full_flow(visitor, live, "residential", "phone"))


def test_refresh_rotates_and_keeps_the_green_button_fields(live, grant):
    response = post_token(live, grant_type="refresh_token", refresh_token=grant["refresh_token"])
    assert response.status_code == 200, response.text
    new = response.json()
    assert new["token_type"] == "Bearer" and new["expires_in"] == 3600
    assert new["access_token"] != grant["access_token"]
    assert new["refresh_token"] != grant["refresh_token"]                  # rotation is on by default
    assert new["scope"] == grant["scope"]
    for key in ("resourceURI", "authorizationURI", "customerResourceURI"):
        assert new[key] == grant[key]
    assert get(new["authorizationURI"], new["access_token"]).status_code == 200
    # the new refresh token works once more; the spent one is refused
    again = post_token(live, grant_type="refresh_token", refresh_token=new["refresh_token"])
    assert again.status_code == 200, again.text


def test_a_replayed_refresh_token_revokes_the_whole_family(live, grant):
    first = post_token(live, grant_type="refresh_token", refresh_token=grant["refresh_token"]).json()
    replay = post_token(live, grant_type="refresh_token", refresh_token=grant["refresh_token"])
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    # every token of that authorization is now dead, including the legitimately refreshed one
    assert get(first["authorizationURI"], first["access_token"]).status_code == 401
    assert post_token(live, grant_type="refresh_token",
                      refresh_token=first["refresh_token"]).json()["error"] == "invalid_grant"


def test_refresh_with_the_granted_scope_as_ogb_sends_it(live, grant):
    response = post_token(live, grant_type="refresh_token", refresh_token=grant["refresh_token"],
                          scope=grant["scope"])
    assert response.status_code == 200, response.text


def test_refresh_needs_the_right_client(live, grant):
    wrong_secret = post_token(live, auth=(CLIENT[0], "nope"), grant_type="refresh_token",
                              refresh_token=grant["refresh_token"])
    assert wrong_secret.status_code == 401 and wrong_secret.json()["error"] == "invalid_client"
    unknown = post_token(live, grant_type="refresh_token", refresh_token="0" * 64)
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"
    missing = post_token(live, grant_type="refresh_token")
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


def test_without_rotation_the_same_refresh_token_comes_back(tmp_path):
    live, servers = start_servers(tmp_path, sandbox_refresh_rotation=False)
    try:
        grant = token_of(live, full_flow(Visitor(), live, "residential", "email"))
        for _ in range(2):
            response = post_token(live, grant_type="refresh_token", refresh_token=grant["refresh_token"])
            assert response.status_code == 200, response.text
            assert response.json()["refresh_token"] == grant["refresh_token"]
            assert get(grant["authorizationURI"], response.json()["access_token"]).status_code == 200
    finally:
        for srv in servers:
            srv.shutdown()


def test_client_credentials_gives_a_client_access_token(live, grant):
    response = post_token(live, grant_type="client_credentials")
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"token_type", "access_token", "expires_in", "scope", "resourceURI", "authorizationURI"}
    assert "refresh_token" not in body
    assert body["scope"] == CLIENT_SCOPE
    assert body["resourceURI"].endswith(f"/Batch/Bulk/{bulk_id(CLIENT[0])}")
    assert body["authorizationURI"].endswith("/resource/Authorization")
    # a client_access_token is the wrong class for customer data
    assert get(grant["resourceURI"], body["access_token"]).status_code == 403


def test_client_credentials_needs_client_authentication(live):
    assert post_token(live, auth=None, grant_type="client_credentials").status_code == 401
    assert post_token(live, auth=(CLIENT[0], "wrong"), grant_type="client_credentials").status_code == 401


def test_unknown_grant_type_is_refused(live):
    response = post_token(live, grant_type="password", username="a", password="b")
    assert response.status_code == 400 and response.json()["error"] == "unsupported_grant_type"


def test_rfc7009_revocation_of_an_access_token(live, grant):
    response = requests.post(live.sandbox_url + "/oauth/revoke", auth=CLIENT,
                             data={"token": grant["access_token"], "token_type_hint": "access_token"}, timeout=10)
    assert response.status_code == 200
    assert get(grant["authorizationURI"], grant["access_token"]).status_code == 401
    # the same token record's refresh token is revoked with it
    again = post_token(live, grant_type="refresh_token", refresh_token=grant["refresh_token"])
    assert again.status_code == 400


def test_rfc7009_revocation_by_refresh_token_and_unknown_tokens(live, grant):
    revoke = requests.post(live.sandbox_url + "/oauth/revoke", auth=CLIENT,
                           data={"token": grant["refresh_token"]}, timeout=10)
    assert revoke.status_code == 200
    assert post_token(live, grant_type="refresh_token", refresh_token=grant["refresh_token"]).status_code == 400
    # unknown tokens are answered 200 as RFC 7009 §2.2 says; another client cannot revoke
    assert requests.post(live.sandbox_url + "/oauth/revoke", auth=CLIENT, data={"token": "x" * 64},
                         timeout=10).status_code == 200
    assert requests.post(live.sandbox_url + "/oauth/revoke", auth=(CLIENT[0], "bad"),
                         data={"token": "x" * 64}, timeout=10).status_code == 401


def test_expired_access_tokens_are_refused_and_refresh_still_works(tmp_path):
    live, servers = start_servers(tmp_path, sandbox_access_token_ttl=1)
    try:
        grant = token_of(live, full_flow(Visitor(), live, "residential", "account"))
        assert grant["expires_in"] == 1
        time.sleep(1.2)
        expired = get(grant["authorizationURI"], grant["access_token"])
        assert expired.status_code == 401
        assert "invalid_token" in expired.headers.get("WWW-Authenticate", "") or "expired" in expired.text
        fresh = post_token(live, grant_type="refresh_token", refresh_token=grant["refresh_token"]).json()
        assert get(grant["authorizationURI"], fresh["access_token"]).status_code == 200
    finally:
        for srv in servers:
            srv.shutdown()


def test_another_client_cannot_revoke_my_token(live, grant):
    other = ("PCE_livedemo1", "pce-sandbox-public-live-demo-secret")
    response = requests.post(live.sandbox_url + "/oauth/revoke", auth=other,
                             data={"token": grant["access_token"]}, timeout=10)
    assert response.status_code in (200, 400)       # RFC 7009 lets the server answer either way
    assert get(grant["authorizationURI"], grant["access_token"]).status_code == 200   # still works

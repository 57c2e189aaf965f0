"""Errors explained: every code and status has words for people and a hint of what to check."""
from __future__ import annotations

import pytest

from demo.site import client as gbc
from demo.site import explain

OAUTH_CODES = ["invalid_request", "unauthorized_client", "access_denied", "unsupported_response_type",
               "invalid_scope", "server_error", "temporarily_unavailable", "invalid_client", "invalid_grant",
               "unsupported_grant_type", "invalid_token", "insufficient_scope"]
UTILITYAPI_CODES = ["required_param_missing", "invalid_param", "expired_or_revoked", "not_found", "access_invalid",
                    "access_locked", "access_unsupported", "access_code_needed", "utility_down", "website_down",
                    "utility_error", "incomplete_registration"]
TRANSPORT_CODES = ["timeout", "connection", "not_json", "not_xml", "bad_xml", "too_large", "not_ready"]


@pytest.mark.parametrize("code", OAUTH_CODES + UTILITYAPI_CODES + TRANSPORT_CODES)
def test_every_code_has_a_message_and_a_hint(code):
    found = explain.lookup(code)
    assert found is not None and found.code == code
    assert len(found.message) > 20 and len(found.hint) > 5 and found.title


@pytest.mark.parametrize("status", [202, 400, 401, 403, 404, 429, 500, 502, 503, 504, 418, 599])
def test_statuses_are_explained(status):
    found = explain.for_status(status)
    assert found is not None and found.status == status and found.hint


def test_client_explain_is_the_same_table():
    assert gbc.explain("invalid_grant") == explain.OAUTH["invalid_grant"].message
    assert "'weird_code'" in gbc.explain("weird_code")


def test_unknown_code_with_status_takes_the_status_hint():
    found = explain.combine("weird_code", 403, detail="nope")
    assert found.code == "weird_code" and found.detail == "nope" and "client_access_token" in found.hint


def _ex(**kw) -> dict:
    return {"kind": "espi", "status": 200, "response_headers": [], "response_body": "<feed/>", **kw}


def test_exchange_401_with_bearer_challenge():
    found = explain.explain_exchange(_ex(
        status=401, response_body="", response_headers=[["WWW-Authenticate",
                                                         'Bearer realm="x", error="invalid_token", '
                                                         'error_description="This access token was revoked."']]))
    assert found.code == "invalid_token" and found.detail == "This access token was revoked." and found.status == 401


def test_exchange_403_json_body_insufficient_scope():
    found = explain.explain_exchange(_ex(status=403, response_body='{"error": "insufficient_scope", '
                                                                   '"error_description": "needs FB 4"}'))
    assert found.code == "insufficient_scope" and found.detail == "needs FB 4"


def test_exchange_bare_403_and_404():
    assert explain.explain_exchange(_ex(status=403, response_body="")).code == "insufficient_scope"
    assert explain.explain_exchange(_ex(status=404, response_body="nope")).code == "http_404"


def test_token_endpoint_error_and_utilityapi_envelope():
    found = explain.explain_exchange(_ex(kind="token", status=400,
                                         response_body='{"error": "invalid_grant", "error_description": "used"}'))
    assert found.code == "invalid_grant" and found.detail == "used"
    found = explain.explain_exchange(_ex(kind="json", status=400, response_body='{"error": "expired_or_revoked", '
                                         '"error_description": "All meters dropped", "url": null}'))
    assert found.code == "expired_or_revoked"


def test_exchange_202_429_and_5xx_with_retry_after():
    found = explain.explain_exchange(_ex(status=202, response_body="", response_headers=[["Retry-After", "7"]]))
    assert found.code == "not_ready" and found.retry_after == 7
    found = explain.explain_exchange(_ex(status=429, response_body="slow down",
                                         response_headers=[["Retry-After", "30"]]))
    assert found.code == "http_429" and found.retry_after == 30
    assert explain.explain_exchange(_ex(status=503, response_body="<html>maintenance</html>")).code == "http_503"


def test_exchange_wrong_body_types():
    assert explain.explain_exchange(_ex(kind="token", response_body="<html>login</html>")).code == "not_json"
    assert explain.explain_exchange(_ex(kind="espi", response_body='{"a": 1}')).code == "not_xml"
    assert explain.explain_exchange(_ex(kind="espi", response_body="<feed/>")) is None
    assert explain.explain_exchange(_ex(kind="json", response_body='{"a": 1}')) is None


def test_exchange_transport_errors_and_callback_errors():
    found = explain.explain_exchange({"kind": "espi", "status": None, "error": {"kind": "timeout", "message": "10 s"}})
    assert found.code == "timeout" and found.detail == "10 s"
    found = explain.explain_exchange({"kind": "callback", "fields": {"params": {"error": "access_denied"}}})
    assert found.code == "access_denied"
    assert explain.explain_exchange({"kind": "authorize", "fields": {"params": {"state": "x"}}}) is None


def test_run_error_and_notes():
    found = explain.explain_error({"error": "invalid_client", "status": None, "error_description": "bad secret"})
    assert found.code == "invalid_client" and found.detail == "bad secret"
    assert explain.explain_error(None) is None
    assert explain.note("access_locked").title == "Account locked"
    assert explain.note("meters_full") is not None and explain.note("no_such_note") is None

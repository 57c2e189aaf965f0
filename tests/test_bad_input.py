"""Bad input gets a clear 4xx, never a 500 or a hang, at both origins."""
from __future__ import annotations

import pytest
import requests

LONG = "x" * 5000


@pytest.mark.parametrize("method,path,kwargs", [
    ("GET", "/runs/does-not-exist", {}),
    ("GET", "/runs/does-not-exist.json", {}),
    ("GET", "/runs/" + LONG, {}),
    ("GET", "/callback", {}),
    ("GET", "/callback?state=&code=", {}),
    ("GET", "/callback?error=access_denied", {}),
    ("GET", "/callback?code=a&state=b&state=c", {}),
    ("GET", "/?lookup_type=fax&lookup_value=1", {}),
    ("GET", "/?function_blocks=abc&history=zzz&end_date=notadate", {}),
    ("GET", "/?lookup_type=phone&lookup_value=" + LONG, {}),
    ("POST", "/connect", {"data": {"lookup_type": "phone"}}),
    ("POST", "/settings/reset", {}),
    ("PUT", "/settings", {}),
], ids=lambda v: v if isinstance(v, str) and len(v) < 60 else None)
def test_site_answers_bad_input_with_4xx(live, method, path, kwargs):
    resp = requests.request(method, live.site_url + path, timeout=10, allow_redirects=False, **kwargs)
    assert resp.status_code < 500, resp.text[:500]
    assert resp.status_code != 200 or path.startswith("/?")


@pytest.mark.parametrize("method,path,kwargs", [
    ("GET", "/oauth/authorize", {}),
    ("GET", "/oauth/authorize?response_type=code", {}),
    ("GET", "/oauth/authorize?response_type=code&client_id=PCE_ccccccccc&client_id=x", {}),
    ("GET", "/oauth/authorize?response_type=code&client_id=" + LONG, {}),
    ("GET", "/authorize/lookup", {}),
    ("GET", "/authorize/verify", {}),
    ("GET", "/authorize/consent", {}),
    ("POST", "/authorize/lookup", {"data": {"method": "phone", "value": "1"}}),
    ("POST", "/authorize/resend", {}),
    ("POST", "/oauth/token", {}),
    ("POST", "/oauth/token", {"data": {"grant_type": "password"}}),
    ("POST", "/oauth/token", {"data": {"grant_type": "authorization_code", "code": LONG}}),
    ("POST", "/oauth/token", {"data": "{not json", "headers": {"Content-Type": "application/json"}}),
    ("GET", "/DataCustodian/espi/1_1/resource/Authorization/" + LONG, {"headers": {"Authorization": "Bearer x"}}),
    ("GET", "/DataCustodian/espi/1_1/resource/Batch/Subscription/1", {"headers": {"Authorization": "Basic eA=="}}),
    ("GET", "/DataCustodian/espi/1_1/resource/Nope", {}),
], ids=lambda v: v if isinstance(v, str) and len(v) < 60 else None)
def test_sandbox_answers_bad_input_with_4xx(live, method, path, kwargs):
    resp = requests.request(method, live.sandbox_url + path, timeout=10, allow_redirects=False, **kwargs)
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500])


def test_lookup_with_malformed_identifier_is_explained(live, visitor):
    from flow import connect, lookup

    page = lookup(visitor, connect(visitor, live), "phone", "12345")
    assert page.status == 422
    assert "10 digits" in page.text_of("lookup-error")
    page = lookup(visitor, page, "email", "not-an-email")
    assert page.status == 422 and "name@example.com" in page.text_of("lookup-error")

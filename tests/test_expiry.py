"""Lifetimes: an expired passcode sends the customer back to the start; an
expired authorization code is refused at the token endpoint and the run page
explains it."""
from __future__ import annotations

import pytest

from conftest import start_servers
from flow import TEST_IDS, connect, decide, enter_otp


@pytest.fixture
def short_lived(tmp_path, request):
    live, servers = start_servers(tmp_path, **request.param)
    yield live
    for srv in servers:
        srv.shutdown()


@pytest.mark.parametrize("short_lived", [{"sandbox_otp_ttl": 0}], indirect=True)
def test_expired_passcode_goes_back_to_lookup(short_lived, visitor):
    page = enter_otp(visitor, connect(visitor, short_lived, "phone", TEST_IDS["residential"]["phone"]))
    assert page.url.endswith("/authorize/lookup")
    assert "expired" in page.text_of("lookup-notice")


@pytest.mark.parametrize("short_lived", [{"sandbox_code_ttl": -1}], indirect=True)
def test_expired_code_is_refused_and_explained(short_lived, visitor):
    page = decide(visitor, enter_otp(visitor, connect(visitor, short_lived, "phone", TEST_IDS["residential"]["phone"])))
    assert page.url.startswith(short_lived.site_url + "/runs/")
    status = page.text_of("status")
    assert "went wrong at the token step" in status and "invalid_grant" in status
    data = visitor.get(page.url + ".json").response.json()
    assert data["status"] == "error" and data["error"]["error"] == "invalid_grant"

"""demo.site.runs without Flask or HTTP: the review, the callback's error path, the run's JSON."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from demo.config import load_config
from demo.site import runs
from demo.site.models import Run
from demo.storage import Vault

EFF = {k: v for k, v in load_config(env={}).items() if k in runs.VISITOR_KEYS}
CHOICES = dict(function_blocks=[51, 4, 16], history="", end_date=None, lookup_type="phone",
               lookup_value="111-111-1111", noedit=False, meters_all=False)


def test_review_builds_scope_url_and_explanation():
    r = runs.review(EFF, 5, **CHOICES)
    assert r["error"] is None
    assert r["scope"] == "FB=4_16_51;AdditionalScope=auth-phone-111-111-1111"
    assert r["scope_encoded"] == "FB%3D4_16_51%3BAdditionalScope%3Dauth-phone-111-111-1111"
    assert r["url"].startswith(EFF["authorize_url"] + "?response_type=code&client_id=PCE_ccccccccc&")
    assert r["url"].endswith("&state={state}&code_challenge={code_challenge}&code_challenge_method=S256")
    assert r["explained"][0].startswith("FB 4: ") and "phone number 111-111-1111" in r["explained"][-1]


def test_review_without_pkce_has_no_challenge():
    r = runs.review({**EFF, "pkce": False}, 5, **CHOICES)
    assert "code_challenge" not in r["url"] and r["url"].endswith("state={state}")


@pytest.mark.parametrize("change,message", [
    ({"function_blocks": []}, "at least one function block"),
    ({"lookup_value": "  "}, "Enter the phone to pre-fill"),
    ({"lookup_type": "fax"}, "fax"),
    ({"end_date": date.today() - timedelta(days=1)}, "must be in the future"),
])
def test_review_errors_are_explained(change, message):
    r = runs.review(EFF, 5, **{**CHOICES, **change})
    assert message in r["error"] and r["scope"] == "" and r["url"] == ""


def test_review_with_history_end_date_and_options():
    end = date.today() + timedelta(days=400)
    r = runs.review(EFF, 5, **{**CHOICES, "history": "31536000", "end_date": end, "noedit": True,
                               "meters_all": True, "lookup_type": "none"})
    assert r["scope"].startswith("FB=4_16_51;HistoryLength=31536000;PreferredAuthEndDate=")
    assert r["scope"].endswith(";AdditionalScope=noedit_meters-all")


def _run() -> Run:
    return Run(id="r1", visitor_id="v", status="pending", utility="PCE", client_id="PCE_ccccccccc",
               authorize_url="a", token_url="t", redirect_uri="r", requested_scope="FB=4",
               created=runs.utcnow())


@pytest.mark.parametrize("params,status,error", [
    ({"error": "access_denied", "state": "s" * 40}, "declined", "access_denied"),
    ({"error": "server_error", "error_description": "boom", "state": "x"}, "error", "server_error"),
    ({"state": "x"}, "error", "invalid_request"),
])
def test_finish_run_error_paths_exchange_nothing(params, status, error):
    run = _run()
    runs.finish_run(None, run, params, Vault("k"), 1)
    assert run.status == status and run.error["error"] == error
    assert run.token_enc is None and run.meters is None
    assert "s" * 40 not in str(run.callback)     # state kept masked


def test_run_json_has_stable_keys_and_no_secrets():
    run = _run()
    run.token_summary = runs.token_summary({"access_token": "a" * 64, "refresh_token": "b" * 64, "scope": "FB=4"})
    data = runs.run_json(run)
    assert {"requested_scope", "granted_scope", "authorization", "meters", "error"} <= set(data)
    assert data["token"]["access_token"] == "••••aaaa" and "a" * 8 not in str(data)


def test_the_token_goes_only_to_the_resource_origin(monkeypatch):
    from demo.espi.model import UsagePoint
    from demo.site import client

    asked = []
    monkeypatch.setattr(client, "fetch_xml", lambda url, *a, **k: asked.append(url) or b"<x/>")
    monkeypatch.setattr(client.espi_parse, "parse_local_time", lambda data: None)
    points = [UsagePoint(id="1", self_uri=None, title=None, service_kind=0, tariff_profile=None,
                         related=("https://evil.example/LocalTimeParameters/1",)),
              UsagePoint(id="2", self_uri=None, title=None, service_kind=0, tariff_profile=None,
                         related=("https://dc.example/r/LocalTimeParameters/2",))]
    client.with_local_time(points, "token", 1.0, origin="https://dc.example/r/Subscription/9")
    assert asked == ["https://dc.example/r/LocalTimeParameters/2"]


def test_configured_secrets_go_only_to_configured_endpoints():
    from demo.config import load_config
    from demo.site.models import VisitorSettings
    from demo.site.runs import effective_settings
    from demo.storage import Vault

    settings = load_config({"client_secret": "operator-secret-123456"}, env={})
    vault = Vault("k" * 32)
    moved = VisitorSettings(visitor_id="v", values={"token_url": "https://elsewhere.example/oauth/token"})
    assert effective_settings(settings, moved, vault)["client_secret"] == ""
    same = VisitorSettings(visitor_id="v", values={"client_id": settings["client_id"], "scope": "FB=4"})
    assert effective_settings(settings, same, vault)["client_secret"] == "operator-secret-123456"
    own = VisitorSettings(visitor_id="v", values={"token_url": "https://elsewhere.example/oauth/token"},
                          client_secret_enc=vault.encrypt("visitor-own-secret"))
    assert effective_settings(settings, own, vault)["client_secret"] == "visitor-own-secret"
    other_client = VisitorSettings(visitor_id="v", values={"client_id": "PCE_livedemo1"})
    assert effective_settings(settings, other_client, vault)["client_secret"] == ""

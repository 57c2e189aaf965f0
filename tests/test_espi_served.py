"""What the sandbox serves over ESPI, end to end: after a real flow, the
Authorization entry and the subscription feed validate against ESPI 4.0 and
are readable only with that authorization's own token."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import requests

from demo.espi.parse import parse_authorization, parse_usage_points
from demo.site.models import Run

from flow import full_flow
from test_espi_build import assert_valid, espi_schema  # noqa: F401  (fixture)


def token_of(live, page) -> dict:
    ctx = live.site_app.extensions["gbc_site"]
    with ctx.db.session() as s:
        return json.loads(ctx.vault.decrypt(s.get(Run, page.url.rsplit("/", 1)[1]).token_enc))


def get(url, token):
    return requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


@pytest.fixture
def commercial_token(live, visitor):
    return token_of(live, full_flow(visitor, live, "commercial", "account"))


def test_served_resources_validate_against_espi(live, commercial_token, espi_schema):  # noqa: F811
    tok = commercial_token
    auth = get(tok["authorizationURI"], tok["access_token"])
    assert auth.status_code == 200 and auth.headers["Content-Type"].startswith("application/atom+xml")
    assert_valid(espi_schema, auth.content)
    parsed = parse_authorization(auth.content)
    assert parsed.status == 1 and parsed.scope == tok["scope"]
    assert parsed.resource_uri.endswith("/Batch/Subscription/" + parsed.uid)
    recent = (datetime.now(UTC) - timedelta(days=3)).strftime("%Y-%m-%dT%H:%M:%SZ")   # not 2 x 70 MB of history
    for url in (parsed.resource_uri, tok["resourceURI"]):       # both path forms are served
        feed = get(f"{url}?published-min={recent}", tok["access_token"])
        assert feed.status_code == 200
        assert_valid(espi_schema, feed.content)
        meters = parse_usage_points(feed.content)
        assert len(meters) == 4 and len(set(m.id for m in meters)) == 4
        assert all(re.fullmatch(r"\d{7}", m.id) for m in meters)     # new meter uids per authorization
        assert [m.tariff_profile[:4] for m in meters] == ["B-19", "B-10", "B-1 ", "B-6 "]
        assert all(m.local_time.tz_offset == -28800 for m in meters)


def test_a_token_reads_only_its_own_authorization(live, visitor, commercial_token):
    other = token_of(live, full_flow(visitor, live, "residential", "phone"))
    mine_uid = commercial_token["authorizationURI"].rsplit("/", 1)[1]
    base = commercial_token["authorizationURI"].rsplit("/Authorization/", 1)[0]
    assert get(f"{base}/Authorization/{mine_uid}", other["access_token"]).status_code == 404
    assert get(f"{base}/Batch/Subscription/{mine_uid}", other["access_token"]).status_code == 404
    assert get(f"{base}/Batch/Subscription/{mine_uid}", commercial_token["access_token"]).status_code == 200

"""The run's timeline over real HTTP: every exchange listed with its status, and no secret —
client secret, code, verifier, state, access/refresh/client tokens — unmasked anywhere the
visitor can look (run page, run JSON, body downloads) or in the stored exchanges."""
from __future__ import annotations

import json
import re

from demo.site import client as gbc
from demo.site import exchanges as ex_mod
from demo.site.models import Run

from flow import authorize_params, callback_params, connect, enter_otp, full_flow, token_of


def _capture(monkeypatch, name: str, seen: list) -> None:
    original = getattr(gbc, name)

    def wrapper(*args, **kwargs):
        value = original(*args, **kwargs)
        seen.append(value)
        return value

    monkeypatch.setattr(gbc, name, wrapper)


def _items(page) -> list:
    return page.doc.cssselect("ol.timeline > li.timeline__item")


def test_timeline_lists_every_exchange_and_leaks_no_secret(live, visitor, monkeypatch):
    verifiers, client_tokens, tokens = [], [], []
    _capture(monkeypatch, "new_code_verifier", verifiers)
    _capture(monkeypatch, "client_credentials", client_tokens)
    _capture(monkeypatch, "exchange_code", tokens)
    page = full_flow(visitor, live, "commercial", "phone")
    run_url = page.url
    secrets = {
        "client secret": live.settings["client_secret"], "code": callback_params(visitor)["code"],
        "state": authorize_params(visitor)["state"], "verifier": verifiers[0],
        "access token": tokens[0]["access_token"], "refresh token": tokens[0]["refresh_token"],
    }
    # the tools add a rotated refresh token, a new access token and a client_access_token
    page = page.form("/tools/refresh").submit(visitor)
    page = page.form("/tools/client_credentials").submit(visitor)
    after = token_of(live, visitor.get(run_url))
    secrets.update({"new access token": after["access_token"], "new refresh token": after["refresh_token"],
                    "client token": client_tokens[0]["access_token"]})
    assert secrets["new refresh token"] != secrets["refresh token"]

    page = visitor.get(run_url)
    kinds = [(li.cssselect(".tl-kind")[0].text_content(), (li.cssselect(".tl-status") or [None])[0])
             for li in _items(page)]
    titles = [li.cssselect(".tl-title")[0].text_content() for li in _items(page)]
    assert [k for k, _ in kinds[:5]] == ["authorize", "callback", "token", "espi", "espi"]
    assert titles[2] == "Token request (authorization_code)"
    assert "Authorization/" in titles[3] and titles[4].endswith("/UsagePoint")
    statuses = [s.text_content() if s is not None else None for _, s in kinds]
    assert statuses[:5] == [None, None, "200", "200", "200"]
    assert "Token request (refresh_token)" in titles and "Token request (client_credentials)" in titles
    assert any(t.endswith("resource/Authorization") for t in titles)
    # headers, bodies, copyable commands
    token_item = page.doc.get_element_by_id("exchange-3")
    assert "Basic PCE_ccccccccc:••••" in token_item.text_content()
    assert '"access_token": "••••' in token_item.text_content()
    curl = page.text_of("ex-3-curl")
    assert curl.startswith("# export CLIENT_SECRET=") and '"$CODE"' in curl and '"$CODE_VERIFIER"' in curl

    data = visitor.get(run_url + ".json").response.json()
    assert [x["kind"] for x in data["exchanges"][:5]] == ["authorize", "callback", "token", "espi", "espi"]
    assert data["exchanges"][2]["status"] == 200 and data["exchanges"][2]["duration_ms"] >= 0

    texts = {"run page": page.text, "run JSON": json.dumps(data, ensure_ascii=False)}
    for x in data["exchanges"]:
        if x["response_body"] is not None:
            download = visitor.get(f"{run_url}/exchanges/{x['seq']}/body")
            assert download.status == 200
            assert download.response.headers["Content-Type"].startswith("text/plain")
            assert "attachment" in download.response.headers["Content-Disposition"]
            texts[f"download {x['seq']}"] = download.text
    ctx = live.site_app.extensions["gbc_site"]
    with ctx.db.session() as s:
        texts["stored exchanges"] = json.dumps([ex_mod.exchange_dict(r) for r in
                                                ex_mod.exchanges_for(s, run_url.rsplit("/", 1)[1])],
                                               ensure_ascii=False)
    for where, text in texts.items():
        for name, value in secrets.items():
            assert value and value not in text, f"the {name} appears unmasked in the {where}"


def test_declined_callback_is_recorded_and_explained(live, visitor):
    from flow import decide

    page = decide(visitor, enter_otp(visitor, connect(visitor, live, "phone", "111-111-1111")), decline=True)
    assert "Declined" in page.text_of("status")
    items = _items(page)
    assert [li.cssselect(".tl-kind")[0].text_content() for li in items] == ["authorize", "callback"]
    callback = page.doc.get_element_by_id("exchange-2")
    assert "Declined" in callback.text_content() and "What to check" in callback.text_content()


def test_downloads_are_private_and_exist_only_for_bodies(live, visitor):
    page = full_flow(visitor, live, "residential", "account")
    assert visitor.get(page.url + "/exchanges/1/body").status == 404     # a note has no body
    assert visitor.get(page.url + "/exchanges/3/body").status == 200
    other = type(visitor)()
    assert other.get(page.url + "/exchanges/3/body").status == 404
    assert visitor.get(page.url + "/exchanges/999/body").status == 404


def test_error_banner_points_at_the_failing_exchange(live, visitor, monkeypatch):
    """A token request refused by the custodian: the banner explains it and links the exchange."""
    from demo.site import runs

    original = runs.finish_run

    def wrong_secret(s, run, params, vault, timeout, rec=None):
        run.client_secret_enc = vault.encrypt("not-the-secret-at-all")
        if rec is not None:
            rec.learn("not-the-secret-at-all")
        return original(s, run, params, vault, timeout, rec)

    monkeypatch.setattr(runs, "finish_run", wrong_secret)
    page = full_flow(visitor, live, "residential", "email")
    assert "Something went wrong at the token step" in page.text_of("status")
    assert "What to check" in page.text_of("status-hint")
    link = page.doc.cssselect("#status a[href^='#exchange-']")[0].get("href")
    item = page.doc.get_element_by_id(link[1:])
    assert item.cssselect(".tl-status")[0].text_content() == "401"
    assert "Client authentication failed" in item.text_content()
    assert re.search(r"invalid_client", item.text_content())
    assert "not-the-secret-at-all" not in page.text


def test_large_bodies_are_cut_with_a_download_of_the_stored_part(live, visitor):
    """A 2-year Batch feed (megabytes, streamed) fetched through the run's recorder: the page
    shows its start and links the stored part; the JSON carries the cut body and the link."""
    page = full_flow(visitor, live, "residential", "phone")
    run_id = page.url.rsplit("/", 1)[1]
    token = token_of(live, page)
    ctx = live.site_app.extensions["gbc_site"]
    with ctx.db.session() as s:
        rec = ex_mod.recorder(ctx, s.get(Run, run_id))
    body = gbc.fetch_xml(gbc.batch_url(token["resourceURI"]), token["access_token"], step="batch",
                         timeout=30, http=rec.session())
    assert len(body) > ex_mod.STORE_LIMIT
    page = visitor.get(page.url)
    item = page.doc.get_element_by_id(f"exchange-{rec.last_seq}")
    assert "Batch/Subscription" in item.text_content() and item.cssselect(".tl-status")[0].text_content() == "200"
    link = item.cssselect(".ex-cut a[download]")[0].get("href")
    assert "were kept" in item.cssselect(".ex-cut")[0].text_content()
    download = visitor.get(live.site_url + link)
    assert download.status == 200 and len(download.response.content) >= ex_mod.STORE_LIMIT - 4
    assert download.text.startswith("<?xml") and token["access_token"] not in download.text
    data = visitor.get(page.url + ".json").response.json()
    last = data["exchanges"][-1]
    assert last["response_truncated"] and last["response_body_cut"] and last["response_size"] == len(body)
    assert len(last["response_body"]) == ex_mod.PAGE_LIMIT and last["response_body_url"] == link

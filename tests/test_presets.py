"""Shareable preset links (issue 5): demo.site.presets on its own (signing, expiry, refusals,
never a secret; hypothesis for arbitrary tokens), then /share and /p/<token> over HTTP."""
from __future__ import annotations

import base64
import json
import re
import time
import zlib
from dataclasses import fields
from datetime import UTC, date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer

from demo.site import presets
from demo.site.presets import Preset, PresetExpired, PresetInvalid

from conftest import Visitor, start_servers

KEY = "unit-test-signing-key"
NOW = 1_800_000_000.0
BASE = dict(utility="PCE", client_id="PCE_ccccccccc", function_blocks=(4, 16, 51))


def make(**overrides):
    kwargs = {**BASE, "ttl": 3600, "now": NOW, **overrides}
    return presets.make(KEY, **kwargs)


def payload_of(token: str) -> dict:
    """Decode a link's payload by hand (no key needed: signed, not encrypted)."""
    body = token.rsplit(".", 1)[0]
    compressed = body.startswith(".")
    raw = base64.urlsafe_b64decode(body.lstrip(".") + "=" * (-len(body.lstrip(".")) % 4))
    return json.loads(zlib.decompress(raw) if compressed else raw)


# -- the module --------------------------------------------------------------------------------

def test_round_trip_keeps_every_choice():
    token, preset = make(history="31536000", end_date=date(2031, 1, 2), lookup_type="email",
                         lookup_value="uapi-test-residential@example.com", noedit=True, meters_all=True,
                         presenter=True, ttl=86400)
    assert preset.expires == int(NOW) + 86400
    loaded = presets.load(KEY, token, now=NOW + 10)
    assert loaded == preset
    assert loaded.home_params() == [
        ("lookup_type", "email"), ("lookup_value", "uapi-test-residential@example.com"),
        ("function_blocks", "4"), ("function_blocks", "16"), ("function_blocks", "51"),
        ("history", "31536000"), ("end_date", "2031-01-02"), ("noedit", "y"), ("meters_all", "y")]


def test_defaults_make_a_short_link():
    token, preset = make()
    assert presets.load(KEY, token, now=NOW) == preset
    assert preset.home_params() == [("lookup_type", "none"), ("function_blocks", "4"), ("function_blocks", "16"),
                                    ("function_blocks", "51"), ("history", "")]
    assert len(token) < 200


def test_expired_link_is_refused_with_its_date():
    token, preset = make(ttl=3600)
    presets.load(KEY, token, now=NOW + 3599)
    with pytest.raises(PresetExpired) as info:
        presets.load(KEY, token, now=NOW + 3600)
    assert info.value.expired_at == datetime.fromtimestamp(int(NOW) + 3600, UTC)
    assert info.value.message == (f"This link expired on {info.value.expired_at:%Y-%m-%d %H:%M} UTC; "
                                  "ask whoever sent it for a new one.")
    assert not isinstance(info.value, PresetInvalid)


def tampered_versions(token: str):
    body, sig = token.rsplit(".", 1)
    flip = {"A": "B"}.get(body[-1], "A")
    yield body[:-1] + flip + "." + sig                       # the payload changed
    yield body + "." + ("A" if sig[0] != "A" else "B") + sig[1:]   # the signature changed
    yield body                                                # no signature
    yield token[: len(token) // 2]                            # cut short
    yield token + "x"


def test_tampered_link_is_refused():
    token, _ = make()
    for bad in tampered_versions(token):
        with pytest.raises(PresetInvalid) as info:
            presets.load(KEY, bad, now=NOW)
        assert not isinstance(info.value, PresetExpired)
        assert info.value.message == "This link is not valid: it was changed after it was made or is incomplete."


def test_a_link_signed_otherwise_is_refused():
    token, _ = make()
    with pytest.raises(PresetInvalid):
        presets.load("another-key", token, now=NOW)
    # the same key without the preset salt (as a session cookie or another signed value would be)
    data = payload_of(token)
    for other in (URLSafeSerializer(KEY), URLSafeSerializer(KEY, salt="itsdangerous")):
        with pytest.raises(PresetInvalid):
            presets.load(KEY, other.dumps(data), now=NOW)


@pytest.mark.parametrize("change", [
    {"v": 2}, {"fb": [True]}, {"fb": [5]}, {"fb": []}, {"fb": "4"}, {"x": 1.8e9 + 10}, {"x": "soon"},
    {"u": ""}, {"u": None}, {"c": "x" * 129}, {"lt": "fax", "lv": "1"}, {"lt": "phone", "lv": ""}, {"h": "-1"},
    {"e": "2031-13-01"}, {"e": 5}, {"f": "z"}, {"f": 1}, {"secret": "s3cr3t"}, {"lv": ["a"]},
])
def test_a_genuine_signature_over_a_bad_payload_is_refused(change):
    token, _ = make()
    data = {**payload_of(token), **change}
    forged = URLSafeSerializer(KEY, salt=presets.SALT).dumps(data)
    with pytest.raises(PresetInvalid):
        presets.load(KEY, forged, now=NOW)
    with pytest.raises(PresetInvalid):
        presets.load(KEY, URLSafeSerializer(KEY, salt=presets.SALT).dumps([data]), now=NOW)


def test_no_genuine_link_lives_beyond_90_days():
    token, _ = make(ttl=presets.MAX_TTL)
    presets.load(KEY, token, now=NOW)
    data = {**payload_of(token), "x": int(NOW) + presets.MAX_TTL + 3600}
    with pytest.raises(PresetInvalid):
        presets.load(KEY, URLSafeSerializer(KEY, salt=presets.SALT).dumps(data), now=NOW)


@pytest.mark.parametrize("ttl", [0, -1, presets.MAX_TTL + 1, True, 3600.0, "3600", None])
def test_lifetime_bounds(ttl):
    with pytest.raises(ValueError):
        make(ttl=ttl)


@pytest.mark.parametrize("change", [
    {"function_blocks": ()}, {"function_blocks": (4, 4)}, {"function_blocks": (3,)}, {"function_blocks": [4]},
    {"lookup_type": "phone", "lookup_value": " "}, {"lookup_type": "fax", "lookup_value": "1"},
    {"utility": ""}, {"client_id": "c" * 129}, {"history": "1y"}, {"lookup_value": "v" * 301},
    {"noedit": "yes"}, {"end_date": "2031-01-01"},
])
def test_bad_choices_cannot_make_a_link(change):
    with pytest.raises(ValueError):
        make(**change)


def test_the_type_has_no_place_for_a_secret():
    names = {f.name for f in fields(Preset)}
    assert names == {"utility", "client_id", "function_blocks", "history", "end_date", "lookup_type",
                     "lookup_value", "noedit", "meters_all", "presenter", "expires"}
    assert not any(re.search(r"secret|token|password|key", n) for n in names)
    with pytest.raises(TypeError):
        make(client_secret="s3cr3t")


def test_describe_in_plain_words():
    _, preset = make(lookup_type="phone", lookup_value="111-111-1111", noedit=True, presenter=True,
                     history="15552000")
    text = dict(presets.describe(preset))
    assert text["Customer lookup, pre-filled"] == "phone: 111-111-1111"
    assert text["Customer may edit the request"] == "no (noedit)"
    assert text["History"] == "6 months" and text["Presenter mode"] == "on"
    assert text["Data requested"].startswith("FB 4: Interval usage data")
    assert text["Link expires"] == preset.expires_at.strftime("%Y-%m-%d %H:%M UTC")


def test_expiry_choices():
    assert [t for t, _ in presets.expiry_choices(604800)] == [3600, 86400, 604800, 2592000]
    assert (172800, "2 days (configured default)") in presets.expiry_choices(172800)
    assert [t for t, _ in presets.expiry_choices(presets.MAX_TTL + 1)] == [3600, 86400, 604800, 2592000]
    assert presets.default_expiry(172800) == 172800 and presets.default_expiry(0) == 604800


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=600), st.from_regex(r"\.?[A-Za-z0-9_\-]{0,300}\.[A-Za-z0-9_\-]{0,60}",
                                                     fullmatch=True)))
def test_arbitrary_strings_are_refused_cleanly(text):
    with pytest.raises(PresetInvalid):
        presets.load(KEY, text, now=NOW)


_VALID_TOKEN = make(lookup_type="phone", lookup_value="111-111-1111")[0]


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=len(_VALID_TOKEN) - 1),
       st.sampled_from("ABCabc0123-_.=~ é"))
def test_any_one_character_change_is_refused(index, char):
    if _VALID_TOKEN[index] == char:
        char = "Z" if char != "Z" else "Y"
    bad = _VALID_TOKEN[:index] + char + _VALID_TOKEN[index + 1:]
    with pytest.raises(PresetInvalid):
        presets.load(KEY, bad, now=NOW)


# -- over HTTP ---------------------------------------------------------------------------------

API_TOKEN = "apitoken-0123456789abcdef"
WEBHOOK_SECRET = "whsec-fedcba9876543210"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    live, servers = start_servers(tmp_path_factory.mktemp("presets"), api_token=API_TOKEN,
                                  webhook_secret=WEBHOOK_SECRET)
    yield live
    for srv in servers:
        srv.shutdown()


def key_of(live) -> str:
    return live.site_app.config["SECRET_KEY"]


def session_of(visitor: Visitor, live) -> dict:
    cookie = visitor.http.cookies.get("gbc_site_session")
    if cookie is None:
        return {}
    return live.site_app.session_interface.get_signing_serializer(live.site_app).loads(cookie)


def share(visitor, live, **fields_):
    page = visitor.get(live.site_url + "/share")
    assert page.status == 200, page.text[:500]
    form = page.form("/share")
    for name, value in fields_.items():
        form.set(name, *(value if isinstance(value, (list, tuple)) else [value]))
    return form.submit(visitor)


def link_token(link: str) -> str:
    return link.rsplit("/p/", 1)[1]


def test_share_page_builds_a_link(site, visitor):
    page = share(visitor, site, lookup_type="phone", lookup_value="111-111-1111", function_blocks=["4", "51"],
                 noedit="y", presenter="y", expires_in="86400")
    assert page.status == 200, page.body_text[:800]
    link = page.text_of("preset-link")
    assert link.startswith(site.site_url + "/p/"), link
    preset = presets.load(key_of(site), link_token(link))
    assert (preset.utility, preset.client_id) == ("PCE", site.settings["client_id"])
    assert preset.function_blocks == (4, 51) and preset.lookup_value == "111-111-1111"
    assert preset.noedit and preset.presenter and not preset.meters_all
    assert abs(preset.expires - (time.time() + 86400)) < 120
    assert page.text_of("preset-expires") == preset.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    contents = page.text_of("preset-contents")
    assert "phone: 111-111-1111" in contents and "Presenter mode on" in contents
    snippet = page.text_of("embed-snippet")
    assert snippet.startswith(f'<iframe src="{link}" title="') and 'width="' in snippet and 'height="' in snippet
    assert "GBC_EMBED_ORIGINS" in page.text_of("embed")   # the allow-list itself: test_embed.py


def test_share_page_defaults(site, visitor):
    page = visitor.get(site.site_url + "/share")
    selected = page.doc.cssselect("#expires_in option[selected]")
    assert [o.get("value") for o in selected] == [str(site.settings["preset_link_ttl"])]
    assert [o.get("value") for o in page.doc.cssselect("#expires_in option")] == ["3600", "86400", "604800",
                                                                                 "2592000"]
    assert page.doc.cssselect("a[href='/']"), "the intro links to the home page"
    assert site.settings["client_id"] in page.body_text


def test_share_and_home_tick_the_same_default_blocks(site, visitor):
    """Both pages start from the configured scope's requestable blocks, 4, 16 and 51 when it has none."""
    def ticked(path):
        page = visitor.get(site.site_url + path)
        return [i.get("value") for i in page.doc.cssselect("input[name=function_blocks][checked]")]

    save_settings(visitor, site, scope="FB=1_3_4_5_13_39")
    assert ticked("/share") == ticked("/") == ["4", "39"]
    save_settings(visitor, site, scope="FB=1_3")
    assert ticked("/share") == ticked("/") == ["4", "16", "51"]


def test_share_page_says_when_no_origin_is_allowed(live, visitor):
    page = visitor.get(live.site_url + "/share")
    assert "None is set" in page.text_of("embed-origins-none")
    assert not page.doc.cssselect("#embed-origins")


def test_share_page_refuses_bad_input(site, visitor):
    page = share(visitor, site, lookup_type="phone", lookup_value="")
    assert page.status == 400 and "Enter the phone to pre-fill" in page.body_text
    assert page.text_of("preset-link") is None
    page = share(visitor, site, expires_in="999999999")
    assert page.status == 400 and page.text_of("preset-link") is None
    resp = visitor.http.post(site.site_url + "/share", data={"lookup_type": "none", "function_blocks": "4",
                                                              "expires_in": "3600"}, timeout=10)
    assert resp.status_code == 400 and "preset-link" not in resp.text   # no CSRF token


def test_a_link_never_carries_a_secret(site, visitor):
    page = share(visitor, site, lookup_type="email", lookup_value="uapi-test-commercial@example.com",
                 meters_all="y", presenter="y")
    link = page.text_of("preset-link")
    data = payload_of(link_token(link))
    assert set(data) <= {"v", "u", "c", "fb", "x", "h", "e", "lt", "lv", "f"}, data
    assert data["lv"] == "uapi-test-commercial@example.com"        # the decoding really worked
    blob = json.dumps(data) + link
    secrets = [site.settings["client_secret"], API_TOKEN, WEBHOOK_SECRET, site.settings["secret_key"]]
    assert all(s and len(s) >= 8 for s in secrets)
    for secret in secrets:
        assert secret not in blob and secret[-8:] not in blob


def test_opening_a_link_fills_in_the_home_page(site, visitor):
    token, _ = presets.make(key_of(site), ttl=3600, utility="PCE", client_id=site.settings["client_id"],
                            function_blocks=(4, 16), history="31536000", lookup_type="phone",
                            lookup_value="222-222-2222", noedit=True, meters_all=True)
    home = visitor.get(site.site_url + "/p/" + token)
    assert home.status == 200 and home.url.split("?")[0] == site.site_url + "/"
    doc = home.doc
    assert doc.cssselect("input[name=lookup_type][value=phone]")[0].checked
    assert doc.get_element_by_id("lookup_value").value == "222-222-2222"
    checked = [el.get("value") for el in doc.cssselect("input[name=function_blocks]") if el.checked]
    assert checked == ["4", "16"]
    assert doc.cssselect("select#history option[selected]")[0].get("value") == "31536000"
    assert doc.get_element_by_id("noedit").checked and doc.get_element_by_id("meters_all").checked
    assert home.text_of("scope-decoded") == \
        "FB=4_16;HistoryLength=31536000;AdditionalScope=noedit_meters-all_auth-phone-222-222-2222"
    assert "presenter" not in session_of(visitor, site)


def test_presenter_flag_sets_the_session(site, visitor):
    token, _ = presets.make(key_of(site), ttl=3600, utility="PCE", client_id=site.settings["client_id"],
                            function_blocks=(4,), presenter=True)
    resp = visitor.http.get(site.site_url + "/p/" + token, allow_redirects=False, timeout=10)
    assert resp.status_code == 303
    assert session_of(visitor, site).get("presenter") is True


def save_settings(visitor, live, **values):
    page = visitor.get(live.site_url + "/settings")
    form = page.form("/settings")
    for k, v in values.items():
        form.set(k, v)
    done = form.submit(visitor)
    assert done.status == 200, done.body_text[:500]


def visitor_values(visitor, live) -> dict:
    page = visitor.get(live.site_url + "/settings")
    return {k: page.doc.get_element_by_id(k).value for k in ("utility", "client_id", "scope")}


def test_bad_links_change_nothing(site, visitor):
    save_settings(visitor, site, client_id="MY_client", scope="FB=4_51")
    before, session_before = visitor_values(visitor, site), session_of(visitor, site)
    good, _ = presets.make(key_of(site), ttl=3600, utility="XYZ", client_id="OTHER", function_blocks=(4,),
                           presenter=True)
    expired, preset = presets.make(key_of(site), ttl=3600, now=time.time() - 7200, utility="XYZ",
                                   client_id="OTHER", function_blocks=(4,), presenter=True)
    for bad in (next(tampered_versions(good)), good[:-3], "not-a-link", "x" * 5000):
        page = visitor.get(site.site_url + "/p/" + bad)
        assert page.status == 400, (bad, page.status)
        assert "This link is not valid: it was changed after it was made or is incomplete." in page.body_text
        assert visitor.http.post(site.site_url + "/p/" + bad, data={"save": "1"}, timeout=10).status_code == 400
    page = visitor.get(site.site_url + "/p/" + expired)
    assert page.status == 410
    assert (f"This link expired on {preset.expires_at:%Y-%m-%d %H:%M} UTC; ask whoever sent it for a new one."
            in page.body_text)
    assert visitor_values(visitor, site) == before
    assert "presenter" not in session_of(visitor, site)
    assert {k: v for k, v in session_of(visitor, site).items() if k != "_flashes"} == \
        {k: v for k, v in session_before.items() if k != "_flashes"}


def test_another_client_id_asks_before_saving(site, visitor):
    save_settings(visitor, site, scope="FB=4_51")           # something of the visitor's own to keep
    token, _ = presets.make(key_of(site), ttl=3600, utility="PCE", client_id="PARTNER_client",
                            function_blocks=(4,), lookup_type="account", lookup_value="111111111-1", presenter=True)
    page = visitor.get(site.site_url + "/p/" + token)
    assert page.status == 200 and page.url == site.site_url + "/p/" + token
    rows = [[c.text_content().strip() for c in tr] for tr in page.doc.cssselect("#preset-changes tbody tr")]
    assert rows == [["client_id", site.settings["client_id"], "PARTNER_client"]]
    note = page.text_of("secret-note")
    assert "PARTNER_client" in note and "Settings" in note
    assert site.settings["client_secret"] not in page.text
    assert visitor_values(visitor, site)["client_id"] == site.settings["client_id"]   # nothing saved yet
    assert "presenter" not in session_of(visitor, site)

    # without the CSRF token: refused, nothing saved
    resp = visitor.http.post(site.site_url + "/p/" + token, data={"save": "1"}, timeout=10)
    assert resp.status_code == 400
    assert visitor_values(visitor, site)["client_id"] == site.settings["client_id"]

    home = page.form("/p/").submit(visitor, button="save")
    assert home.status == 200 and home.url.startswith(site.site_url + "/?")
    assert home.doc.get_element_by_id("lookup_value").value == "111111111-1"
    assert "Settings saved from the link" in home.body_text and "PARTNER_client" in home.body_text
    assert visitor_values(visitor, site) == {"utility": "PCE", "client_id": "PARTNER_client", "scope": "FB=4_51"}
    assert session_of(visitor, site).get("presenter") is True


def test_keeping_my_settings_only_fills_in_the_form(site, visitor):
    token, _ = presets.make(key_of(site), ttl=3600, utility="SDGE", client_id=site.settings["client_id"],
                            function_blocks=(16,), lookup_type="phone", lookup_value="111-111-1111")
    page = visitor.get(site.site_url + "/p/" + token)
    rows = [[c.text_content().strip() for c in tr] for tr in page.doc.cssselect("#preset-changes tbody tr")]
    assert rows == [["Utility", "PCE", "SDGE"]]
    assert page.text_of("secret-note") is None        # same client_id: the secret question does not arise
    home = page.form("/p/").submit(visitor, button="keep")
    assert home.status == 200 and home.doc.get_element_by_id("lookup_value").value == "111-111-1111"
    assert visitor_values(visitor, site)["utility"] == "PCE"


def test_embed_snippet_escapes_its_attributes():
    from demo.site.share_views import embed_snippet

    snippet = embed_snippet("https://demo.example.com/p/abc", 'Acme "Energy" <Partners> & Co')
    assert snippet.startswith('<iframe src="https://demo.example.com/p/abc" '
                              'title="Acme &quot;Energy&quot; &lt;Partners&gt; &amp; Co: Green Button Connect demo" ')
    assert snippet.count('"') % 2 == 0 and "<Partners>" not in snippet


def test_secret_note_says_where_the_secret_comes_from():
    from demo.site.share_views import secret_note

    saved = secret_note("B", "A", "s3cret-value-1234")
    assert "1234" in saved and "s3cret-value-1234" not in saved and "B" in saved
    assert secret_note("A", "A", None) == "The configured client secret applies: it belongs to A."
    # the configured secret never goes to a token endpoint the visitor typed (runs.effective_settings)
    own = secret_note("A", "A", None, own_token_url=True)
    assert "applies" not in own and "Settings" in own
    other = secret_note("B", "A", None)
    assert "Links never carry secrets" in other and "client secret of B" in other

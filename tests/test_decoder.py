"""The /decode page: scopes raw and percent-encoded, query strings and whole authorization or
callback URLs are decoded, checked and explained; problems are located by character offsets and
highlighted; secrets are masked and kept out of share links; bad input is a 400/422, never a 500."""
from __future__ import annotations

from urllib.parse import parse_qs, quote, urlsplit

import pytest

from demo.site.scope_view import MAX_INPUT, DecodeError, decode, segments

AUTHORIZE = ("http://127.0.0.1:5001/oauth/authorize?response_type=code&client_id=PCE_ccccccccc"
             "&redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcallback"
             "&scope=FB%3D4_16_51%3BAdditionalScope%3Dauth-email-uapi-test-residential%2540example.com"
             "&state=Zm9vYmFyYmF6cXV4cXV1eHh5enp5&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
             "&code_challenge_method=S256")


def marked(decoded) -> list[tuple[str, str]]:
    return [(text, css) for text, css in decoded.segments() if css]


# --- the logic, without HTTP ------------------------------------------------------------------

def test_raw_scope_is_explained():
    d = decode("FB=4_16_51;HistoryLength=34128000;AdditionalScope=auth-phone-1111111111")
    assert d.kind == "scope" and d.ok and d.scope.decoded_from is None
    names = [e.name for e in d.scope.explanations]
    assert names == ["FB", "HistoryLength", "AdditionalScope"]
    assert "13.0 months" in d.scope.explanations[1].meaning
    assert d.scope.encoded == quote(d.scope.text, safe="")


def test_percent_encoded_scope_is_decoded_once():
    d = decode("FB%3D4_16_51%3BAdditionalScope%3Dauth-email-uapi-test-residential%2540example.com")
    assert d.ok and d.scope.decoded_from == "percent-encoding"
    assert d.scope.text == "FB=4_16_51;AdditionalScope=auth-email-uapi-test-residential%40example.com"
    assert d.scope.scope.lookup == ("email", "uapi-test-residential@example.com")


@pytest.mark.parametrize("text, bad", [
    ("FB=4_16_51;HistoryLength=12x", "12x"),
    ("FB=4_x_51", "x"),
    ("FB=4;AdditionalScope=noedit_auth-fax-5551234", "fax"),
    ("FB=4;;HistoryLength=5", ";"),
    ("  FB=4_100", "100"),
])
def test_scope_errors_point_at_the_segment(text, bad):
    d = decode(text)
    assert not d.ok and d.scope.error
    assert marked(d) == [(bad, "is-error")]
    pieces = d.scope.segments()
    assert "".join(t for t, _ in pieces) == d.scope.text
    assert [t for t, css in pieces if css] == [bad]


def test_encoded_scope_errors_point_into_the_decoded_text():
    d = decode(quote("FB=4;PreferredAuthEndDate=soon", safe=""))
    assert d.scope.decoded_from and d.scope.error.startswith("PreferredAuthEndDate must be a Unix timestamp")
    assert [t for t, css in d.scope.segments() if css] == ["soon"]


def test_an_empty_value_is_marked_where_it_is_missing():
    d = decode("FB=4;AdditionalScope=ongoing-")
    pieces = d.scope.segments()
    assert ("", "is-error is-empty") in pieces


def test_errors_without_a_place_are_still_errors():
    d = decode("HistoryLength=5")
    assert not d.ok and "FB is required" in d.scope.error and marked(d) == []


def test_whole_authorization_url():
    d = decode(AUTHORIZE, client_id="PCE_ccccccccc", redirect_uri="http://127.0.0.1:5000/callback")
    assert d.kind == "url" and d.purpose == "authorize" and d.ok, (d.problems, [(p.name, p.note) for p in d.params])
    assert d.base == "http://127.0.0.1:5001/oauth/authorize"
    by = {p.name: p for p in d.params}
    assert list(by) == ["response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge",
                        "code_challenge_method"]
    assert by["redirect_uri"].value == "http://127.0.0.1:5000/callback"
    assert by["client_id"].note == "Matches your settings."
    assert by["scope"].value == "FB=4_16_51;AdditionalScope=auth-email-uapi-test-residential%40example.com"
    assert d.scope.scope.lookup == ("email", "uapi-test-residential@example.com")
    assert by["state"].sensitive and by["state"].shown == "••••enp5" and not by["code_challenge"].sensitive
    assert d.sensitive == ["state"]
    assert any("state" in w for w in d.warnings)
    share = d.share_input
    assert "Zm9vYmFy" not in share and "state={state}" in share
    assert decode(share).ok        # the redacted link still decodes


def test_url_problems_are_flagged_where_they_are():
    url = ("https://utility.example/oauth/authorize?response_type=token&client_id=PCE_other&scope=FB%3D4_x"
           "&client_secret=hunter2-hunter2&utm_source=mail&code_challenge=short&scope=FB%3D4")
    d = decode(url, client_id="PCE_ccccccccc")
    assert not d.ok
    status = {(p.name, p.value): p.status for p in d.params}
    assert status[("response_type", "token")] == "error"
    assert status[("client_id", "PCE_other")] == "warning"
    assert status[("client_secret", "hunter2-hunter2")] == "error"
    assert status[("utm_source", "mail")] == "unknown"
    assert status[("code_challenge", "short")] == "error"
    assert status[("scope", "FB=4_x")] == "error"            # bad and repeated
    assert status[("scope", "FB=4")] == "error"              # repeated
    pieces = marked(d)
    assert ("response_type=token", "is-error") in pieces
    assert ("utm_source=mail", "is-unknown") in pieces
    assert ("client_secret=••••ter2", "is-error") in pieces   # flagged, and masked even so
    assert all("hunter2-hunter2" not in text for text, _ in d.segments())
    assert "hunter2" not in d.share_input
    assert any("code_challenge_method" in w for w in d.warnings)


def test_missing_required_parameters():
    d = decode("https://utility.example/oauth/authorize?scope=FB%3D4")
    assert any("response_type is missing" in p for p in d.problems)
    assert any("client_id is missing" in p for p in d.problems)
    assert any("No state" in w for w in d.warnings) and any("PKCE" in w for w in d.warnings)
    assert not decode("https://utility.example/oauth/authorize").ok
    assert not decode("ftp://utility.example/oauth/authorize?response_type=code&client_id=x").ok


def test_callback_url_is_read_as_a_callback():
    d = decode("http://127.0.0.1:5000/callback?code=abcdefghijklmnop1234&state=qrstuvwxyzqrstuvwxyz")
    assert d.purpose == "callback" and d.ok
    assert d.sensitive == ["code", "state"]
    assert all("abcdefghijklmnop1234" not in text for text, _ in d.segments())
    assert d.share_input == "http://127.0.0.1:5000/callback?code={code}&state={state}"
    declined = decode("http://127.0.0.1:5000/callback?error=access_denied&state=s")
    assert "declined" in next(p for p in declined.params if p.name == "error").meaning


def test_query_string_and_scope_parameter_alone():
    d = decode("?response_type=code&client_id=PCE_ccccccccc&scope=FB%3D4_16")
    assert d.kind == "query" and d.scope.scope.function_blocks == (4, 16)
    alone = decode("scope=FB%3D4_16_51")
    assert alone.kind == "query" and alone.scope.scope.function_blocks == (4, 16, 51)


def test_input_caps():
    with pytest.raises(DecodeError):
        decode("   ")
    with pytest.raises(DecodeError, match="at most"):
        decode("FB=4;" + "x" * MAX_INPUT)
    many = "https://u.example/a?" + "&".join(f"p{i}=1" for i in range(150))
    assert any("More than 100 parameters" in p for p in decode(many).problems)


def test_segments_cover_the_text():
    assert segments("abcdef", [(2, 4, "x")]) == [("ab", None), ("cd", "x"), ("ef", None)]
    assert segments("abc", [(1, 1, "x")]) == [("a", None), ("", "x is-empty"), ("bc", None)]
    assert segments("abc", [(5, 9, "x")]) == [("abc", None)]


# --- the page ---------------------------------------------------------------------------------

def test_page_without_input(live, visitor):
    page = visitor.get(live.site_url + "/decode")
    assert page.status == 200 and page.doc.get_element_by_id("decode-form") is not None
    assert 'href="/decode"' in page.text and 'aria-current="page"' in page.text
    home = visitor.get(live.site_url + "/")
    assert home.doc.xpath("//nav//a[@href='/decode']")


def test_get_decodes_a_shared_link(live, visitor):
    page = visitor.get(live.site_url + "/decode", params={"input": "FB=4_16_51;HistoryLength=34128000"})
    assert page.status == 200
    assert "Valid." in page.text_of("decode-verdict")
    assert "13.0 months" in page.text_of("decode-explained")
    assert page.text_of("decode-encoded") == "FB%3D4_16_51%3BHistoryLength%3D34128000"


def test_post_with_csrf_and_highlighted_error(live, visitor):
    form = visitor.get(live.site_url + "/decode").form("/decode")
    page = form.set("input", "FB=4_16_51;AdditionalScope=auth-fax-5551234").submit(visitor)
    assert page.status == 422
    marks = page.doc.cssselect("#decode-marked mark.is-error")
    assert [m.text_content() for m in marks] == ["fax"]
    assert "Unknown lookup type 'fax'" in page.text_of("decode-scope-error")
    resp = visitor.http.post(live.site_url + "/decode", data={"input": "FB=4"}, timeout=10)
    assert resp.status_code == 400          # no CSRF token


def test_whole_url_on_the_page_masks_the_state(live, visitor):
    form = visitor.get(live.site_url + "/decode").form("/decode")
    page = form.set("input", AUTHORIZE).submit(visitor)
    assert page.status == 200, page.body_text[:500]
    assert "Zm9vYmFyYmF6cXV4cXV1eHh5enp5" not in page.text
    rows = {tr.get("data-param"): tr for tr in page.doc.cssselect("#decode-params tbody tr")}
    assert set(rows) >= {"response_type", "client_id", "redirect_uri", "scope", "state", "code_challenge"}
    assert "uapi-test-residential@example.com" in page.text_of("decode-explained")
    share = page.doc.get_element_by_id("decode-share").get("href")
    assert parse_qs(urlsplit(share).query)["input"][0].endswith("state={state}&code_challenge=E9Melhoa2Ow"
                                                               "vFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256")
    assert "replaces state" in page.body_text
    textarea = page.doc.get_element_by_id("decode-input").text_content()
    assert "Zm9vYmFy" not in textarea and "state={state}" in textarea


def test_bad_input_is_never_a_server_error(live, visitor):
    for text in ("", "%", "%%3D", "http://[::1", "?&&&", "=;=;=", "\x00\x01", "FB=" + "4_" * 3000,
                 "http://a/?scope=%E0%A4%A", "😀=😀"):
        resp = visitor.http.get(live.site_url + "/decode", params={"input": text}, timeout=10)
        assert resp.status_code in (200, 400, 422), (text, resp.status_code)
    huge = visitor.http.get(live.site_url + "/decode", params={"input": "FB=4;" + "x" * 9000}, timeout=10)
    assert huge.status_code == 400 and "at most 8,000" in huge.text

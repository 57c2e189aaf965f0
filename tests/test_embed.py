"""Embedding both apps in another site's page (issue 5): CSP frame-ancestors from embed_origins,
X-Frame-Options only when nobody may frame, session cookies that survive in a third-party frame
(SameSite=None; Secure; Partitioned), the start-up warning, and the whole flow clicked inside an
iframe of an allowed origin in Debian's Chromium; frames of any other origin are refused.

The framing page is served from http://localhost:<port> (tests/embedding.py) while the apps are on
http://127.0.0.1: another *site*, so their cookies really are third-party in the frame."""
from __future__ import annotations

import re

import pytest
from browsing import open_page, shot
from embedding import FRAME_ID, serve_embedding_page

from demo.cli import startup_warnings
from demo.config import load_config
from demo.web import frame_ancestors, insecure_embedding, session_cookie_config

from conftest import Page, Visitor, start_servers

OTHER_ALLOWED = "https://sales.example.com"
READ_MS = 1_200   # a person reads each page before clicking on (see test_browser.py)


@pytest.fixture(scope="module")
def pages():
    """Two framing pages on localhost: one whose origin is allowed, one whose origin is not."""
    allowed = serve_embedding_page(page_title="Sales deck (allowed)")
    other = serve_embedding_page(page_title="Someone else's page")
    yield allowed, other
    allowed.stop()
    other.stop()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, pages):
    allowed, _other = pages
    live, servers = start_servers(tmp_path_factory.mktemp("embed"), embed_origins=[allowed.origin, OTHER_ALLOWED])
    allowed.iframe_url = live.site_url + "/"
    yield live
    for srv in servers:
        srv.shutdown()


def csp_directive(response, name: str) -> str:
    for part in response.headers["Content-Security-Policy"].split(";"):
        words = part.split()
        if words and words[0] == name:
            return " ".join(words[1:])
    raise AssertionError(f"no {name} in {response.headers['Content-Security-Policy']}")


def session_cookie(response, role: str) -> list[str]:
    """The attributes of the app's Set-Cookie, lower-cased (name=value first)."""
    for header in response.raw.headers.getlist("Set-Cookie"):
        if header.startswith(f"gbc_{role}_session="):
            return [a.strip().lower() for a in header.split(";")]
    raise AssertionError(f"no gbc_{role}_session cookie set by {response.url}: {response.headers}")


def first_pages(live):
    """A page of each app that starts a session (both carry a form with a CSRF token)."""
    v = Visitor()
    site = v.http.get(live.site_url + "/", timeout=10)
    sandbox = v.http.get(live.sandbox_url + "/dashboard/sign-in", timeout=10)
    return {"site": site, "sandbox": sandbox}


# -- HTTP level -----------------------------------------------------------------------------------

def test_default_refuses_every_frame_and_keeps_lax_cookies(live):
    assert live.settings["embed_origins"] == []
    for role, resp in first_pages(live).items():
        assert resp.status_code == 200, (role, resp.text[:300])
        assert csp_directive(resp, "frame-ancestors") == "'none'", role
        assert resp.headers["X-Frame-Options"] == "DENY", role
        attrs = session_cookie(resp, role)
        assert "samesite=lax" in attrs and "httponly" in attrs, (role, attrs)
        assert "secure" not in attrs and "partitioned" not in attrs, (role, attrs)   # plain http here


def test_embedding_lists_the_origins_and_drops_x_frame_options(embedded, pages):
    allowed, other = pages
    for role, resp in first_pages(embedded).items():
        assert resp.status_code == 200, (role, resp.text[:300])
        ancestors = csp_directive(resp, "frame-ancestors").split()
        assert ancestors == [allowed.origin, OTHER_ALLOWED], role
        assert other.origin not in ancestors and "'none'" not in ancestors
        assert "X-Frame-Options" not in resp.headers, role
        # the rest of the policy is unchanged
        assert csp_directive(resp, "script-src") == "'self'" and csp_directive(resp, "base-uri") == "'none'"


def test_embedding_cookies_are_third_party_ready(embedded):
    for role, resp in first_pages(embedded).items():
        attrs = session_cookie(resp, role)
        assert {"samesite=none", "secure", "partitioned", "httponly"} <= set(attrs), (role, attrs)


def test_cookie_config_follows_the_setting():
    plain = {"embed_origins": []}
    assert session_cookie_config(plain, "http://127.0.0.1:5000") == {
        "SESSION_COOKIE_SAMESITE": "Lax", "SESSION_COOKIE_SECURE": False, "SESSION_COOKIE_PARTITIONED": False}
    assert session_cookie_config(plain, "https://demo.example.com")["SESSION_COOKIE_SECURE"] is True
    framed = {"embed_origins": ["https://sales.example.com"]}
    assert session_cookie_config(framed, "http://127.0.0.1:5000") == {
        "SESSION_COOKIE_SAMESITE": "None", "SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_PARTITIONED": True}
    assert frame_ancestors(plain) == "'none'"
    assert frame_ancestors({"embed_origins": ["https://a.example", "http://b.example:8080"]}) == \
        "https://a.example http://b.example:8080"


def test_env_list_of_origins():
    settings = load_config({"instance_path": "/nonexistent"},
                           env={"GBC_EMBED_ORIGINS": "https://sales.example.com, http://localhost:8080"})
    assert settings["embed_origins"] == ["https://sales.example.com", "http://localhost:8080"]
    assert frame_ancestors(settings) == "https://sales.example.com http://localhost:8080"


@pytest.mark.parametrize(("site_url", "sandbox_url", "origins", "warned"), [
    ("http://demo.example.com", "http://demo.example.com:5001", ["https://sales.example.com"],
     ["http://demo.example.com", "http://demo.example.com:5001"]),
    ("https://demo.example.com", "http://10.0.0.5:5001", ["https://sales.example.com"], ["http://10.0.0.5:5001"]),
    ("http://127.0.0.1:5000", "http://localhost:5001", ["https://sales.example.com"], []),
    ("http://[::1]:5000", "http://app.localhost:5001", ["https://sales.example.com"], []),
    ("https://demo.example.com", "https://sandbox.example.com", ["https://sales.example.com"], []),
    ("http://demo.example.com", "http://demo.example.com:5001", [], []),   # no embedding: Lax, as before
])
def test_startup_warning_for_plain_http_off_loopback(site_url, sandbox_url, origins, warned):
    settings = {"site_url": site_url, "sandbox_url": sandbox_url, "sandbox": True, "embed_origins": origins}
    assert insecure_embedding(settings) == warned
    warnings = startup_warnings(settings)
    assert len(warnings) == len(warned)
    for url, text in zip(warned, warnings, strict=True):
        assert url in text and "https" in text


def test_share_page_shows_the_allow_list(embedded, pages):
    page = Visitor().get(embedded.site_url + "/share")
    assert page.status == 200
    listed = [li.text_content() for li in page.doc.cssselect("#embed-origins li")]
    assert listed == [pages[0].origin, OTHER_ALLOWED]
    assert not page.doc.cssselect("#embed-origins-none")
    assert page.text_of("embed-snippet").startswith(f'<iframe src="{embedded.site_url}/" title="')


def test_startup_warning_ignores_a_sandbox_that_is_not_started():
    settings = {"site_url": "https://demo.example.com", "sandbox_url": "http://demo.example.com:5001",
                "sandbox": False, "embed_origins": ["https://sales.example.com"]}
    assert startup_warnings(settings) == []


def test_framed_post_without_cookie_says_the_browser_blocked_it(embedded):
    """A browser that keeps no cookie in frames (Safari) gets an explanation, not 'form expired'."""
    import requests

    data = {"csrf_token": "x", "lookup_type": "none", "function_blocks": "4"}
    framed = requests.post(embedded.site_url + "/connect", data=data, headers={"Sec-Fetch-Dest": "iframe"},
                           timeout=10, allow_redirects=False)
    assert framed.status_code == 400
    text = Page(framed).body_text
    assert "blocked this demo's cookie" in text and embedded.site_url in text, text
    top = requests.post(embedded.site_url + "/connect", data=data, headers={"Sec-Fetch-Dest": "document"},
                        timeout=10, allow_redirects=False)
    assert top.status_code == 400 and "This form has expired" in Page(top).body_text


def test_default_post_without_cookie_is_the_usual_csrf_error(live):
    import requests

    resp = requests.post(live.site_url + "/connect", data={"lookup_type": "none"},
                         headers={"Sec-Fetch-Dest": "iframe"}, timeout=10, allow_redirects=False)
    assert resp.status_code == 400 and "This form has expired" in Page(resp).body_text


# -- in Chromium ----------------------------------------------------------------------------------

@pytest.fixture
def tab(browser):
    page = open_page(browser, height=1000)
    yield page
    page.context.close()


def the_frame(page):
    handle = page.wait_for_selector("#" + FRAME_ID, state="attached")
    return handle.content_frame()


@pytest.mark.browser
def test_whole_flow_inside_a_frame_of_an_allowed_origin(embedded, pages, tab):
    from playwright.sync_api import expect

    allowed, _ = pages
    site, sandbox = embedded.site_url, embedded.sandbox_url
    tab.goto(allowed.url)
    expect(tab.get_by_role("heading", level=1)).to_have_text("Sales deck (allowed)")
    frame = tab.frame_locator("#" + FRAME_ID)
    expect(tab.locator("#" + FRAME_ID)).to_have_attribute("title", "GBC demo")

    # 1. The site in the frame: pick the residential phone test identifier, Connect.
    chip = frame.get_by_role("link", name="residential by phone: 111-111-1111")
    expect(chip).to_have_count(1)
    tab.wait_for_timeout(READ_MS)
    chip.click()
    expect(frame.get_by_label("Lookup value")).to_have_value("111-111-1111")
    expect(frame.locator("#scope-decoded")).to_have_text("FB=4_16_51;AdditionalScope=auth-phone-111-111-1111")
    shot(tab, "embed-01-home.png")
    frame.locator("button#connect").click()

    # 2. The sandbox (another origin) in the same frame: passcode.
    inner = the_frame(tab)
    inner.wait_for_url(re.compile(re.escape(sandbox) + r"/.*authorize/verify$"))
    passcode = frame.locator("#test-passcode")
    expect(passcode).to_be_visible()
    code = passcode.inner_text().strip()
    assert re.fullmatch(r"\d{6}", code), code
    frame.get_by_label("Passcode").fill(code)
    shot(tab, "embed-02-passcode.png")
    tab.wait_for_timeout(READ_MS)
    frame.get_by_role("button", name="Continue").click()
    inner.wait_for_url(re.compile(re.escape(sandbox) + r"/.*authorize/consent$"))

    # 3. Consent, then back on the site's run page, still in the frame.
    expect(frame.get_by_role("heading", level=1)).to_contain_text("Test Company")
    shot(tab, "embed-03-consent.png")
    tab.wait_for_timeout(READ_MS)
    frame.get_by_role("button", name="Authorize").click()
    inner.wait_for_url(re.compile(re.escape(site) + r"/runs/[\w-]+$"))
    expect(frame.locator("#status")).to_contain_text("Authorized")
    rows = frame.locator("#meters tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td").first).to_have_text(re.compile(r"^\d{7}$"))
    shot(tab, "embed-04-run.png")

    # the embedding page itself never moved, and the apps' cookies live in its partition
    assert tab.url == allowed.url
    jar = {c["name"]: c for c in tab.context.cookies()}
    for name in ("gbc_site_session", "gbc_sandbox_session"):
        assert name in jar, jar.keys()
        assert jar[name]["sameSite"] == "None" and jar[name]["secure"], jar[name]
        assert jar[name].get("partitionKey") == "http://localhost", jar[name]

    problems = tab.problems
    assert not problems.csp, "CSP violations:\n" + "\n".join(problems.csp)
    assert not problems.page_errors, "uncaught JavaScript errors:\n" + "\n".join(problems.page_errors)
    assert not problems.errors, "console errors during the flow:\n" + "\n".join(problems.errors)


def assert_refused(tab, embedding_url: str, app_url: str, expected_directive: str) -> None:
    from playwright.sync_api import expect

    tab.goto(embedding_url)
    frame = the_frame(tab)
    # Chromium replaces a refused frame by its own error page ("… refused to connect")
    expect(tab.frame_locator("#" + FRAME_ID).locator("body")).to_contain_text("refused to connect")
    assert frame.url.startswith("chrome-error://"), frame.url
    body = frame.inner_text("body")
    assert "Test Company" not in body and "SANDBOX" not in body, body
    refusals = [e for e in tab.problems.errors if "frame-ancestors" in e and app_url.rstrip("/") in e]
    assert refusals, f"no frame-ancestors console error for {app_url}: {tab.problems.errors}"
    assert expected_directive in refusals[0], refusals[0]


@pytest.mark.browser
@pytest.mark.parametrize("app", ["site", "sandbox"])
def test_frame_of_another_origin_is_refused(embedded, pages, tab, app):
    allowed, other = pages
    url = (embedded.site_url if app == "site" else embedded.sandbox_url) + "/"
    assert_refused(tab, other.url_for(url), url, f'"frame-ancestors {allowed.origin} {OTHER_ALLOWED}"')


@pytest.mark.browser
@pytest.mark.parametrize("app", ["site", "sandbox"])
def test_frame_is_refused_by_default(live, pages, tab, app):
    allowed, _ = pages
    url = (live.site_url if app == "site" else live.sandbox_url) + "/"
    assert_refused(tab, allowed.url_for(url), url, "\"frame-ancestors 'none'\"")


@pytest.mark.parametrize("origins", [[], ["https://sales.example.com"]])
def test_forms_work_over_https_without_a_referer(tmp_path, origins):
    """Referrer-Policy: no-referrer means browsers send no Referer, even to the same origin; the
    CSRF check must not need one (in production, and so in a frame, the apps run over https)."""
    import re as re_

    from demo.site import create_app

    settings = load_config({"instance_path": str(tmp_path), "secret_key": "k", "site_url": "https://demo.example.com",
                            "embed_origins": origins}, env={})
    client = create_app(settings).test_client()
    page = client.get("/settings", base_url="https://demo.example.com")
    assert page.headers["Referrer-Policy"] == "no-referrer"
    cookie = page.headers["Set-Cookie"].lower()
    assert "secure" in cookie and ("partitioned" in cookie) == bool(origins)
    token = re_.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page.text).group(1)
    done = client.post("/settings/reset", data={"csrf_token": token}, base_url="https://demo.example.com")
    assert done.status_code == 303, done.text[:300]
    forged = client.post("/settings/reset", data={"csrf_token": "forged"}, base_url="https://demo.example.com")
    assert forged.status_code == 400

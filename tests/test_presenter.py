"""Presenter mode, branding, the step indicator and "Start over" on the demo site, over real HTTP
(both apps on their own ports), plus one flow clicked in Chromium in presenter mode."""
from __future__ import annotations

import logging
import re
import struct
import time
import zlib
from urllib.parse import urljoin

import pytest

from demo.config import load_config
from demo.site import branding
from demo.site import create_app as create_site
from demo.site.integrator import IntegratorData, IntegratorSettings, WebhookEvent
from demo.site.models import Exchange, Run, VisitorSettings

from conftest import Visitor, start_servers
from flow import connect, decide, enter_otp, full_flow


def _png(width: int = 8, height: int = 8) -> bytes:
    """A real (decodable) PNG: one solid colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    raw = b"".join(b"\x00" + b"\x0f\x6b\x6b" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


PNG = _png()
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10"><rect width="10" height="10"/></svg>'
ACCENT = "#ffd23f"      # too light for text on white: must be darkened
COMPANY = "Acme <Solar> & Co"
WELCOME = "Welcome to <script>alert(1)</script> our demo"

TECHNICAL_RUN = ("scope", "json-api", "events", "tools", "timeline", "token-json")


@pytest.fixture(scope="module")
def presenting(tmp_path_factory):
    """Both apps with presenter mode on for everyone, and branding."""
    tmp = tmp_path_factory.mktemp("presenter")
    logo = tmp / "logo.png"
    logo.write_bytes(PNG)
    live, servers = start_servers(tmp, presenter=True, brand_accent=ACCENT, brand_welcome=WELCOME,
                                  company_name=COMPANY, brand_logo=str(logo))
    yield live
    for srv in servers:
        srv.shutdown()


# --- helpers ------------------------------------------------------------------------------------

def by_id(page, element_id):
    found = page.doc.get_element_by_id(element_id, None)
    assert found is not None, f"#{element_id} missing on {page.url}"
    return found


def is_hidden(el) -> bool:
    """True when the element or an ancestor has the hidden attribute."""
    while el is not None:
        if el.get("hidden") is not None:
            return True
        el = el.getparent()
    return False


def is_presenter(page) -> bool:
    return "is-presenter" in (page.doc.getroottree().getroot().get("class") or "")


def post_form(visitor, page, form_id, **fields):
    """Submit the form with this id (its hidden fields, CSRF included), overriding ``fields``."""
    form = by_id(page, form_id)
    data = {el.get("name"): el.get("value") or "" for el in form.inputs if el.get("name")}
    data.update(fields)
    return visitor.request("POST", urljoin(page.url, form.get("action")), data=data)


def steps(page):
    items = page.doc.cssselect("ol.demo-steps > li")
    return [(" ".join(li.text_content().split()), li.get("aria-current"), li.get("class") or "") for li in items]


def db(live):
    return live.site_app.extensions["gbc_site"].db


def run_id_of(page) -> str:
    m = re.search(r"/runs/([\w-]+)$", page.url)
    assert m, page.url
    return m.group(1)


# --- the switch -----------------------------------------------------------------------------------

def test_off_by_default_and_the_normal_mode_stays(live, visitor):
    home = visitor.get(live.site_url + "/")
    assert home.status == 200 and not is_presenter(home)
    assert by_id(home, "presenter-toggle").get("aria-pressed") == "false"
    assert home.doc.cssselect("ol.demo-steps") == [] and home.doc.get_element_by_id("technical-toggle", None) is None
    for panel in ("step-review", "scope-decoded", "authorization-url", "test-identifiers", "connect"):
        assert not is_hidden(by_id(home, panel)), panel
    assert home.doc.cssselect("[data-technical]") == []
    assert "/brand.css" not in home.text
    nav = [a.text_content().strip() for a in home.doc.cssselect("nav.site-nav a")]
    for item in ("Home", "Runs", "Decode", "OTP test", "Share", "Settings"):
        assert item in nav
    assert home.doc.cssselect("header form#start-over-form") == []


def test_toggle_needs_csrf_then_switches_and_comes_back(live, visitor):
    home = visitor.get(live.site_url + "/?lookup_type=phone&lookup_value=111-111-1111&function_blocks=4")
    refused = visitor.request("POST", live.site_url + "/presenter", data={"state": "on", "next": "/runs"})
    assert refused.status == 400 and "expired" in refused.text
    assert not is_presenter(visitor.get(live.site_url + "/"))

    on = post_form(visitor, home, "presenter-form")
    assert on.status == 200 and is_presenter(on)
    assert on.response.history[0].status_code == 303
    assert on.url.endswith("/?lookup_type=phone&lookup_value=111-111-1111&function_blocks=4")  # back where it was
    assert by_id(on, "presenter-toggle").get("aria-pressed") == "true"
    nav = [a.text_content().strip() for a in on.doc.cssselect("nav.site-nav a")]
    assert nav == ["Home", "Runs"]

    off = post_form(visitor, on, "presenter-form")
    assert not is_presenter(off)
    bad = post_form(visitor, off, "presenter-form", state="maybe")
    assert bad.status == 400


def test_toggle_never_sends_the_visitor_off_site(live, visitor):
    home = visitor.get(live.site_url + "/")
    for target in ("//evil.example/", "https://evil.example/", "/\\evil.example", "runs"):
        page = post_form(visitor, home, "presenter-form", state="off", next=target)
        assert page.url == live.site_url + "/", target
    # browsers drop tabs and newlines from URLs ("/\t/x" is "//x"), and read "\" as "/"
    for target in ("/\t/evil.example", "/\n/evil.example", "/\r\n/evil.example", "\\/evil.example",
                   " //evil.example", "/\\/evil.example", "javascript:alert(1)", "///evil.example"):
        resp = visitor.http.post(live.site_url + "/presenter", allow_redirects=False, timeout=10,
                                 data={"csrf_token": by_id(home, "presenter-form").inputs["csrf_token"].value,
                                       "state": "off", "next": target})
        assert resp.status_code == 303 and resp.headers["Location"] in ("/", live.site_url + "/"), target


def test_config_turns_it_on_for_everyone_and_each_visitor_may_switch(presenting, visitor):
    home = visitor.get(presenting.site_url + "/")
    assert is_presenter(home)
    other = Visitor()
    assert is_presenter(other.get(presenting.site_url + "/"))
    off = post_form(visitor, home, "presenter-form")
    assert not is_presenter(off)
    assert is_presenter(other.get(presenting.site_url + "/"))     # only this visitor's choice
    other.http.close()


# --- home page in presenter mode --------------------------------------------------------------------

def test_home_is_calm_branded_and_hides_the_technical_panels(presenting, visitor):
    home = visitor.get(presenting.site_url + "/")
    assert is_presenter(home)
    # branding, escaped
    assert by_id(home, "brand-logo").get("src") == "/brand/logo"
    assert home.doc.cssselect(".site-brand__name")[0].text_content() == COMPANY
    assert "Acme &lt;Solar&gt; &amp; Co" in home.text
    assert by_id(home, "welcome").text_content() == WELCOME
    assert "<script>alert(1)" not in home.text
    assert '<link rel="stylesheet" href="/brand.css">' in home.text
    # the customers as large choices, one Connect button
    choices = home.doc.cssselect("#test-identifiers a.customer-choice")
    assert [c.get("aria-label") for c in choices][:2] == ["residential by phone: 111-111-1111",
                                                          "commercial by phone: 222-222-2222"]
    assert len(home.doc.cssselect("button#connect")) == 1 and not is_hidden(by_id(home, "connect"))
    # technical panels: in the page, hidden
    for panel in ("step-client", "step-request", "step-review", "scope-decoded", "authorization-url"):
        assert is_hidden(by_id(home, panel)), panel
    toggle = by_id(home, "technical-toggle")
    assert toggle.text_content().strip() == "Show technical details"
    assert toggle.get("aria-expanded") == "false"
    assert set(toggle.get("aria-controls").split()) == {"technical-client", "technical-request"}
    # step 1 of 3
    assert [s[1] for s in steps(home)] == ["step", None, None]
    assert steps(home)[1][0].endswith("The customer authorizes at PCE")


def test_technical_details_toggle_without_js_and_as_json(presenting, visitor):
    home = visitor.get(presenting.site_url + "/")
    refused = visitor.request("POST", presenting.site_url + "/presenter/details", data={"state": "on"})
    assert refused.status == 400
    shown = post_form(visitor, home, "technical-form")
    assert shown.url == presenting.site_url + "/"
    for panel in ("step-client", "step-review", "scope-decoded", "authorization-url"):
        assert not is_hidden(by_id(shown, panel)), panel
    assert by_id(shown, "technical-toggle").text_content().strip() == "Hide technical details"
    assert by_id(shown, "technical-toggle").get("aria-expanded") == "true"
    # remembered on the next page too
    assert not is_hidden(by_id(visitor.get(presenting.site_url + "/"), "step-review"))
    # presenter.js's background call
    form = by_id(shown, "technical-form")
    token = form.cssselect("input[name=csrf_token]")[0].get("value")
    answer = visitor.http.post(presenting.site_url + "/presenter/details", data={"csrf_token": token, "state": "off"},
                               headers={"Accept": "application/json"}, timeout=10)
    assert answer.status_code == 200 and answer.json() == {"technical": False}
    assert is_hidden(by_id(visitor.get(presenting.site_url + "/"), "step-review"))


def test_choosing_a_customer_without_js_then_connect(presenting, visitor):
    home = visitor.get(presenting.site_url + "/")
    choice = home.doc.cssselect('a.customer-choice[aria-label="commercial by phone: 222-222-2222"]')[0]
    chosen = visitor.get(urljoin(home.url, choice.get("href")))
    active = chosen.doc.cssselect("a.customer-choice[aria-current]")
    assert [a.get("aria-label") for a in active] == ["commercial by phone: 222-222-2222"]
    # find them by email instead
    by_email = chosen.doc.cssselect("#find-by a")
    email = visitor.get(urljoin(chosen.url, [a for a in by_email if a.text_content() == "email"][0].get("href")))
    labels = [a.get("aria-label") for a in email.doc.cssselect("a.customer-choice")]
    assert "residential by email: uapi-test-residential@example.com" in labels
    # Connect sends the chosen customer (the hidden technical fields go along)
    page = chosen.form("/connect").submit(visitor)
    assert page.url.endswith("/authorize/verify"), page.url
    run = decide(visitor, enter_otp(visitor, page))
    assert run.url.startswith(presenting.site_url + "/runs/")
    assert "Authorized" in run.text_of("status")
    assert "auth-phone-222-222-2222" in visitor.get(run.url + ".json").response.json()["requested_scope"]


# --- run page in presenter mode -----------------------------------------------------------------------

def test_run_page_hides_the_technical_panels_and_shows_step_3(presenting, visitor):
    run = full_flow(visitor, presenting, "residential", "phone")
    assert run.status == 200 and is_presenter(run)
    assert "Authorized" in run.text_of("status")
    assert not is_hidden(by_id(run, "meters"))
    for panel in TECHNICAL_RUN + ("run-json-link", "authorization-uris"):
        assert is_hidden(by_id(run, panel)), panel
    labels = steps(run)
    assert [s[1] for s in labels] == [None, None, "step"]
    assert "is-done" in labels[0][2] and "is-done" in labels[1][2]
    assert "in progress" not in labels[2][0]

    shown = post_form(visitor, run, "technical-form")
    assert shown.url == run.url
    for panel in TECHNICAL_RUN + ("run-json-link", "authorization-uris"):
        assert not is_hidden(by_id(shown, panel)), panel
    post_form(visitor, shown, "technical-form")          # hide again for the next tests


def test_waiting_for_data_is_step_3_in_progress(presenting, visitor):
    run = full_flow(visitor, presenting, "residential", "email")
    with db(presenting).session() as s:
        row = s.get(Run, run_id_of(run))
        row.error = {"error": "not_ready", "message": "The utility is still collecting the data.",
                     "retry_at": int(time.time()) + 600}
    waiting = visitor.get(run.url)
    assert "collecting data" in waiting.text_of("status")
    current = [s for s in steps(waiting) if s[1] == "step"]
    assert len(current) == 1
    assert current[0][0].endswith("The data arrives (in progress)") and "is-busy" in current[0][2]


def test_normal_mode_run_page_is_unchanged(live, visitor):
    run = full_flow(visitor, live, "residential", "phone")
    assert not is_presenter(run) and run.doc.cssselect("ol.demo-steps") == []
    assert "resourceURI" in by_id(run, "h-authorization").getparent().text_content()
    for panel in TECHNICAL_RUN + ("run-json-link",):
        assert not is_hidden(by_id(run, panel)), panel


# --- branding -------------------------------------------------------------------------------------

def test_brand_css(presenting, visitor):
    resp = visitor.http.get(presenting.site_url + "/brand.css", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/css")
    props = dict(re.findall(r"(--[\w-]+):\s*(#[0-9a-f]{6});", resp.text))
    assert props["--brand-accent"] == ACCENT                                  # exactly as configured
    assert branding.contrast(props["--brand"], "#ffffff") >= 4.5              # text on white
    assert branding.contrast(props["--brand"], "#f4f6f9") >= 4.5              # and on the page canvas
    assert branding.contrast(props["--brand-ink"], props["--brand"]) >= 4.5   # white text on the accent
    assert branding.contrast(props["--brand-on-tint"], props["--brand-tint"]) >= 4.5
    assert props["--brand"] != ACCENT


def site_client(tmp_path, **overrides):
    settings = load_config({"instance_path": str(tmp_path), "secret_key": "test-secret-key", "presenter": True,
                            **overrides}, env={})
    return create_site(settings).test_client()


LOGOS = {
    "logo.png": (PNG, "image/png"),
    "logo.jpg": (b"\xff\xd8\xff\xe0\x00\x10JFIF" + b"\x00" * 40, "image/jpeg"),
    "logo.gif": (b"GIF89a\x01\x00\x01\x00" + b"\x00" * 40, "image/gif"),
    "logo.webp": (b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 40, "image/webp"),
    "logo.svg": (SVG, "image/svg+xml"),
    "misnamed.txt": (PNG, "image/png"),                   # the content decides, not the name
}


@pytest.mark.parametrize("name", sorted(LOGOS))
def test_logo_is_served_by_its_content(tmp_path, name):
    data, mimetype = LOGOS[name]
    (tmp_path / name).write_bytes(data)
    client = site_client(tmp_path, brand_logo=str(tmp_path / name))
    resp = client.get("/brand/logo")
    assert resp.status_code == 200 and resp.data == data
    assert resp.mimetype == mimetype
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    csp = resp.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "sandbox" in csp and "script-src" not in csp
    assert 'id="brand-logo"' in client.get("/").get_data(as_text=True)


def test_logo_relative_to_the_config_folder(tmp_path):
    (tmp_path / "brand.png").write_bytes(PNG)
    client = site_client(tmp_path, brand_logo="brand.png")
    assert client.get("/brand/logo").status_code == 404          # not in the real config/ folder
    # load_config sets config_dir to the preset folder; point it at tmp_path as a deployment would
    client.application.extensions["gbc_site"].settings["config_dir"] = str(tmp_path)
    assert client.get("/brand/logo").status_code == 200


@pytest.mark.parametrize("case", ["missing", "not an image", "oversized", "html", "folder"])
def test_a_bad_logo_falls_back_to_the_mark_and_warns_once(tmp_path, caplog, case):
    path = tmp_path / "logo.png"
    if case == "not an image":
        path.write_text("just some text")
    elif case == "oversized":
        path.write_bytes(PNG + b"\x00" * branding.LOGO_MAX_BYTES)
    elif case == "html":
        path.write_bytes(b"<html><script>alert(1)</script></html>")
    elif case == "folder":
        path.mkdir()
    client = site_client(tmp_path, brand_logo=str(path))
    with caplog.at_level(logging.WARNING, logger="demo.site.presenter_views"):
        for _ in range(3):
            home = client.get("/")
            assert home.status_code == 200
            text = home.get_data(as_text=True)
            assert 'id="brand-logo"' not in text and "site-brand__mark" in text
            resp = client.get("/brand/logo")
            assert resp.status_code == 404
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "brand_logo" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


def test_no_logo_configured(tmp_path):
    client = site_client(tmp_path)
    assert client.get("/brand/logo").status_code == 404
    assert "site-brand__mark" in client.get("/").get_data(as_text=True)


def test_no_accent_no_brand_stylesheet(tmp_path):
    client = site_client(tmp_path)
    assert "/brand.css" not in client.get("/").get_data(as_text=True)
    assert "--brand" not in client.get("/brand.css").get_data(as_text=True)


# --- Start over -------------------------------------------------------------------------------------

def _add_rows(live, run_id: str, visitor_id: str, uid: str) -> None:
    with db(live).session() as s:
        s.add(IntegratorData(run_id=run_id, kind="json_api", data={"x": 1}))
        s.add(WebhookEvent(visitor_id=visitor_id, verified=True, event_uid=f"ev-{run_id}", type="meter_created",
                           authorization_uid=uid, event={}))


def _counts(live, run_id: str, visitor_id: str, uid: str) -> dict:
    with db(live).session() as s:
        return {
            "runs": s.query(Run).filter_by(visitor_id=visitor_id).count(),
            "exchanges": s.query(Exchange).filter_by(run_id=run_id).count(),
            "integrator": s.query(IntegratorData).filter_by(run_id=run_id).count(),
            "events": s.query(WebhookEvent).filter_by(visitor_id=visitor_id, authorization_uid=uid).count(),
            "settings": s.query(VisitorSettings).filter_by(visitor_id=visitor_id).count()
            + s.query(IntegratorSettings).filter_by(visitor_id=visitor_id).count(),
        }


def _visitor_with_a_run(live):
    v = Visitor()
    run = full_flow(v, live, "residential", "phone")
    with db(live).session() as s:
        row = s.get(Run, run_id_of(run))
        ids = (row.id, row.visitor_id, str(row.authorization["uid"]))
    _add_rows(live, *ids)
    # settings of this visitor must survive the reset
    settings = v.get(live.site_url + "/settings")
    saved = settings.form("/settings").set("scope", "FB=4_5_15").submit(v)
    assert saved.status == 200
    return v, ids


def test_start_over_deletes_only_this_visitors_runs(live):
    a, a_ids = _visitor_with_a_run(live)
    b, b_ids = _visitor_with_a_run(live)
    assert a_ids[1] != b_ids[1] and a_ids[2] != b_ids[2]
    before_a, before_b = _counts(live, *a_ids), _counts(live, *b_ids)
    assert all(before_a[k] >= 1 for k in before_a), before_a

    runs = a.get(live.site_url + "/runs")
    assert by_id(runs, "start-over").text_content().strip() == "Start over"
    assert by_id(runs, "outbox-clear-link").get("href") == live.sandbox_url + "/outbox?mine=y"
    refused = a.request("POST", live.site_url + "/reset", data={})
    assert refused.status == 400
    assert _counts(live, *a_ids) == before_a

    done = post_form(a, runs, "start-over-form")
    assert done.url == live.site_url + "/"
    assert "Your runs were cleared" in done.body_text
    after_a = _counts(live, *a_ids)
    assert after_a == {"runs": 0, "exchanges": 0, "integrator": 0, "events": 0, "settings": before_a["settings"]}
    assert _counts(live, *b_ids) == before_b
    assert a.get(live.site_url + "/settings").doc.get_element_by_id("scope").get("value") == "FB=4_5_15"
    assert a.get(live.site_url + "/runs").doc.cssselect("#runs") == []
    assert b.get(live.site_url + "/runs").doc.cssselect("#runs tbody tr")
    a.http.close()
    b.http.close()


def test_start_over_sits_in_the_header_in_presenter_mode(presenting, visitor):
    home = visitor.get(presenting.site_url + "/")
    assert home.doc.cssselect("header.site-header form#start-over-form button#start-over")
    runs = visitor.get(presenting.site_url + "/runs")
    assert len(runs.doc.cssselect("form#start-over-form")) == 1        # the header's, not a second one
    connect(visitor, presenting, "phone", "111-111-1111")
    assert visitor.get(presenting.site_url + "/runs").doc.cssselect("#runs tbody tr")
    done = post_form(visitor, home, "start-over-form")
    assert "Your runs were cleared" in done.body_text and is_presenter(done)
    assert visitor.get(presenting.site_url + "/runs").doc.cssselect("#runs") == []


# --- in a browser ------------------------------------------------------------------------------------

@pytest.mark.browser
def test_presenter_flow_in_a_browser(presenting, browser):
    from a11y import assert_accessible
    from browsing import SCREENSHOTS, open_page
    from playwright.sync_api import expect

    site, sandbox = presenting.site_url, presenting.sandbox_url
    page = open_page(browser)
    context, problems = page.context, page.problems
    folder = SCREENSHOTS / "presenter"
    folder.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(site + "/")
        expect(page.locator("html")).to_have_class(re.compile(r"\bis-presenter\b"))
        expect(page.locator("#welcome")).to_have_text(WELCOME)
        expect(page.locator("#brand-logo")).to_be_visible()
        expect(page.locator("ol.demo-steps li[aria-current=step]")).to_contain_text("Choose a customer")
        # the accent stylesheet applies: the header stripe is the configured colour, exactly
        stripe = page.evaluate("getComputedStyle(document.querySelector('header.site-header')).borderTopColor")
        assert stripe == "rgb(255, 210, 63)", stripe
        cta = page.evaluate("getComputedStyle(document.querySelector('button#connect')).backgroundColor")
        r, g, b = (int(x) for x in re.findall(r"\d+", cta)[:3])
        assert branding.contrast(branding.to_hex((r, g, b)), "#ffffff") >= 4.5, cta
        # technical panels hidden; the toggle shows them at once, without a page load
        expect(page.locator("#step-review")).to_be_hidden()
        expect(page.locator("#scope-decoded")).to_be_hidden()
        page.screenshot(path=str(folder / "01-home.png"), full_page=True)
        assert_accessible(page, "presenter-home")
        page.evaluate("window.__samePage = 1")
        toggle = page.get_by_role("button", name="Show technical details")
        toggle.click()
        expect(page.locator("#scope-decoded")).to_be_visible()
        expect(page.get_by_role("button", name="Hide technical details")).to_have_attribute("aria-expanded", "true")
        assert page.evaluate("window.__samePage") == 1     # no reload
        page.get_by_role("button", name="Hide technical details").click()
        expect(page.locator("#scope-decoded")).to_be_hidden()

        # choose a customer (in place, by connect.js), then Connect
        page.get_by_role("link", name="residential by phone: 111-111-1111", exact=True).click()
        expect(page.locator("a.customer-choice[aria-current]")).to_have_count(1)
        expect(page.locator("input[name=lookup_value]")).to_have_value("111-111-1111")
        page.locator("button#connect").click()
        page.wait_for_url(re.compile(re.escape(sandbox) + r"/.*authorize/verify$"))
        code = page.locator("#test-passcode").inner_text().strip()
        page.get_by_label("Passcode").fill(code)
        page.get_by_role("button", name=re.compile("Continue|Verify")).click()
        page.wait_for_url(re.compile(re.escape(sandbox) + r"/.*authorize/consent$"))
        page.wait_for_timeout(1_200)
        page.get_by_role("button", name="Authorize").click()
        page.wait_for_url(re.compile(re.escape(site) + r"/runs/[\w-]+$"))

        expect(page.locator("#status")).to_contain_text("Authorized")
        expect(page.locator("ol.demo-steps li[aria-current=step]")).to_contain_text("The data arrives")
        for panel in ("#timeline", "#tools", "#scope", "#token-json"):
            expect(page.locator(panel)).to_be_hidden()
        page.screenshot(path=str(folder / "02-run.png"), full_page=True)
        assert_accessible(page, "presenter-run")
        page.get_by_role("button", name="Show technical details").click()
        for panel in ("#timeline", "#tools", "#scope", "#token-json"):
            expect(page.locator(panel)).to_be_visible()
        page.screenshot(path=str(folder / "03-run-technical.png"), full_page=True)
        assert_accessible(page, "presenter-run-technical")
        # remembered: the next page load keeps them shown
        page.reload()
        expect(page.locator("#timeline")).to_be_visible()
        page.get_by_role("button", name="Hide technical details").click()
        expect(page.locator("#timeline")).to_be_hidden()
        page.reload()
        expect(page.locator("#timeline")).to_be_hidden()

        # Start over from the header
        page.get_by_role("button", name="Start over").click()
        page.wait_for_url(site + "/")
        expect(page.locator(".flashes .flash")).to_contain_text("Your runs were cleared")

        assert problems.csp == [], problems.csp
        assert problems.errors == [], problems.errors
        assert problems.page_errors == [], problems.page_errors
    finally:
        context.close()


@pytest.mark.browser
def test_presenter_home_at_phone_width(presenting, browser):
    from a11y import assert_accessible, browser_page
    from browsing import SCREENSHOTS
    from playwright.sync_api import expect

    with browser_page(browser, "phone") as page:
        page.goto(presenting.site_url + "/")
        expect(page.locator("ol.demo-steps")).to_be_visible()
        expect(page.get_by_role("button", name="Show technical details")).to_be_visible()
        expect(page.get_by_role("button", name="Start over")).to_be_visible()
        # nothing wider than the screen
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        page.screenshot(path=str(SCREENSHOTS / "presenter" / "04-home-phone.png"), full_page=True)
        assert_accessible(page, "presenter-home-phone")
        page.get_by_role("button", name="Show technical details").click()
        expect(page.locator("#scope-decoded")).to_be_visible()
        assert_accessible(page, "presenter-home-phone-technical")

"""One full residential flow clicked in a real browser (Debian's Chromium, driven by
Playwright's sync API) across both origins: the demo site and the sandbox custodian.

Screenshots of each step go to $GBC_SCREENSHOTS (default test-artifacts/screenshots).
Without /usr/bin/chromium the test is skipped, unless GBC_REQUIRE_BROWSER=1 (CI)."""
from __future__ import annotations

import re

import pytest
from browsing import open_page, shot

# A person reads each page before clicking on; a consent page that only works when the
# click comes within the same second it was rendered is a bug this test must catch.
READ_MS = 1_200

pytestmark = pytest.mark.browser


@pytest.fixture
def page(browser):
    page = open_page(browser)
    yield page
    page.context.close()


def click_through(page, button, url: re.Pattern, step: str) -> None:
    """Click `button` and wait to land on `url`; if we don't, say what the page shows instead."""
    page.wait_for_timeout(READ_MS)
    button.click()
    try:
        page.wait_for_url(url, timeout=8_000)
        return
    except Exception:
        pass
    shot(page, f"failed-{step}.png")
    alerts = page.locator("[role=alert], .field-errors, .notice").all_inner_texts()
    pytest.fail(f"{step}: expected to land on {url.pattern}, still on {page.url}\n"
                f"page says: {alerts or page.locator('h1').all_inner_texts()}\n"
                f"console errors: {page.problems.errors}", pytrace=False)


def test_residential_phone_flow_in_a_browser(live, page):
    from playwright.sync_api import expect

    site, sandbox = live.site_url, live.sandbox_url
    assert site != sandbox

    # 1. The site's home: pick the residential phone test identifier.
    page.goto(site + "/")
    chip = page.get_by_role("link", name="residential by phone: 111-111-1111")
    expect(chip).to_have_count(1)
    page.wait_for_timeout(READ_MS)
    chip.click()   # connect.js fills in the lookup and refreshes the Review in place
    expect(page.get_by_label("Lookup value")).to_have_value("111-111-1111")
    expect(page.locator("#scope-decoded")).to_have_text("FB=4_16_51;AdditionalScope=auth-phone-111-111-1111")
    expect(page.locator("#authorization-url")).to_contain_text("auth-phone-111-111-1111")
    # the live preview follows the form: untick bills and it is gone from the scope
    page.get_by_label("16 · Bills: usage summaries with cost").uncheck()
    expect(page.locator("#scope-decoded")).to_have_text("FB=4_51;AdditionalScope=auth-phone-111-111-1111")
    page.get_by_label("16 · Bills: usage summaries with cost").check()
    expect(page.locator("#scope-decoded")).to_have_text("FB=4_16_51;AdditionalScope=auth-phone-111-111-1111")
    shot(page, "01-home.png")

    # 2. Connect: the sandbox's passcode page on the other origin (the lookup was pre-filled).
    click_through(page, page.locator("button#connect"), re.compile(re.escape(sandbox) + r"/.*authorize/verify$"),
                  "connect")
    passcode = page.locator("#test-passcode")
    expect(passcode).to_be_visible()
    code = passcode.inner_text().strip()
    assert re.fullmatch(r"\d{6}", code), code
    page.get_by_label("Passcode").fill(code)
    shot(page, "02-passcode.png")
    click_through(page, page.get_by_role("button", name="Continue"),
                  re.compile(re.escape(sandbox) + r"/.*authorize/consent$"), "passcode")

    # 3. Consent.
    expect(page.get_by_role("heading", level=1)).to_contain_text("Test Company")
    shot(page, "03-consent.png")
    click_through(page, page.get_by_role("button", name="Authorize"),
                  re.compile(re.escape(site) + r"/runs/[\w-]+$"), "consent")

    # 4. Back on the site's run page.
    assert page.url.startswith(site + "/runs/")
    expect(page.locator("#status")).to_contain_text("Authorized")
    rows = page.locator("#meters tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first.locator("td").first).to_have_text(re.compile(r"^\d{7}$"))  # a new meter uid per authorization
    shot(page, "04-run.png")

    problems = page.problems
    assert not problems.csp, "CSP violations:\n" + "\n".join(problems.csp)
    assert not problems.page_errors, "uncaught JavaScript errors:\n" + "\n".join(problems.page_errors)
    assert not problems.errors, "console errors during the flow:\n" + "\n".join(problems.errors)

"""The clicking steps of tests/test_browser_matrix.py: one customer's trip from the demo site's home
page to the sandbox (lookup, passcode, consent) and back to the run and a meter page.

Each step works on a ``where``: the Playwright Page itself, or the Frame the site is shown in when
it is embedded in another page. Page and Frame share the calls used here (locator, get_by_role,
get_by_label, wait_for_url, url). Screenshots are always of the whole top page, numbered in the
order they are taken, into one folder per flow."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from browsing import open_page

from flow import METERS, NOT_FOUND, TEST_IDS

SCENARIOS = tuple(TEST_IDS)                       # residential, commercial, badlogin
LOOKUPS = ("account", "phone", "email", "address")
NAVIGATION_MS = 10_000


class Flow:
    """One browser context clicking one flow, with its screenshot folder and its problems."""

    def __init__(self, browser, folder: Path, site: str, sandbox: str, height: int = 900) -> None:
        self.site, self.sandbox = site, sandbox
        self.folder = folder
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        self.shots: list[Path] = []
        self.framed = False        # set when the steps run inside an iframe of self.page
        self.page = open_page(browser, height=height)   # the CSP listener runs in the iframe's pages too
        self.context, self.problems = self.page.context, self.page.problems

    def close(self) -> None:
        self.context.close()

    def shot(self, step: str, show=None) -> Path:
        """A full-page screenshot. In a frame, ``show`` (a locator) is scrolled into the frame's view
        first: a screenshot of the top page shows only what the frame shows."""
        if show is not None and self.framed:
            show.scroll_into_view_if_needed()
        path = self.folder / f"{len(self.shots) + 1:02d}-{step}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.shots.append(path)
        return path

    def failed(self, step: str) -> None:
        """A screenshot of the page as it was when a step failed (best effort)."""
        try:
            self.page.screenshot(path=str(self.folder / f"failed-{step}.png"), full_page=True)
        except Exception:  # noqa: BLE001 - the failure being reported matters more
            pass

    def assert_clean(self) -> None:
        problems = self.problems
        assert not problems.csp, "CSP violations:\n" + "\n".join(problems.csp)
        assert not problems.page_errors, "uncaught JavaScript errors:\n" + "\n".join(problems.page_errors)
        assert not problems.errors, "console errors:\n" + "\n".join(problems.errors)

    def on(self, origin: str, path: str) -> re.Pattern:
        """A URL pattern: ``path`` (a regex) on ``origin``, with or without a query."""
        return re.compile(re.escape(origin) + path + r"(\?.*)?$")


def choose_identifier(flow: Flow, where, scenario: str, lookup: str, review: bool = True) -> None:
    """On the site's home page, click the test identifier chip for ``scenario`` and ``lookup``."""
    from playwright.sync_api import expect

    value = TEST_IDS[scenario][lookup]
    chip = where.get_by_role("link", name=f"{scenario} by {lookup}: {value}", exact=True)
    expect(chip).to_have_count(1)
    chip.click()   # connect.js fills the lookup in place (without JS the chip is a link that does the same)
    expect(where.get_by_label("Lookup value")).to_have_value(value)
    expect(where.locator(f"input[name=lookup_type][value={lookup}]")).to_be_checked()
    if review:
        expect(where.locator("#scope-decoded")).to_contain_text(f"AdditionalScope=auth-{lookup}-")
        expect(where.locator("#authorization-url")).to_contain_text(f"auth-{lookup}-")
    flow.shot("home")


def connect(flow: Flow, where, found: bool = True) -> None:
    """Connect: the sandbox's passcode page (customer found) or its lookup page (not found)."""
    where.locator("button#connect").click()
    target = r"/authorize/verify" if found else r"/authorize/lookup"
    where.wait_for_url(flow.on(flow.sandbox, target), timeout=NAVIGATION_MS)


def not_found(flow: Flow, where, scenario: str, lookup: str) -> None:
    """The pre-filled identifier found nobody: the lookup page says so, keeps what was looked up
    so the customer can correct it, and sends no passcode."""
    from playwright.sync_api import expect

    expect(where.locator("#lookup-notice")).to_contain_text(NOT_FOUND)
    expect(where.locator(f"input[name=method][value={lookup}]")).to_be_checked()
    expect(where.locator("input[name=value]")).to_have_value(TEST_IDS[scenario][lookup])
    expect(where.locator("#test-passcode")).to_have_count(0)
    flow.shot("not-found")


def enter_passcode(flow: Flow, where) -> None:
    """Type the test passcode the sandbox shows, then Continue to the consent page."""
    from playwright.sync_api import expect

    passcode = where.locator("#test-passcode")
    expect(passcode).to_be_visible()
    code = passcode.inner_text().strip()
    assert re.fullmatch(r"\d{6}", code), f"not a 6-digit passcode: {code!r}"
    where.get_by_label("Passcode").fill(code)
    flow.shot("passcode")
    where.get_by_role("button", name="Continue").click()
    where.wait_for_url(flow.on(flow.sandbox, r"/authorize/consent"), timeout=NAVIGATION_MS)


def review_consent(flow: Flow, where, scenario: str, company: str = "Test Company") -> None:
    """The consent page names the company and offers each of the customer's meters."""
    from playwright.sync_api import expect

    expect(where.get_by_role("heading", level=1)).to_contain_text(company)
    expect(where.locator("fieldset.meters input[type=checkbox]")).to_have_count(METERS[scenario])
    flow.shot("consent")


def authorize(flow: Flow, where, scenario: str) -> None:
    """Authorize: back on the site's run page with the authorization and every meter."""
    from playwright.sync_api import expect

    where.get_by_role("button", name="Authorize").click()
    where.wait_for_url(flow.on(flow.site, r"/runs/[\w-]+"), timeout=NAVIGATION_MS)
    meters = METERS[scenario]
    expect(where.locator("#status")).to_contain_text(
        re.compile(rf"Authorized\.\s+The customer shared {meters} meters?\."))
    expect(where.locator("#h-authorization")).to_be_visible()
    rows = where.locator("#meters tbody tr")
    expect(rows).to_have_count(meters)
    expect(rows.first.locator("td").first).to_have_text(re.compile(r"^\d{7}$"))   # a new uid per authorization
    flow.shot("run", show=rows.last)


def decline(flow: Flow, where) -> None:
    """Decline: back on the site's run page, which says the customer declined (access_denied)."""
    from playwright.sync_api import expect

    where.get_by_role("button", name="Decline").click()
    where.wait_for_url(flow.on(flow.site, r"/runs/[\w-]+"), timeout=NAVIGATION_MS)
    expect(where.locator("#status")).to_contain_text("Declined.")
    expect(where.locator("#status")).to_contain_text("access_denied")
    expect(where.locator("#meters")).to_have_count(0)
    flow.shot("declined")


def open_meter(flow: Flow, where) -> None:
    """Open the first meter of the run: its page with the chart drawn."""
    from playwright.sync_api import expect

    link = where.locator("#meters tbody tr").first.get_by_role("link")
    usage_point = link.inner_text().strip()
    link.click()
    where.wait_for_url(flow.on(flow.site, r"/runs/[\w-]+/meters/" + re.escape(usage_point)),
                       timeout=NAVIGATION_MS)
    expect(where.get_by_role("heading", level=1)).to_have_text(f"Meter {usage_point}")
    expect(where.locator("#meter-chart")).to_have_attribute("data-chart-ready", "true")
    flow.shot("meter", show=where.locator("#meter-chart"))

"""Every PCE test customer (residential, commercial, badlogin) by every lookup type (account, phone,
email, billing address), clicked in a real browser (Debian's Chromium through Playwright) across
both origins: the test identifier on the site's home page, Connect, the sandbox's passcode and
consent, Authorize, the run page with the right number of meters, one meter page. badlogin ends on
the sandbox's lookup page with "We couldn't find that customer". Also one decline, and one flow in
presenter mode inside an iframe of an allowed origin.

A screenshot of each step goes to $GBC_SCREENSHOTS/matrix/<scenario>-<lookup>/NN-<step>.png (made
fresh each run; `.ci/run` lists them). Without /usr/bin/chromium the tests are skipped, unless
GBC_REQUIRE_BROWSER=1 (CI)."""
from __future__ import annotations

import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest
from browsing import SCREENSHOTS
from matrix_steps import (
    LOOKUPS,
    SCENARIOS,
    Flow,
    authorize,
    choose_identifier,
    connect,
    decline,
    enter_passcode,
    not_found,
    open_meter,
    review_consent,
)

from conftest import start_servers

pytestmark = pytest.mark.browser

MATRIX = SCREENSHOTS / "matrix"
FRAME_HEIGHT = 1200   # the iframe, so that a screenshot of the embedding page shows each step's point


@contextmanager
def serving(tmp: Path, **overrides):
    live, started = start_servers(tmp, **overrides)
    try:
        yield live
    finally:
        for srv in started:
            srv.shutdown()


@pytest.fixture(scope="module")
def matrix_folder():
    """The matrix's screenshot folder, emptied once per run so no stale screenshot survives."""
    shutil.rmtree(MATRIX, ignore_errors=True)
    MATRIX.mkdir(parents=True)
    return MATRIX


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """One pair of servers (site and sandbox, each on its own port) for the whole matrix."""
    with serving(tmp_path_factory.mktemp("matrix")) as live:
        yield live


@contextmanager
def flow(browser, folder: Path, site: str, sandbox: str, **options):
    """A fresh browser context for one flow; a failed-*.png of the page when a step fails."""
    started = Flow(browser, folder, site, sandbox, **options)
    try:
        yield started
    except BaseException:
        started.failed(f"after-{len(started.shots):02d}")
        raise
    finally:
        started.close()


def check_shots(f: Flow, *steps: str) -> None:
    names = [p.name for p in f.shots]
    assert names == [f"{n:02d}-{step}.png" for n, step in enumerate(steps, 1)], names
    for path in f.shots:
        assert path.stat().st_size > 10_000, f"{path} is suspiciously small"


@pytest.mark.parametrize("lookup", LOOKUPS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_scenario_by_every_lookup(browser, servers, matrix_folder, scenario, lookup):
    site, sandbox = servers.site_url, servers.sandbox_url
    assert site != sandbox
    with flow(browser, matrix_folder / f"{scenario}-{lookup}", site, sandbox) as f:
        page = f.page
        page.goto(site + "/")
        choose_identifier(f, page, scenario, lookup)
        if scenario == "badlogin":
            connect(f, page, found=False)
            not_found(f, page, scenario, lookup)
            steps = ("home", "not-found")
        else:
            connect(f, page)
            enter_passcode(f, page)
            review_consent(f, page, scenario)
            authorize(f, page, scenario)
            open_meter(f, page)
            steps = ("home", "passcode", "consent", "run", "meter")
        f.assert_clean()
        check_shots(f, *steps)


def test_decline(browser, servers, matrix_folder):
    site, sandbox = servers.site_url, servers.sandbox_url
    with flow(browser, matrix_folder / "residential-email-decline", site, sandbox) as f:
        page = f.page
        page.goto(site + "/")
        choose_identifier(f, page, "residential", "email")
        connect(f, page)
        enter_passcode(f, page)
        review_consent(f, page, "residential")
        decline(f, page)
        f.assert_clean()
        check_shots(f, "home", "passcode", "consent", "declined")


# --- presenter mode inside an iframe of an allowed origin ---------------------------------------

def test_presenter_mode_inside_an_iframe(browser, matrix_folder, tmp_path):
    from embedding import FRAME_ID, serve_embedding_page
    from playwright.sync_api import expect

    # a sales engineer's branding, as in the README
    logo = tmp_path / "acme-logo.svg"
    logo.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64" viewBox="0 0 64 64">'
                    '<rect width="64" height="64" rx="12" fill="#d0452f"/>'
                    '<path d="M14 48 32 14l18 34z" fill="#fff"/></svg>')
    brand = {"company_name": "Acme Energy Insights", "brand_logo": str(logo), "brand_accent": "#d0452f",
             "brand_welcome": "See how Acme reads your meter data in under a minute."}
    # The apps must know the embedding page's origin before they start: start the page first.
    with serve_embedding_page(page_title="Sales deck", height=FRAME_HEIGHT) as embedder, \
            serving(tmp_path, presenter=True, embed_origins=[embedder.origin], **brand) as live:
        embedder.iframe_url = live.site_url + "/"
        site, sandbox = live.site_url, live.sandbox_url
        with flow(browser, matrix_folder / "presenter-iframe", site, sandbox, height=FRAME_HEIGHT + 100) as f:
            f.framed = True
            page = f.page
            page.goto(embedder.url)
            expect(page.get_by_role("heading", level=1)).to_have_text("Sales deck")
            frame = page.wait_for_selector("#" + FRAME_ID, state="attached").content_frame()
            assert frame is not None and frame.parent_frame == page.main_frame
            frame.wait_for_url(f.on(site, "/"))

            # presenter mode: the branding, step 1 of the indicator, the technical panels hidden until asked for
            expect(frame.locator(".site-brand")).to_contain_text("Acme Energy Insights")
            expect(frame.locator("#welcome")).to_have_text(brand["brand_welcome"])
            assert frame.locator("#brand-logo").evaluate("img => img.complete && img.naturalWidth > 0")
            current_step = frame.locator("#steps li[aria-current=step]")
            expect(current_step).to_contain_text("Choose a customer")
            expect(frame.locator("#scope-decoded")).to_be_hidden()
            expect(frame.locator("#technical-toggle")).to_have_text("Show technical details")
            choose_identifier(f, frame, "residential", "phone", review=False)
            connect(f, frame)
            enter_passcode(f, frame)
            review_consent(f, frame, "residential", company=brand["company_name"])
            authorize(f, frame, "residential")
            expect(current_step).to_contain_text("The data arrives")
            expect(frame.get_by_role("heading", level=1)).to_have_text("Data from PCE")
            expect(frame.locator("#token-json")).to_be_hidden()
            open_meter(f, frame)

            assert page.url == embedder.url, "the flow left the embedding page"
            assert frame.url.startswith(site + "/runs/"), frame.url
            f.assert_clean()
            check_shots(f, "home", "passcode", "consent", "run", "meter")

"""What the browser tests share: Debian's Chromium (never a downloaded browser) and how it is
launched, skipping (or failing under GBC_REQUIRE_BROWSER=1) when it cannot run, CSP violations
turned into console errors, and :class:`Problems` to collect console and page errors. The
``browser`` fixture that uses them is in conftest.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("GBC_SCREENSHOTS") or REPO / "test-artifacts" / "screenshots")
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
               "--disable-component-update", "--no-first-run"]
TIMEOUT_MS = 15_000

# Turns CSP violations into console errors too (some are only reported as events).
CSP_LISTENER = """
document.addEventListener("securitypolicyviolation", function (e) {
  console.error("Content Security Policy violation: " + e.violatedDirective + " blocked " +
                (e.blockedURI || "inline") + " on " + document.location.href);
});
"""


def unavailable(reason: str):
    if os.environ.get("GBC_REQUIRE_BROWSER") == "1":
        pytest.fail(f"GBC_REQUIRE_BROWSER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


class Problems:
    """Console errors and uncaught page errors seen on any page of a context."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.page_errors: list[str] = []

    def on_console(self, msg) -> None:
        if msg.type == "error":
            loc = msg.location or {}
            self.errors.append(f"{msg.text} [{loc.get('url', '?')}]")

    def on_page_error(self, exc) -> None:
        self.page_errors.append(str(exc))

    @property
    def csp(self) -> list[str]:
        return [e for e in self.errors if "Content Security Policy" in e or "Refused" in e]


def open_page(browser, width: int = 1280, height: int = 900, **context_options):
    """A page in a new browser context: the default timeout set, CSP violations turned into console
    errors, and console and page errors collected on ``page.problems``. Close ``page.context``."""
    options = {"viewport": {"width": width, "height": height}, "locale": "en-US", **context_options}
    context = browser.new_context(**options)
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(CSP_LISTENER)
    problems = Problems()
    page = context.new_page()
    page.on("console", problems.on_console)
    page.on("pageerror", problems.on_page_error)
    page.problems = problems
    return page


def shot(page, name: str, selector: str | None = None) -> Path:
    """A screenshot into the screenshots folder: the whole page, or one element."""
    path = SCREENSHOTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if selector:
        page.locator(selector).screenshot(path=str(path))
    else:
        page.screenshot(path=str(path), full_page=True)
    return path

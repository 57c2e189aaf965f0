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

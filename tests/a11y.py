"""Accessibility helpers for the browser tests: axe-core (bundled by axe-playwright-python) run
in Debian's Chromium, the two viewports we check (desktop and phone), and the clicks of the
flow in a real browser, shared by test_accessibility.py and test_responsive.py.

    from a11y import assert_accessible
    assert_accessible(page, "consent")   # fails on any serious or critical violation

Moderate and minor findings are printed (see them with ``pytest -s`` or in the failure output)
but do not fail a test."""
from __future__ import annotations

import re
from contextlib import contextmanager

from browsing import open_page

DESKTOP = {"viewport": {"width": 1280, "height": 900}}
PHONE = {"viewport": {"width": 375, "height": 740}, "is_mobile": True, "has_touch": True, "device_scale_factor": 2}
SIZES = {"desktop": DESKTOP, "phone": PHONE}
FAILING_IMPACTS = ("serious", "critical")

_axe = None


def axe():
    global _axe
    if _axe is None:
        from axe_playwright_python.sync_playwright import Axe

        _axe = Axe()
    return _axe


@contextmanager
def browser_page(browser, size: str = "desktop"):
    """A fresh context (its own cookies) and page at ``size``; CSP violations become console errors."""
    page = open_page(browser, **SIZES[size])
    page.context.add_init_script(axe().axe_script)   # on every page up front: injecting it per audit is slower
    try:
        yield page
    finally:
        page.context.close()


def violations(page) -> list[dict]:
    """axe-core's violations on the page as it is now (WCAG 2.x A/AA and best practices)."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(axe().axe_script)
    return list(page.evaluate("axe.run({resultTypes: ['violations']}).then(r => r.violations)"))


def describe(found: list[dict], url: str) -> str:
    """One block per rule: impact, rule id, help, URL, then each offending element's selector."""
    lines = []
    for v in found:
        lines.append(f"[{v.get('impact')}] {v['id']}: {v['help']} ({url})")
        for node in v.get("nodes", [])[:8]:
            target = " ".join(str(t) for t in node.get("target", []))
            summary = (node.get("failureSummary") or "").replace("\n", " ")
            lines.append(f"    {target}  {summary[:240]}")
        if len(v.get("nodes", [])) > 8:
            lines.append(f"    … and {len(v['nodes']) - 8} more")
    return "\n".join(lines)


def audit(page, name: str) -> tuple[list[dict], list[dict]]:
    """(failing, other) violations of the page; prints the others."""
    found = violations(page)
    failing = [v for v in found if v.get("impact") in FAILING_IMPACTS]
    other = [v for v in found if v.get("impact") not in FAILING_IMPACTS]
    if other:
        print(f"\naxe, {name}: moderate/minor findings (not failing)\n{describe(other, page.url)}")
    return failing, other


def assert_accessible(page, name: str) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    failing, _ = audit(page, name)
    assert not failing, f"axe-core: serious/critical violations on {name}:\n{describe(failing, page.url)}"


# ---- the flow, clicked in the browser ------------------------------------------------------

def wait_for(page, pattern: str) -> None:
    page.wait_for_url(re.compile(pattern), timeout=10_000)


def site_connect(page, live, phone: str) -> None:
    """From the site's home, look the customer up by phone and Connect: lands on the passcode page."""
    page.goto(live.site_url + "/")
    page.locator("input[name=lookup_type][value=phone]").check()
    page.get_by_label("Lookup value").fill(phone)
    page.locator("button#connect").click()
    wait_for(page, re.escape(live.sandbox_url) + r"/authorize/verify$")


def sandbox_authorize_url(live, client_id: str = "PCE_ccccccccc", redirect: bool = False) -> str:
    """An authorization request straight to the sandbox (without redirect_uri it ends on the receipt)."""
    url = f"{live.sandbox_url}/oauth/authorize?response_type=code&client_id={client_id}&scope=FB%3D4_16_51&state=a11y"
    return url + (f"&redirect_uri={live.site_url}/callback" if redirect else "")


def lookup_phone(page, phone: str) -> None:
    page.locator("input[name=method][value=phone]").check()
    page.locator("input[name=value]").fill(phone)
    page.get_by_role("button", name="Find my account").click()
    wait_for(page, r"/verify$")


def enter_passcode(page) -> None:
    code = page.locator("#test-passcode").inner_text().strip()
    page.get_by_label("Passcode").fill(code)
    page.get_by_role("button", name="Continue").click()


def decide(page, decline: bool = False) -> None:
    page.get_by_role("button", name="Decline" if decline else "Authorize").click()
    page.wait_for_load_state()

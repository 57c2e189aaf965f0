"""Phone width (375×740, touch, scale 2) in Debian's Chromium: the utility side a customer sees on
a phone and the site's main pages have no horizontal scrolling, text fields at 16 px or more (iOS
zooms into smaller ones), form buttons and links big enough to tap (44×44 px, or the WCAG 2.2 2.5.8
minimum: 24 px with spacing), and no fixed or sticky element overlapping another or hiding a form
control. Screenshots of each page go to the screenshots folder (tests/browsing.py SCREENSHOTS).

Then the keyboard: the sandbox's lookup → passcode → consent → authorize with Tab, Shift-Tab, Space
and Enter only, every focused link, button and field showing a visible focus indicator."""
from __future__ import annotations

import re

import pytest
from a11y import (
    PHONE,
    browser_page,
    decide,
    enter_passcode,
    lookup_phone,
    sandbox_authorize_url,
    site_connect,
    wait_for,
)
from browsing import shot
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from conftest import start_servers

pytestmark = pytest.mark.browser

RESIDENTIAL = "111-111-1111"
DECODE_INPUT = "FB%3D4_16_51%3BAdditionalScope%3Dauth-phone-1111111111"


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    live, servers = start_servers(tmp_path_factory.mktemp("responsive"))
    yield live
    for srv in servers:
        srv.shutdown()


# ---- what is measured on each page (in the page, so it sees the laid-out result) -----------

MEASURE = """
([viewport, strict]) => {
  const visible = el => {
    const r = el.getBoundingClientRect(), cs = getComputedStyle(el);
    return r.width > 0 && r.height > 0 && cs.visibility !== 'hidden' && cs.display !== 'none';
  };
  const name = el => {
    let s = el.tagName.toLowerCase();
    if (el.id) s += '#' + el.id;
    else if (el.name) s += '[name=' + el.name + ']';
    const text = (el.innerText || el.value || '').trim().replace(/\\s+/g, ' ').slice(0, 40);
    return text ? s + ' "' + text + '"' : s;
  };
  const docWidth = Math.max(document.documentElement.scrollWidth, document.body.scrollWidth);

  // Text fields: at least 16 px so iOS Safari does not zoom in.
  const small_fields = [];
  const fields = document.querySelectorAll(
    'input:not([type]), input[type=text], input[type=email], input[type=tel], input[type=password], ' +
    'input[type=url], input[type=search], input[type=number], input[type=date], textarea, select');
  for (const el of fields) {
    if (!visible(el)) continue;
    const fs = parseFloat(getComputedStyle(el).fontSize);
    if (fs < 16) small_fields.push(name(el) + ' ' + fs + 'px');
  }

  // Tap targets in forms: buttons, submit inputs and links that are not inside a sentence.
  const targets = [];
  for (const el of document.querySelectorAll(
      'form button, form input[type=submit], form [role=button], form a[href], main .actions a[href]')) {
    if (!visible(el)) continue;
    if (el.tagName === 'A' && el.closest('p, li, td, dd, small') && getComputedStyle(el).display === 'inline') continue;
    targets.push(el);
  }
  const rects = targets.map(el => el.getBoundingClientRect());
  const small_targets = [];
  targets.forEach((el, i) => {
    const r = rects[i];
    if (r.width >= 44 && r.height >= 44) return;
    if (strict) {   // the utility side: large touch targets, no exceptions
      small_targets.push(name(el) + ' ' + Math.round(r.width) + 'x' + Math.round(r.height) + ' (under 44 px)');
      return;
    }
    // WCAG 2.2 2.5.8: an undersized target passes if a 24 px circle on its centre touches no other
    // target and no other undersized target's circle.
    const cx = r.left + r.width / 2, cy = r.top + r.height / 2;
    const undersized = r.width < 24 || r.height < 24;
    let clash = null;
    rects.forEach((o, j) => {
      if (i === j || clash) return;
      const nx = Math.max(o.left, Math.min(cx, o.right)), ny = Math.max(o.top, Math.min(cy, o.bottom));
      if (undersized && Math.hypot(nx - cx, ny - cy) < 12) clash = targets[j];
      const oSmall = o.width < 24 || o.height < 24;
      const ocx = o.left + o.width / 2, ocy = o.top + o.height / 2;
      if (undersized && oSmall && Math.hypot(ocx - cx, ocy - cy) < 24) clash = targets[j];
    });
    if (undersized || clash) {
      small_targets.push(name(el) + ' ' + Math.round(r.width) + 'x' + Math.round(r.height) +
                         (clash ? ' too close to ' + name(clash) : ' (under 24 px)'));
    }
  });

  // Fixed and sticky elements: none overlaps another.
  const fixed = [...document.querySelectorAll('body *')].filter(el => {
    const p = getComputedStyle(el).position;
    return (p === 'fixed' || p === 'sticky') && visible(el);
  });
  const overlaps = [];
  for (let i = 0; i < fixed.length; i++) {
    for (let j = i + 1; j < fixed.length; j++) {
      if (fixed[i].contains(fixed[j]) || fixed[j].contains(fixed[i])) continue;
      const a = fixed[i].getBoundingClientRect(), b = fixed[j].getBoundingClientRect();
      const w = Math.min(a.right, b.right) - Math.max(a.left, b.left);
      const h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
      if (w > 0.5 && h > 0.5) overlaps.push(name(fixed[i]) + ' overlaps ' + name(fixed[j]));
    }
  }
  return {docWidth, viewport, small_fields, small_targets, overlaps,
          fixed: fixed.map(name)};
}
"""

# Every form control, scrolled into view, is what is found at its centre (no fixed bar over it).
OBSCURED = """
async () => {
  const hidden = [];
  const controls = [...document.querySelectorAll('main input:not([type=hidden]), main select, main textarea, ' +
                                               'main button, main a[href]')];
  for (const el of controls) {
    const r0 = el.getBoundingClientRect();
    if (r0.width === 0 || r0.height === 0 || getComputedStyle(el).visibility === 'hidden') continue;
    // as the browser scrolls a control into view when Tab reaches it going up (start) or down (end)
    for (const block of ['start', 'end']) {
      el.scrollIntoView({block, inline: 'nearest'});
      const r = el.getBoundingClientRect();
      const x = Math.min(Math.max(r.left + r.width / 2, 0), window.innerWidth - 1);
      const y = Math.min(Math.max(r.top + r.height / 2, 0), window.innerHeight - 1);
      const top = document.elementFromPoint(x, y);
      if (!top || top === el || el.contains(top) || top.contains(el)) continue;
      if (el.labels && [...el.labels].some(l => l.contains(top))) continue;
      const chain = [];
      for (let n = top; n; n = n.parentElement) chain.push(n);
      if (chain.some(n => ['fixed', 'sticky'].includes(getComputedStyle(n).position))) {
        hidden.push((el.id || el.name || el.tagName) + ' under ' + (top.id || top.className || top.tagName) +
                    ' (scrolled to the ' + block + ')');
        break;
      }
    }
  }
  window.scrollTo(0, 0);
  return hidden;
}
"""


def check_phone_page(page, name: str) -> list[str]:
    page.wait_for_load_state("networkidle")
    shot(page, f"phone-{name}.png")
    # with is_mobile the layout viewport grows to fit wide content, so compare with the device width
    m = page.evaluate(MEASURE, [PHONE["viewport"]["width"], name.startswith("sandbox")])
    problems = []
    if m["docWidth"] > m["viewport"]:
        wide = page.evaluate("""(vw) => [...document.querySelectorAll('body *')].filter(el => {
            const r = el.getBoundingClientRect(); return r.right > vw + 0.5 && r.width > 0 &&
            !el.closest('.table-wrap, pre, .chart, [data-scroll]');}).slice(0, 5)
            .map(el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '') + '.' + el.className)""", m["viewport"])
        problems.append(f"scrolls sideways: document {m['docWidth']} px wide in a {m['viewport']} px viewport "
                        f"(widest: {wide})")
    problems += [f"text field under 16 px: {f}" for f in m["small_fields"]]
    problems += [f"tap target too small: {t}" for t in m["small_targets"]]
    problems += [f"fixed elements overlap: {o}" for o in m["overlaps"]]
    problems += [f"control hidden under a fixed element: {h}" for h in page.evaluate(OBSCURED)]
    return [f"{name} ({page.url}): {p}" for p in problems]


@pytest.fixture(scope="module")
def phone_pages(browser, live):
    """Visits the pages at phone width once; (name -> problems) in visiting order."""
    found: dict[str, list[str]] = {}
    site = live.site_url
    with browser_page(browser, "phone") as page:
        for name, path in (("site-home", "/"), ("site-settings", "/settings"), ("site-decode", "/decode"),
                           ("site-decode-input", "/decode?input=" + DECODE_INPUT)):
            page.goto(site + path)
            found[name] = check_phone_page(page, name)
        site_connect(page, live, RESIDENTIAL)
        found["sandbox-verify-prefilled"] = check_phone_page(page, "sandbox-verify-prefilled")
        enter_passcode(page)
        wait_for(page, r"/authorize/consent$")
        decide(page)
        wait_for(page, r"/runs/[\w-]+$")
        found["site-run"] = check_phone_page(page, "site-run")
        page.goto(site + "/runs")
        found["site-runs"] = check_phone_page(page, "site-runs")

        # the utility side, as a customer on a phone
        page.goto(sandbox_authorize_url(live))
        found["sandbox-lookup"] = check_phone_page(page, "sandbox-lookup")
        lookup_phone(page, RESIDENTIAL)
        found["sandbox-verify"] = check_phone_page(page, "sandbox-verify")
        enter_passcode(page)
        wait_for(page, r"/authorize/consent$")
        found["sandbox-consent"] = check_phone_page(page, "sandbox-consent")
        decide(page)
        wait_for(page, r"/receipt")
        found["sandbox-receipt"] = check_phone_page(page, "sandbox-receipt")

        page.goto(sandbox_authorize_url(live))
        lookup_phone(page, "222-222-2222")
        enter_passcode(page)
        wait_for(page, r"/authorize/consent$")
        found["sandbox-consent-commercial"] = check_phone_page(page, "sandbox-consent-commercial")
        decide(page, decline=True)
        wait_for(page, r"/authorize/declined$")
        found["sandbox-declined"] = check_phone_page(page, "sandbox-declined")

        page.goto(live.sandbox_url + "/my-authorizations")
        found["sandbox-my-lookup"] = check_phone_page(page, "sandbox-my-lookup")
        lookup_phone(page, RESIDENTIAL)
        found["sandbox-my-verify"] = check_phone_page(page, "sandbox-my-verify")
        enter_passcode(page)
        page.wait_for_selector("#my-authorizations")
        found["sandbox-my-list"] = check_phone_page(page, "sandbox-my-list")
        assert not page.problems.csp, page.problems.csp
    return found


PHONE_PAGES = ["site-home", "site-settings", "site-decode", "site-decode-input", "sandbox-verify-prefilled",
               "site-run", "site-runs", "sandbox-lookup", "sandbox-verify", "sandbox-consent", "sandbox-receipt",
               "sandbox-consent-commercial", "sandbox-declined", "sandbox-my-lookup", "sandbox-my-verify",
               "sandbox-my-list"]


@pytest.mark.parametrize("name", PHONE_PAGES)
def test_page_works_at_phone_width(phone_pages, name):
    assert name in phone_pages, f"{name} was not reached"
    problems = phone_pages[name]
    assert not problems, "\n".join(problems)


def test_the_checks_catch_a_broken_page(browser, live):
    """The measurements fail a page that scrolls sideways, has a small field, cramped buttons and a
    fixed bar over the controls (made with the CSSOM: the CSP forbids inline styles)."""
    with browser_page(browser, "phone") as page:
        page.goto(live.sandbox_url + "/my-authorizations")
        assert check_phone_page(page, "sandbox-control") == []
        page.evaluate("""() => {
          const main = document.querySelector('main');
          main.insertAdjacentHTML('beforeend', '<div id=wide>wide</div><form><button id=b1>a</button>' +
                                  '<button id=b2>b</button><input id=i1 type=text></form><div id=bar>bar</div>');
          document.getElementById('wide').style.width = '900px';
          for (const id of ['b1', 'b2']) {
            const s = document.getElementById(id).style;
            Object.assign(s, {padding: '0', margin: '0', minHeight: '0', width: '10px', height: '10px',
                              display: 'inline-block'});
          }
          document.getElementById('i1').style.fontSize = '12px';
          Object.assign(document.getElementById('bar').style,
                        {position: 'fixed', top: '0', left: '0', width: '100%', height: '100%', background: '#fff'});
        }""")
        problems = "\n".join(check_phone_page(page, "sandbox-broken"))
        for expected in ("scrolls sideways", "text field under 16 px: input#i1", "tap target too small: button#b1",
                         "fixed elements overlap", "control hidden under a fixed element"):
            assert expected in problems, f"{expected!r} not reported:\n{problems}"


# ---- the keyboard ---------------------------------------------------------------------------

FOCUSED = """
() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const r = el.getBoundingClientRect();
  return {tag: el.tagName.toLowerCase(), type: el.type || '', name: el.name || '', id: el.id || '',
          text: (el.innerText || el.value || '').trim().slice(0, 40), href: el.getAttribute('href') || '',
          focusVisible: el.matches(':focus-visible'),
          inView: r.bottom > 0 && r.top < window.innerHeight && r.width > 0};
}
"""

# A visible focus indicator: an outline of 2 px or more, or a box-shadow ring (not transparent, with
# a spread or blur). Pico fades its shadow in, so this is polled for a moment before giving up.
INDICATOR = """
() => {
  const cs = getComputedStyle(document.activeElement);
  if (cs.outlineStyle !== 'none' && parseFloat(cs.outlineWidth) >= 2) return true;
  if (!cs.boxShadow || cs.boxShadow === 'none') return false;
  return cs.boxShadow.split(/,(?![^(]*\\))/).some(part => {
    const color = part.match(/rgba?\\(([^)]*)\\)/);
    const alpha = color && color[1].split(',').length === 4 ? parseFloat(color[1].split(',')[3]) : 1;
    const lengths = part.replace(/rgba?\\([^)]*\\)/, '').match(/-?[\\d.]+px/g) || [];
    const [, , blur = '0', spread = '0'] = lengths;
    return alpha > 0.3 && !part.includes('inset') && (parseFloat(spread) >= 1 || parseFloat(blur) >= 2);
  });
}
"""


class Keyboard:
    """Tabs through a page, noting every focused element that shows no focus indicator."""

    def __init__(self, page) -> None:
        self.page = page
        self.no_indicator: list[str] = []
        self.seen = 0

    def focused(self) -> dict | None:
        info = self.page.evaluate(FOCUSED)
        if info is not None:
            self.seen += 1
            label = f"{info['tag']}#{info['id']}[{info['name']}] {info['text']!r} on {self.page.url}"
            try:
                self.page.wait_for_function(INDICATOR, timeout=800, polling=50)
            except PlaywrightTimeout:
                self.no_indicator.append(label)
            assert info["inView"], f"focused element is off screen: {label}"
        return info

    def tab_to(self, matches, limit: int = 40, back: bool = False) -> dict:
        for _ in range(limit):
            self.page.keyboard.press("Shift+Tab" if back else "Tab")
            info = self.focused()
            if info is not None and matches(info):
                return info
        raise AssertionError(f"could not reach the element with {'Shift+' if back else ''}Tab on {self.page.url}")


def test_sandbox_flow_with_the_keyboard_only(browser, live):
    with browser_page(browser, "desktop") as page:
        kb = Keyboard(page)
        page.goto(sandbox_authorize_url(live))
        wait_for(page, r"/authorize/lookup$")

        # the first Tab reaches the skip link, which shows up
        first = kb.tab_to(lambda i: True, limit=1)
        assert first["tag"] == "a" and first["href"] == "#main", first
        assert page.locator(".skip-link").bounding_box()["y"] >= 0

        # find my account by phone: Space picks the radio, type the number, Enter on the button
        kb.tab_to(lambda i: i["name"] == "method")
        phone = page.locator("input[name=method][value=phone]")
        while not phone.evaluate("el => el === document.activeElement"):
            page.keyboard.press("ArrowDown")
            kb.focused()
        page.keyboard.press("Space")
        assert phone.is_checked()
        kb.tab_to(lambda i: i["name"] == "value")
        page.keyboard.type(RESIDENTIAL)
        button = kb.tab_to(lambda i: i["tag"] in ("button", "input") and i["type"] == "submit")
        assert "Find my account" in button["text"], button
        # Shift+Tab goes back to the field, Tab forward to the button again
        assert kb.tab_to(lambda i: True, limit=1, back=True)["name"] == "value"
        kb.tab_to(lambda i: i["type"] == "submit", limit=1)
        page.keyboard.press("Enter")
        wait_for(page, r"/authorize/verify$")

        # the passcode, read from the page as a tester would, typed and sent with Enter
        code = page.locator("#test-passcode").inner_text().strip()
        assert re.fullmatch(r"\d{6}", code), code
        kb.tab_to(lambda i: i["name"] == "code")
        page.keyboard.type(code)
        kb.tab_to(lambda i: i["type"] == "submit" and "Continue" in i["text"])
        page.keyboard.press("Enter")
        wait_for(page, r"/authorize/consent$")

        # consent: walk the meters and options, then Space on Authorize
        authorize = kb.tab_to(lambda i: i["type"] == "submit" and i["text"] == "Authorize")
        assert authorize["focusVisible"], authorize
        page.keyboard.press("Space")
        wait_for(page, r"/receipt")
        assert "sharing your energy data" in page.locator("h1").inner_text()

        # a link on the receipt, reached by keyboard, also shows its focus
        kb.tab_to(lambda i: i["tag"] == "a" and "my-authorizations" in i["href"])
        assert kb.seen >= 8, kb.seen
        assert not kb.no_indicator, "focused without a visible indicator:\n" + "\n".join(kb.no_indicator)
        assert not page.problems.page_errors, page.problems.page_errors


@pytest.mark.parametrize("path", ["/", "/settings", "/decode"])
def test_site_controls_show_focus(browser, live, path):
    """Every link, button and field Tab reaches on the site's main pages shows a focus indicator."""
    with browser_page(browser, "desktop") as page:
        kb = Keyboard(page)
        page.goto(live.site_url + path)
        start = None
        for _ in range(60):
            page.keyboard.press("Tab")
            info = kb.focused()
            if info is None:
                break
            key = (info["tag"], info["id"], info["name"], info["href"], info["text"])
            if start is None:
                start = key
            elif key == start:   # wrapped round
                break
        assert kb.seen >= 5, f"only {kb.seen} elements reachable by Tab on {path}"
        assert not kb.no_indicator, "focused without a visible indicator:\n" + "\n".join(kb.no_indicator)

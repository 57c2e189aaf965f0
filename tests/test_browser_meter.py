"""The meter page in a real browser (Debian's Chromium through Playwright): the uPlot chart is
drawn from the JSON data island under the site's CSP, labels the meter's local time whatever the
browser's time zone, zooms and resets.

The run is made over HTTP (tests/flow.py; test_browser.py clicks the flow itself) and its cookie
handed to the browser. Screenshots go to $GBC_SCREENSHOTS (default test-artifacts/screenshots).
Without /usr/bin/chromium the test is skipped, unless GBC_REQUIRE_BROWSER=1 (CI)."""
from __future__ import annotations

import json
import re

import pytest
from browsing import open_page, shot

from conftest import Visitor
from flow import full_flow

# How much of the chart's canvas is painted (not transparent, not white), from the page itself.
PAINTED = """
() => {
  const canvas = document.querySelector("#meter-chart .uplot canvas");
  if (!canvas) return null;
  const ctx = canvas.getContext("2d");
  const {width, height} = canvas;
  const pixels = ctx.getImageData(0, 0, width, height).data;
  let painted = 0;
  for (let i = 0; i < pixels.length; i += 4) {
    const [r, g, b, a] = [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]];
    if (a > 0 && !(r > 245 && g > 245 && b > 245)) painted++;
  }
  return {width, height, painted, cssWidth: canvas.clientWidth, cssHeight: canvas.clientHeight};
}
"""

pytestmark = pytest.mark.browser


def test_solar_meter_chart_is_drawn_in_local_time_and_zooms(live, browser):
    from playwright.sync_api import expect

    # a commercial run over HTTP; its solar meter has delivered, exported and net series
    visitor = Visitor()
    run = full_flow(visitor, live, "commercial", "phone")
    meters = json.loads(visitor.get(run.url + ".json").text)["meters"]
    solar = next(m for m in meters if "solar" in (m["tariff"] or ""))
    cookie = visitor.http.cookies.get("gbc_site_session")
    visitor.http.close()

    # a browser far from the meter: its labels must still be Pacific time
    page = open_page(browser, timezone_id="Asia/Tokyo")
    context, problems = page.context, page.problems
    context.add_cookies([{"name": "gbc_site_session", "value": cookie, "url": live.site_url}])
    try:
        page.goto(run.url)
        link = page.locator("#meters").get_by_role("link", name=solar["usage_point_id"])
        link.click()
        page.wait_for_url(re.compile(r"/meters/" + solar["usage_point_id"] + "$"))
        expect(page.locator("#status")).to_contain_text("readings for")
        expect(page.locator("#meter-chart")).to_have_attribute("data-chart-ready", "true")

        # the canvas exists, has a size, and is painted
        drawn = page.evaluate(PAINTED)
        assert drawn and drawn["cssWidth"] > 300 and drawn["cssHeight"] > 150, drawn
        assert drawn["painted"] > 0.02 * drawn["width"] * drawn["height"], drawn
        legend = page.locator("#meter-chart .u-legend .u-series:not(.is-band)")
        expect(legend).to_have_count(4)             # local time, net, delivered, exported
        expect(page.locator("#meter-chart .u-legend")).to_contain_text("Exported")
        expect(page.locator("#meter-chart .u-legend")).to_contain_text("Net")
        shot(page, "meter-01-solar.png")

        # hovering the first point shows the window's first local midnight (t0), not Tokyo time
        over = page.locator("#meter-chart .u-over")
        over.scroll_into_view_if_needed()
        box = over.bounding_box()
        page.mouse.move(box["x"] + 40, box["y"] + box["height"] / 2)
        page.mouse.move(box["x"] + 1, box["y"] + box["height"] / 2, steps=3)
        first_day = page.locator("#range-from").input_value()
        expect(legend.first.locator(".u-value")).to_have_text(f"{first_day} 00:00")

        # drag-zoom: the reset button and the full-detail link appear; reset hides them again
        page.mouse.move(box["x"] + box["width"] * 0.40, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
        expect(page.locator("#chart-reset")).to_be_visible()
        detail = page.locator("#chart-detail")
        expect(detail).to_be_visible()
        expect(detail).to_have_attribute("href", re.compile(r"\?from=\d{4}-\d{2}-\d{2}&to=\d{4}-\d{2}-\d{2}$"))
        shot(page, "meter-02-zoomed.png", "#chart")
        zoomed_dates = detail.get_attribute("href")
        page.locator("#chart-reset").click()
        expect(page.locator("#chart-reset")).to_be_hidden()
        expect(detail).to_be_hidden()

        # the zoomed dates as a page of their own: every reading, still drawn
        page.goto(live.site_url + zoomed_dates)
        expect(page.locator("#chart-caption")).to_contain_text("Every reading")
        expect(page.locator("#meter-chart")).to_have_attribute("data-chart-ready", "true")
        assert page.evaluate(PAINTED)["painted"] > 0

        assert not problems.csp, "CSP violations:\n" + "\n".join(problems.csp)
        assert not problems.page_errors, "uncaught JavaScript errors:\n" + "\n".join(problems.page_errors)
        assert not problems.errors, "console errors:\n" + "\n".join(problems.errors)
    finally:
        context.close()

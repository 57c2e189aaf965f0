/*
 * Readiness poller for the run page (progressive enhancement; CSP: script-src 'self').
 *
 *   <div id="run-live" data-status-url="/runs/ID/status.json" data-retry-in="5">…
 *     <span id="readiness-countdown">5</span> … <p id="readiness">…</p>
 *
 * While the custodian is still collecting the data (202 + Retry-After, or no meters yet) the
 * page counts down, then asks /runs/ID/status.json — which makes the site ask the custodian
 * again once Retry-After has passed — and waits for as long as that answer says. When the data
 * is there, the page is fetched and its status, tools and timeline are swapped in place,
 * without a reload. If anything
 * fails, it falls back to reloading the page (what <noscript><meta http-equiv=refresh> does
 * without JS).
 */
(function () {
  "use strict";

  var live = document.getElementById("run-live");
  if (!live || !live.getAttribute("data-status-url")) { return; }
  var statusUrl = live.getAttribute("data-status-url");
  var remaining = parseInt(live.getAttribute("data-retry-in"), 10);
  if (isNaN(remaining) || remaining < 1) { remaining = 1; }
  var SWAP_IDS = ["run-live", "tools", "timeline"];
  var timer = null;
  var failures = 0;

  function countdown() { return document.getElementById("readiness-countdown"); }

  function show(seconds) {
    var el = countdown();
    if (el) { el.textContent = String(Math.max(0, seconds)); }
  }

  function fallback() { window.location.reload(); }

  function swapPage() {
    fetch(window.location.pathname, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (resp) {
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        // Only the parts that change when the data arrives; other panels (and their scripts) stay.
        var swapped = 0;
        for (var i = 0; i < SWAP_IDS.length; i++) {
          var fresh = doc.getElementById(SWAP_IDS[i]);
          var old = document.getElementById(SWAP_IDS[i]);
          if (fresh && old) {
            old.replaceWith(document.importNode(fresh, true));
            swapped += 1;
          }
        }
        if (!swapped) { throw new Error("nothing to update"); }
        var again = document.getElementById("run-live");
        if (again && again.getAttribute("data-status-url")) {   // still waiting after all
          statusUrl = again.getAttribute("data-status-url");
          live = again;
          schedule(parseInt(again.getAttribute("data-retry-in"), 10) || 1);
        }
        var copyButtons = document.querySelectorAll("[data-copy-target][hidden]");
        for (var j = 0; j < copyButtons.length; j++) { copyButtons[j].hidden = false; }
      })
      .catch(fallback);
  }

  function poll() {
    fetch(statusUrl, { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (resp) {
        if (!resp.ok) { throw new Error("HTTP " + resp.status); }
        return resp.json();
      })
      .then(function (data) {
        failures = 0;
        if (data.waiting) {
          var msg = document.getElementById("readiness");
          if (msg && data.message && msg.firstChild && msg.firstChild.nodeType === 3) {
            msg.firstChild.nodeValue = data.message + " ";
          }
          schedule(Math.max(1, data.retry_in || 1));
        } else {
          swapPage();
        }
      })
      .catch(function () {
        failures += 1;
        if (failures >= 3) { fallback(); } else { schedule(2); }
      });
  }

  function schedule(seconds) {
    window.clearInterval(timer);
    remaining = seconds;
    show(remaining);
    timer = window.setInterval(function () {
      remaining -= 1;
      show(remaining);
      if (remaining <= 0) {
        window.clearInterval(timer);
        poll();
      }
    }, 1000);
  }

  schedule(remaining);
})();

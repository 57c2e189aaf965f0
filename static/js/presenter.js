/*
 * "Show technical details" in presenter mode (progressive enhancement; CSP: script-src 'self').
 *
 *   <form id="technical-form" method="post" action="/presenter/details">
 *     <input name="csrf_token"> <input name="state" value="on|off"> <input name="next">
 *     <button id="technical-toggle" aria-controls="id1 id2" aria-expanded="false">Show technical details</button>
 *   </form>
 *   … <section data-technical hidden> …
 *
 * Without JavaScript the form posts and the page comes back with the panels shown or hidden.
 * With it, every [data-technical] element is shown or hidden at once, and the choice is sent in
 * the background (Accept: application/json) so the next page remembers it. A link to an
 * anchor inside a hidden panel (e.g. "See the exchange that failed") shows the panels first.
 */
(function () {
  "use strict";

  var form = document.getElementById("technical-form");
  var button = document.getElementById("technical-toggle");
  if (!form || !button || !window.fetch || !window.FormData) { return; }
  var state = form.querySelector('input[name="state"]');

  function shown() { return button.getAttribute("aria-expanded") === "true"; }

  function apply(show) {
    var panels = document.querySelectorAll("[data-technical]");
    for (var i = 0; i < panels.length; i++) { panels[i].hidden = !show; }
    button.setAttribute("aria-expanded", show ? "true" : "false");
    button.textContent = show ? "Hide technical details" : "Show technical details";
    if (state) { state.value = show ? "off" : "on"; }   // what the next press asks for
  }

  function remember(show) {
    var data = new FormData(form);
    data.set("state", show ? "on" : "off");
    return fetch(form.action, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      headers: { "Accept": "application/json" }
    }).then(function (resp) {
      if (!resp.ok) { throw new Error("HTTP " + resp.status); }
    });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var show = !shown();
    apply(show);
    remember(show).catch(function () {
      // not remembered (e.g. the form expired): the page still shows what was asked for
      button.setAttribute("data-remember-failed", "true");
    });
  });

  // a link to something inside a hidden technical panel reveals the panels first
  document.addEventListener("click", function (event) {
    var link = event.target.closest ? event.target.closest('a[href^="#"]') : null;
    if (!link || shown()) { return; }
    var id = link.getAttribute("href").slice(1);
    try { id = decodeURIComponent(id); } catch (e) { /* a malformed escape: use the id as written */ }
    var target = id ? document.getElementById(id) : null;
    if (target && target.closest("[data-technical]")) {
      apply(true);
      remember(true).catch(function () { /* the panels are shown anyway */ });
    }
  });

  // the run page swaps parts of itself when the data arrives (run-status.js): keep the choice
  var observer = window.MutationObserver ? new MutationObserver(function () {
    var show = shown();
    var panels = document.querySelectorAll("[data-technical]");
    for (var i = 0; i < panels.length; i++) {
      if (panels[i].hidden === show) { panels[i].hidden = !show; }
    }
  }) : null;
  if (observer) { observer.observe(document.body, { childList: true, subtree: true }); }
}());

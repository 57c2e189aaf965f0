/*
 * Live webhook events on the run page (progressive enhancement: without JavaScript the list is as
 * of page load and the "Refresh" link reloads it).
 *
 * Polls the run's events.json every few seconds while the page is visible, for a while after the
 * page was opened, and redraws the table and the rejected list with textContent only.
 */
(function () {
  "use strict";

  var box = document.getElementById("webhook-events");
  if (!box || box.getAttribute("data-live") !== "true" || !window.fetch) {
    return;
  }
  var url = box.getAttribute("data-events-url");
  var body = document.getElementById("events-body");
  var status = document.getElementById("events-status");
  var rejectedBox = document.getElementById("events-rejected-box");
  var rejectedList = document.getElementById("events-rejected");
  var EVERY = 3000;
  var STOP_AFTER = 15 * 60 * 1000;
  var started = Date.now();
  var timer = null;
  var lastKey = "";

  function cell(row, text, code) {
    var td = document.createElement("td");
    if (code) {
      var c = document.createElement("code");
      c.textContent = text;
      td.appendChild(c);
    } else {
      td.textContent = text;
    }
    row.appendChild(td);
  }

  function render(data) {
    var events = data.events || [];
    var rejected = data.rejected || [];
    var key = JSON.stringify([events.length, rejected.length, events.length ? events[events.length - 1].uid : ""]);
    status.firstChild.textContent = events.length + (events.length === 1 ? " event" : " events") +
      " received (live, updated " + new Date().toLocaleTimeString() + "). ";
    if (key === lastKey) {
      return;
    }
    lastKey = key;
    body.textContent = "";
    if (!events.length) {
      var empty = document.createElement("tr");
      empty.className = "is-empty-row";
      var td = document.createElement("td");
      td.colSpan = 5;
      td.textContent = "No events yet.";
      empty.appendChild(td);
      body.appendChild(empty);
    }
    events.forEach(function (e) {
      var tr = document.createElement("tr");
      tr.setAttribute("data-uid", e.uid || "");
      cell(tr, e.type || "", true);
      cell(tr, e.ts_shown || "—");
      cell(tr, e.meter_uid || "—");
      cell(tr, e.uid || "—");
      cell(tr, e.received_shown || "");
      body.appendChild(tr);
    });
    rejectedList.textContent = "";
    rejected.forEach(function (e) {
      var li = document.createElement("li");
      var badge = document.createElement("span");
      badge.className = "badge is-error";
      badge.textContent = "rejected";
      li.appendChild(badge);
      li.appendChild(document.createTextNode(" " + (e.type || "(no type)") + " at " + e.received_shown + ": " + e.reason));
      rejectedList.appendChild(li);
    });
    rejectedBox.hidden = !rejected.length;
  }

  function poll() {
    timer = null;
    if (Date.now() - started > STOP_AFTER) {
      status.firstChild.textContent = "Live updates stopped; reload the page to see newer events. ";
      return;
    }
    if (document.hidden) {
      timer = window.setTimeout(poll, EVERY);
      return;
    }
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (resp) {
        if (!resp.ok) {
          throw new Error("HTTP " + resp.status);
        }
        return resp.json();
      })
      .then(function (data) {
        render(data);
        timer = window.setTimeout(poll, EVERY);
      })
      .catch(function () {
        timer = window.setTimeout(poll, EVERY * 3);
      });
  }

  // the first text node of the status line is replaced; the Refresh link stays
  if (!status.firstChild || status.firstChild.nodeType !== 3) {
    status.insertBefore(document.createTextNode(""), status.firstChild);
  }
  timer = window.setTimeout(poll, EVERY);
})();

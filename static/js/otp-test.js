/*
 * The passcode testing page (/otp-test): shows the TEST_<scenario>_<contact> lookup, its scope and
 * the outbox link as you type. Progressive enhancement: without it, the Preview button does the same
 * with a page load, and "Start the flow" checks everything on the server.
 *
 * The server builds the lookup (/otp-test/preview.json), so the page and the flow agree on how a
 * phone number or email is read. While the input is incomplete the last good preview is hidden and
 * a short hint is shown; field errors stay the server's, on submit.
 */
(function () {
  "use strict";

  var form = document.getElementById("otp-form");
  if (!form || !window.fetch || !window.URLSearchParams) {
    return;
  }
  var previewUrl = form.getAttribute("data-preview-url");
  var empty = document.getElementById("otp-preview-empty");
  var body = document.getElementById("otp-preview-body");
  var defaultHint = empty ? empty.textContent : "";
  var timer = null;
  var latest = 0;

  function text(id, value) {
    var el = document.getElementById(id);
    if (el) {
      el.textContent = value;
    }
  }

  function query() {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (key !== "csrf_token" && typeof value === "string") {
        params.append(key, value);
      }
    });
    return params;
  }

  // A field the server marked wrong on submit, that the preview now reads fine: drop the stale
  // error (its message, aria-invalid and the reference to it) so the page doesn't contradict itself.
  function clearFixed(errors) {
    form.querySelectorAll(".field.has-error").forEach(function (field) {
      var list = field.querySelector(".field-errors");
      var name = list && list.id.replace(/-errors$/, "");
      if (!name || errors[name]) {
        return;
      }
      field.classList.remove("has-error");
      list.remove();
      field.querySelectorAll("[aria-invalid]").forEach(function (el) {
        el.removeAttribute("aria-invalid");
      });
      field.querySelectorAll("[aria-describedby]").forEach(function (el) {
        var ids = el.getAttribute("aria-describedby").split(" ").filter(function (id) {
          return id && id !== list.id;
        });
        if (ids.length) {
          el.setAttribute("aria-describedby", ids.join(" "));
        } else {
          el.removeAttribute("aria-describedby");
        }
      });
    });
  }

  function render(data) {
    var errors = data.errors || {};
    var keys = Object.keys(errors);
    clearFixed(errors);
    if (keys.length) {
      var contact = form.querySelector("[name=contact]");
      var typed = contact && contact.value.trim();
      // a half-typed contact is not an error yet: say what is missing, quietly
      empty.textContent = typed || keys.indexOf("contact") < 0 ? errors[keys[0]] : defaultHint;
      empty.hidden = false;
      body.hidden = true;
      return;
    }
    empty.hidden = true;
    body.hidden = false;
    text("otp-lookup-type", data.lookup_type);
    text("otp-lookup", data.lookup);
    text("otp-scope", data.scope_readable);
    text("otp-scope-encoded", data.scope);
    var outbox = document.getElementById("otp-outbox");
    if (outbox && data.outbox_url) {
      outbox.setAttribute("href", data.outbox_url);
    }
  }

  function refresh() {
    var ticket = ++latest;
    fetch(previewUrl + "?" + query().toString(), {
      headers: { Accept: "application/json" },
      credentials: "same-origin"
    })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (data && ticket === latest) {
          render(data);
        }
      })
      .catch(function () { /* keep what is shown; Preview and Start still work */ });
  }

  function soon() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 200);
  }

  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
})();

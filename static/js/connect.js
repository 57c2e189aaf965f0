/*
 * Live Review on the demo site's home page (progressive enhancement; the page works without it:
 * the "Update preview" button does the same with a page load, and the test-identifier chips are
 * plain links).
 *
 * - Any change in the connect form asks /preview.json for the scope and authorization URL and
 *   updates the Review section in place.
 * - A test-identifier chip fills in the lookup type and value instead of reloading the page.
 */
(function () {
  "use strict";

  var form = document.getElementById("connect-form");
  if (!form || !window.fetch || !window.URLSearchParams) {
    return;
  }
  var previewUrl = form.getAttribute("data-preview-url");
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

  function render(data) {
    var error = document.getElementById("preview-error");
    var preview = document.getElementById("preview");
    if (data.error) {
      error.textContent = data.error;
      error.hidden = false;
      preview.hidden = true;
      return;
    }
    error.hidden = true;
    preview.hidden = false;
    text("scope-decoded", data.scope);
    text("scope-encoded", data.scope_encoded);
    text("authorization-url", data.url);
    var list = document.getElementById("scope-explained");
    if (list) {
      list.textContent = "";
      data.explained.forEach(function (line) {
        var li = document.createElement("li");
        li.textContent = line;
        list.appendChild(li);
      });
    }
  }

  function refresh() {
    var ticket = ++latest;
    fetch(previewUrl + "?" + query().toString(), {
      headers: { Accept: "application/json" },
      credentials: "same-origin"
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data && ticket === latest) {
          render(data);
        }
      })
      .catch(function () { /* keep the last preview; the Update button still works */ });
  }

  function soon() {
    window.clearTimeout(timer);
    timer = window.setTimeout(refresh, 250);
  }

  form.addEventListener("input", soon);
  form.addEventListener("change", soon);

  var chips = document.querySelectorAll("#test-identifiers a.chip[data-lookup-type]");
  Array.prototype.forEach.call(chips, function (chip) {
    chip.addEventListener("click", function (event) {
      var type = chip.getAttribute("data-lookup-type");
      var radio = form.querySelector('input[name="lookup_type"][value="' + type + '"]');
      var value = form.querySelector('input[name="lookup_value"]');
      if (!radio || !value) {
        return; // fall back to the link
      }
      event.preventDefault();
      radio.checked = true;
      value.value = chip.getAttribute("data-lookup-value");
      Array.prototype.forEach.call(chips, function (other) {
        other.classList.remove("is-active");
        other.removeAttribute("aria-current");
      });
      chip.classList.add("is-active");
      chip.setAttribute("aria-current", "true");
      refresh();
    });
  });
}());

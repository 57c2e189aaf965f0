/*
 * Copy-to-clipboard, as progressive enhancement (CSP: script-src 'self'; no inline code).
 *
 *   <pre id="redirect-uri">https://…</pre>
 *   <button type="button" data-copy-target="redirect-uri" hidden>
 *     <span class="copy-label">Copy</span><span class="visually-hidden"> redirect URI</span>
 *   </button>
 *
 * Buttons are rendered with `hidden` (useless without JS); this script un-hides them.
 * A click copies the text of #ID (the value, for form fields) and briefly shows "Copied".
 * If the clipboard is unavailable, the text is selected so the user can press Ctrl/Cmd+C.
 */
(function () {
  "use strict";

  var RESET_MS = 1800;
  var liveRegion = null;

  function announce(message) {
    if (!liveRegion) {
      liveRegion = document.createElement("span");
      liveRegion.className = "visually-hidden";
      liveRegion.setAttribute("aria-live", "polite");
      liveRegion.setAttribute("role", "status");
      document.body.appendChild(liveRegion);
    }
    liveRegion.textContent = "";
    window.setTimeout(function () { liveRegion.textContent = message; }, 50);
  }

  function textOf(el) {
    var tag = el.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") {
      return el.value;
    }
    return el.textContent;
  }

  function selectContents(el) {
    var tag = el.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA") {
      el.focus();
      el.select();
      return;
    }
    var range = document.createRange();
    range.selectNodeContents(el);
    var sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }

  function legacyCopy(text) {
    var scratch = document.createElement("textarea");
    scratch.value = text;
    scratch.setAttribute("readonly", "");
    scratch.setAttribute("aria-hidden", "true");
    scratch.tabIndex = -1;
    scratch.className = "copy-scratch";
    document.body.appendChild(scratch);
    scratch.select();
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    document.body.removeChild(scratch);
    return ok;
  }

  function writeText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () {
        if (!legacyCopy(text)) { throw new Error("copy failed"); }
      });
    }
    return new Promise(function (resolve, reject) {
      if (legacyCopy(text)) { resolve(); } else { reject(new Error("copy failed")); }
    });
  }

  function labelNode(button) {
    return button.querySelector(".copy-label") || button;
  }

  function flash(button, message, stateClass) {
    var node = labelNode(button);
    if (!button.hasAttribute("data-copy-original")) {
      button.setAttribute("data-copy-original", node.textContent);
    }
    node.textContent = message;
    button.classList.add(stateClass);
    window.clearTimeout(button._copyTimer);
    button._copyTimer = window.setTimeout(function () {
      node.textContent = button.getAttribute("data-copy-original");
      button.removeAttribute("data-copy-original");
      button.classList.remove("is-copied", "is-copy-failed");
    }, RESET_MS);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy-target]") : null;
    if (!button) { return; }
    var target = document.getElementById(button.getAttribute("data-copy-target"));
    if (!target) { return; }
    event.preventDefault();
    var text = textOf(target);
    writeText(text).then(function () {
      flash(button, "Copied", "is-copied");
      announce("Copied to clipboard");
    }, function () {
      selectContents(target);
      flash(button, "Press Ctrl+C", "is-copy-failed");
      announce("Could not copy automatically. The text is selected; press Control C or Command C.");
    });
  });

  function reveal() {
    var buttons = document.querySelectorAll("[data-copy-target][hidden]");
    for (var i = 0; i < buttons.length; i++) {
      buttons[i].hidden = false;
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", reveal);
  } else {
    reveal();
  }
})();

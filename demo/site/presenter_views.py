"""Presenter mode, branding and the visitor's reset (issue 5). Thin views; the colour maths and
the logo checks live in :mod:`.branding`.

* ``session["presenter"]`` (bool) switches presenter mode for one visitor; without it the
  configured ``presenter`` applies. A preset link may set it too.
* ``session["technical"]`` (bool) shows the technical panels in presenter mode.
* ``POST /reset`` deletes this visitor's runs and what hangs off them; settings stay.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import Blueprint, Response, abort, current_app, flash, redirect, request, session, url_for
from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import AnyOf

from ..config import config_file
from . import branding
from . import runs as runs_mod

bp = Blueprint("presenter", __name__)
log = logging.getLogger(__name__)

#: what an image response may do if opened on its own: nothing (no script, no plugin, sandboxed)
IMAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


class SwitchForm(FlaskForm):
    """The presenter switch and the "technical details" switch: the wanted state and where to go back."""

    state = HiddenField(validators=[AnyOf(["on", "off"])])
    next = HiddenField()


class StartOverForm(FlaskForm):
    pass


# --- state read by the templates (see demo.site.site_globals) -----------------------------------

def presenter_on(settings: dict) -> bool:
    value = session.get("presenter")
    return value if isinstance(value, bool) else bool(settings.get("presenter"))


def technical_shown(settings: dict) -> bool:
    return not presenter_on(settings) or session.get("technical") is True


@dataclass
class _LogoState:
    key: tuple
    logo: branding.Logo | None


def current_logo() -> branding.Logo | None:
    """The configured logo, read again only when the file changes; a missing or bad file is
    logged once (per change) and gives None, so the layout shows the initial-letter mark."""
    settings = current_app.extensions["gbc_site"].settings
    if not settings.get("brand_logo"):
        return None
    path = config_file(settings, "brand_logo")
    try:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
    except OSError:
        key = (str(path), None, None)
    cached = current_app.extensions.get("gbc_brand_logo")
    if cached is not None and cached.key == key:
        return cached.logo
    try:
        logo = branding.load_logo(path)
    except branding.LogoError as exc:
        log.warning("%s; showing the initial-letter mark instead", exc)
        logo = None
    current_app.extensions["gbc_brand_logo"] = _LogoState(key, logo)
    return logo


def _back(target: str | None) -> str:
    """A local path to go back to (never another site), or the home page."""
    target = (target or "").strip()
    if target.startswith("/") and not target.startswith(("//", "/\\")) and "\\" not in target \
            and not any(ord(ch) < 32 for ch in target):
        return target
    return url_for("site.home")


def _wants_json() -> bool:
    return request.accept_mimetypes.best == "application/json"


# --- views ---------------------------------------------------------------------------------------

@bp.post("/presenter")
def toggle():
    """Switch presenter mode on or off for this visitor (works without JavaScript)."""
    form = SwitchForm()
    if not form.validate_on_submit():
        abort(400, "Say whether presenter mode should be on or off.")
    session["presenter"] = form.state.data == "on"
    return redirect(_back(form.next.data), 303)


@bp.post("/presenter/details")
def details():
    """Show or hide the technical panels in presenter mode; presenter.js calls it in the
    background (Accept: application/json) after toggling them in place."""
    form = SwitchForm()
    if not form.validate_on_submit():
        abort(400, "Say whether the technical details should be shown.")
    session["technical"] = form.state.data == "on"
    if _wants_json():
        return {"technical": session["technical"]}
    return redirect(_back(form.next.data), 303)


@bp.post("/reset")
def reset():
    """Start over: delete this visitor's runs and everything hanging off them."""
    if not StartOverForm().validate_on_submit():
        abort(400, "The form was not valid.")
    visitor = session.get("visitor")
    if visitor:
        with current_app.extensions["gbc_site"].db.session() as s:
            runs_mod.delete_visitor_runs(s, visitor)
    session.pop("technical", None)
    flash("Your runs were cleared", "ok")
    return redirect(url_for("site.home"), 303)


@bp.get("/brand.css")
def brand_css():
    """The accent colour as CSS custom properties (see branding.stylesheet)."""
    settings = current_app.extensions["gbc_site"].settings
    return Response(branding.stylesheet(settings.get("brand_accent") or None), mimetype="text/css")


@bp.get("/brand/logo")
def logo():
    found = current_logo()
    if found is None:
        abort(404, "No logo is configured, or the configured file is not a usable image.")
    return Response(found.data, mimetype=found.mimetype, headers={
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": IMAGE_CSP,
        "Content-Disposition": "inline",
    })

"""Shareable preset links and the embed snippet (issue 5). Thin views: signing, loading and
describing presets live in :mod:`.presets`.

* ``/share`` makes a signed, expiring link from the visitor's utility and client_id and the
  connect form's choices, and shows the embed snippet with the current frame allow-list.
* ``/p/<token>`` opens the home page with the link's choices; a link naming another utility or
  client_id asks first (POST, CSRF) before saving them as the visitor's settings. A bad link
  changes nothing.
"""
from __future__ import annotations

from html import escape

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_wtf import FlaskForm
from wtforms import BooleanField, SelectField, SubmitField
from wtforms.validators import InputRequired

from ..tokens import mask
from . import presets
from . import runs as runs_mod
from .forms import ConnectForm
from .models import VisitorSettings
from .views import _connect_form, _timeout, connect_choices, ctx, current_settings, public, visitor_id

bp = Blueprint("share", __name__)

EMBED_WIDTH, EMBED_HEIGHT = 1024, 900


class ShareForm(ConnectForm):
    expires_in = SelectField("The link expires after", coerce=int, validators=[InputRequired()])
    presenter = BooleanField("Open in presenter mode")
    submit = SubmitField("Make the link")


class ConfirmForm(FlaskForm):
    save = SubmitField("Save these settings and continue")
    keep = SubmitField("Keep my settings; only fill in the form")


def _signing_key() -> list[str]:
    """The site's keys for preset links, newest last: links made before a key rotation still open."""
    return [*current_app.config["SECRET_KEY_FALLBACKS"], current_app.config["SECRET_KEY"]]


def _share_form(eff: dict) -> ShareForm:
    """The home page's connect form (same defaults, same query handling) plus the link's options."""
    default_ttl = presets.default_expiry(ctx().settings["preset_link_ttl"])
    form = _connect_form(eff, ShareForm)
    if request.method == "GET" and "expires_in" not in request.args:
        form.expires_in.data = default_ttl
    form.expires_in.choices = presets.expiry_choices(default_ttl)
    return form


def embed_snippet(src: str, company: str) -> str:
    """The iframe to paste (shown escaped on the page; its own attributes escaped for the paste)."""
    src, company = escape(src, quote=True), escape(company, quote=True)
    return (f'<iframe src="{src}" title="{company}: Green Button Connect demo" '
            f'width="{EMBED_WIDTH}" height="{EMBED_HEIGHT}" allow="clipboard-write"></iframe>')


@bp.route("/share", methods=["GET", "POST"])
def share_page():
    settings = ctx().settings
    with ctx().db.session() as s:
        eff = current_settings(s)
    form = _share_form(eff)
    link = preset = review = None
    status = 200
    if request.method == "POST":
        valid = form.validate_on_submit()
        choices = connect_choices(form)
        review = runs_mod.review(eff, _timeout(), **choices)
        if review["error"]:
            flash(review["error"], "error")
        if valid and not review["error"]:
            try:
                token, preset = presets.make(
                    _signing_key(), ttl=form.expires_in.data, utility=eff["utility"], client_id=eff["client_id"],
                    **{**choices, "function_blocks": tuple(sorted(set(choices["function_blocks"])))},
                    presenter=bool(form.presenter.data))
            except ValueError as exc:
                flash(f"This link cannot be made: {exc}.", "error")
            else:
                link = settings["site_url"].rstrip("/") + url_for(".open_preset", token=token)
        if link is None:
            status = 400
    company = settings["company_name"]
    return render_template(
        "site/share.html", form=form, eff=public(eff), link=link, review=review,
        description=presets.describe(preset) if preset else None, expires=preset.expires_at if preset else None,
        snippet=embed_snippet(link or settings["site_url"].rstrip("/") + "/", company),
        embed_origins=settings["embed_origins"], test_customers=ctx().test_customers,
        nav_active="share"), status


def _refuse(exc: presets.PresetError):
    code = 410 if isinstance(exc, presets.PresetExpired) else 400
    title = "This link has expired" if code == 410 else "This link is not valid"
    return render_template("site/error.html", code=code, title=title, message=exc.message), code


def secret_note(new_client_id: str, configured_client_id: str, saved_secret: str | None,
                own_token_url: bool = False) -> str:
    """What happens to the client secret when the link's client_id becomes the visitor's.
    ``own_token_url``: the visitor set a token endpoint other than the configured one, where the
    configured secret is never sent (:func:`.runs.effective_settings`)."""
    if saved_secret:
        return (f"The client secret saved in this browser ({mask(saved_secret)}) stays saved. If it is not the "
                f"secret of {new_client_id}, enter the right one on Settings before you connect.")
    if new_client_id == configured_client_id and not own_token_url:
        return f"The configured client secret applies: it belongs to {configured_client_id}."
    if new_client_id == configured_client_id:
        return (f"The configured client secret of {configured_client_id} is only sent to the configured token "
                f"endpoint, and yours is another: enter the client secret on Settings before you connect.")
    return (f"Links never carry secrets, and the configured client secret is only used with the configured "
            f"client_id ({configured_client_id}). After saving, enter the client secret of {new_client_id} "
            f"on Settings before you connect.")


def _go_home(preset: presets.Preset):
    if preset.presenter:
        session["presenter"] = True
    return redirect(url_for("site.home") + "?" + preset.home_query() + "#step-customer", 303)


@bp.route("/p/<token>", methods=["GET", "POST"])
def open_preset(token: str):
    try:
        preset = presets.load(_signing_key(), token)
    except presets.PresetError as exc:
        return _refuse(exc)
    with ctx().db.session() as s:
        eff = current_settings(s)
        changes = [(label, eff[key], getattr(preset, key)) for key, label in
                   (("utility", "Utility"), ("client_id", "client_id")) if eff[key] != getattr(preset, key)]
        if not changes:
            return _go_home(preset)
        row = s.get(VisitorSettings, visitor_id())
        saved_secret = ctx().vault.decrypt(row.client_secret_enc) if row is not None else None
        own_token = eff["token_url"] != ctx().settings["token_url"]
        form = ConfirmForm()
        if request.method == "POST":
            if not form.validate_on_submit():
                abort(400, "The form was not valid.")
            if form.save.data:
                values = {**(row.values if row is not None else {}),
                          "utility": preset.utility, "client_id": preset.client_id}
                runs_mod.save_visitor_settings(s, visitor_id(), values, None, ctx().vault)
                message = f"Settings saved from the link: utility {preset.utility}, client_id {preset.client_id}."
                if preset.client_id != ctx().settings["client_id"] or saved_secret:
                    message += " " + secret_note(preset.client_id, ctx().settings["client_id"], saved_secret,
                                                 own_token)
                flash(message, "ok")
            return _go_home(preset)
    return render_template("site/preset.html", form=form, token=token, changes=changes,
                           secret_note=secret_note(preset.client_id, ctx().settings["client_id"], saved_secret,
                                                   own_token)
                           if any(label == "client_id" for label, _old, _new in changes) else None,
                           description=presets.describe(preset), nav_active="share")

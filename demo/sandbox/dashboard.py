"""The third party's dashboard in the sandbox, as on UtilityAPI ("you will see an
Authorization appear on your dashboard"): sign in with the registration's
client_id and client_secret, see authorizations and revoke them, and change the
OAuth, API, webhook and Green Button hosting settings (reference §1.1).

Views are thin: the rules live in :mod:`.registrations` and :mod:`.portal`.
The session holds only the signed-in client_id. A new secret or token is shown
once, on the page after the POST that made it: it crosses that redirect
encrypted in the session cookie and is removed when shown (only its hash, or for
webhook secrets its encrypted form, is stored).
"""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, session, url_for
from werkzeug.wrappers import Response

from .. import ratelimit
from ..lookup import Contact
from ..storage import Vault, utcnow
from ..tokens import digest, mask
from . import lifecycle, portal, registrations, webhooks
from .forms import ActionForm, ApiTokenForm, RedirectUrisForm, SignInForm, WebhookForm
from .jsonapi import event_sort_key
from .models import AuthorizationRow, ClientRow, EventRow
from .oauth import ctx
from .resources import resource_base

bp = Blueprint("dashboard", __name__, url_prefix="/dashboard")

SESSION_KEY = "dashboard"
SECRET_KEY_MARK = "dashboard_secret"   # which client secret the session signed in with
REVEAL_KEY = "dashboard_reveal"


def _secret_mark(row: ClientRow) -> str:
    """A fingerprint of the registration's current secret (a hash of its hash; never the secret):
    a rotation changes it, which signs out every other dashboard session."""
    return digest("dashboard-session:" + row.secret_hash)[:16]


def _signed_in(row: ClientRow) -> None:
    session[SESSION_KEY] = row.client_id
    session[SECRET_KEY_MARK] = _secret_mark(row)


# ---- sign-in --------------------------------------------------------------------------------

def _client(s) -> ClientRow:
    """The signed-in registration; anyone else goes to the sign-in page."""
    client_id = session.get(SESSION_KEY)
    row = s.get(ClientRow, client_id) if client_id else None
    if row is None or session.get(SECRET_KEY_MARK) != _secret_mark(row):
        session.pop(SESSION_KEY, None)
        session.pop(SECRET_KEY_MARK, None)
        abort(redirect(url_for(".sign_in"), 303))
    return row


def _checked(form) -> None:
    """A button's POST: only its CSRF token needs checking."""
    if not form.validate_on_submit():
        abort(400, "The form was missing its security token or it had expired. Reload the page and try again.")


@bp.get("/")
def home():
    if session.get(SESSION_KEY):
        return redirect(url_for(".authorizations"), 303)
    return redirect(url_for(".sign_in"), 303)


@bp.route("/sign-in", methods=["GET", "POST"])
@ratelimit.limited(ratelimit.SIGN_IN)
def sign_in():
    form = SignInForm()
    error, status = None, 200
    if form.validate_on_submit():
        with ctx().db.session() as s:
            row = registrations.sign_in(s, form.client_id.data, form.client_secret.data)
            if row is not None:
                session.pop(REVEAL_KEY, None)
                _signed_in(row)
                return redirect(url_for(".authorizations"), 303)
        error, status = "That client_id and client_secret don't match a registration. Check both and try again.", 401
    elif form.is_submitted():
        error, status = "Enter both your client_id and your client_secret.", 422
    form.client_secret.data = ""   # never echo a secret back
    return render_template("sandbox/dashboard/sign_in.html", form=form, error=error), status


@bp.post("/sign-out")
def sign_out():
    _checked(ActionForm())
    session.pop(SESSION_KEY, None)
    session.pop(SECRET_KEY_MARK, None)
    session.pop(REVEAL_KEY, None)
    flash("You're signed out of the dashboard.", "ok")
    return redirect(url_for(".sign_in"), 303)


def _render(template: str, client: ClientRow, status: int = 200, **context):
    # a new secret not shown on the page right after it was made is dropped, never shown later
    session.pop(REVEAL_KEY, None)
    return render_template(f"sandbox/dashboard/{template}", client=client, **context), status


# ---- one-time display -----------------------------------------------------------------------

def _vault() -> Vault:
    return registrations.vault(ctx().settings)


def _reveal(kind: str, value: str, **info) -> None:
    """Carry a new secret to the next page, encrypted (the cookie is only signed)."""
    session[REVEAL_KEY] = {"kind": kind, "value": _vault().encrypt(value), **info}


def _take_reveal(kind: str) -> dict | None:
    """The secret to show now, once: it leaves the session as it is shown."""
    data = session.get(REVEAL_KEY)
    if not data or data.get("kind") != kind:
        return None
    session.pop(REVEAL_KEY, None)
    value = _vault().decrypt(data.get("value"))
    return {**data, "value": value} if value else None


# ---- authorizations -------------------------------------------------------------------------

def _masked_account(row: AuthorizationRow) -> str:
    return mask(row.account_number, keep=4)


def _masked_email(row: AuthorizationRow) -> str:
    return Contact("email", row.customer_email).masked if row.customer_email else ""


@bp.get("/authorizations")
def authorizations():
    with ctx().db.session() as s:
        client = _client(s)
        rows = (s.query(AuthorizationRow).filter_by(client_id=client.client_id)
                .order_by(AuthorizationRow.created.desc()).limit(500).all())
        listed = [{"row": row, "status": portal.status_of(row), "account": _masked_account(row),
                   "email": _masked_email(row)} for row in rows]
        return _render("authorizations.html", client, rows=listed)


def _own_authorization(s, client: ClientRow, uid: str) -> AuthorizationRow:
    row = s.get(AuthorizationRow, uid) if len(uid) <= 32 else None
    if row is None or row.client_id != client.client_id:
        abort(404, "You have no authorization with that uid.")
    return row


@bp.get("/authorizations/<uid>")
def authorization(uid: str):
    with ctx().db.session() as s:
        client = _client(s)
        row = _own_authorization(s, client, uid)
        summary = portal.summarize(s, ctx().directory, row, company=client.company_name)
        events = sorted(s.query(EventRow).filter(EventRow.authorization_uid == uid, EventRow.ts <= utcnow()),
                        key=event_sort_key)
        return _render("authorization.html", client, summary=summary, row=row, events=events,
                       account=_masked_account(row), email=_masked_email(row),
                       wait=lifecycle.seconds_until_ready(row))


@bp.post("/authorizations/<uid>/revoke")
def revoke(uid: str):
    _checked(ActionForm())
    with ctx().db.session() as s:
        client = _client(s)
        row = _own_authorization(s, client, uid)
        if lifecycle.revoke(s, row, by="third_party"):
            flash(f"Authorization {uid} is revoked: its tokens no longer work.", "ok")
        else:
            flash(f"Authorization {uid} was not active, so there was nothing to revoke.", "info")
    return redirect(url_for(".authorization", uid=uid), 303)


# ---- OAuth settings -------------------------------------------------------------------------

@bp.route("/settings/oauth", methods=["GET", "POST"])
def oauth_settings():
    with ctx().db.session() as s:
        client = _client(s)
        form = RedirectUrisForm()
        error = None
        if form.validate_on_submit():
            try:
                uris = registrations.parse_redirect_uris(form.redirect_uris.data)
            except registrations.SettingsError as exc:
                error = str(exc)
            else:
                registrations.set_redirect_uris(client, uris)
                flash(f"Saved {len(uris)} redirect URI{'' if len(uris) == 1 else 's'}.", "ok")
                return redirect(url_for(".oauth_settings"), 303)
        elif form.is_submitted():
            error = "The form was not valid: reload the page and try again."
        if not form.is_submitted():
            form.redirect_uris.data = "\n".join(client.redirect_uris or [])
        sandbox_url = ctx().settings["sandbox_url"].rstrip("/")
        in_config = registrations.config_entry(ctx().settings, client.client_id) is not None
        return _render("oauth.html", client, 422 if error else 200, form=form, error=error,
                       authorize_url=f"{sandbox_url}/oauth/authorize", token_url=f"{sandbox_url}/oauth/token",
                       secret=_take_reveal("client_secret"), in_config=in_config)


@bp.post("/settings/oauth/secret")
def rotate_secret():
    _checked(ActionForm())
    with ctx().db.session() as s:
        client = _client(s)
        _reveal("client_secret", registrations.rotate_secret(client))
        _signed_in(client)   # this session stays signed in; every other one is signed out
    return redirect(url_for(".oauth_settings"), 303)


@bp.post("/settings/oauth/reset")
def reset_oauth():
    _checked(ActionForm())
    with ctx().db.session() as s:
        client = _client(s)
        if not registrations.reset_to_config(client, ctx().settings):
            abort(409, "This registration is not in the sandbox's configuration, so there is nothing to reset to.")
        _signed_in(client)
    flash("The client secret and redirect URIs are those of the configuration again.", "ok")
    return redirect(url_for(".oauth_settings"), 303)


# ---- API settings ---------------------------------------------------------------------------

@bp.route("/settings/api", methods=["GET", "POST"])
def api_settings():
    with ctx().db.session() as s:
        client = _client(s)
        form = ApiTokenForm()
        error = None
        if form.validate_on_submit():
            try:
                row, token = registrations.create_api_token(
                    s, client.client_id, form.name.data or "", int(ctx().settings["sandbox_api_token_years"]))
            except registrations.SettingsError as exc:
                error = str(exc)
            else:
                _reveal("api_token", token, name=row.name)
                return redirect(url_for(".api_settings"), 303)
        elif form.is_submitted():
            error = "The form was not valid: a name has at most 200 characters."
        now = utcnow()
        tokens = [{"row": t, "masked": "••••" + t.last4, "expired": t.expires <= now}
                  for t in registrations.api_tokens(s, client.client_id)]
        return _render("api.html", client, 422 if error else 200, form=form, error=error, tokens=tokens,
                       new_token=_take_reveal("api_token"), years=ctx().settings["sandbox_api_token_years"])


@bp.post("/settings/api/<int:token_id>/expire")
def expire_api_token(token_id: int):
    _checked(ActionForm())
    with ctx().db.session() as s:
        client = _client(s)
        if not registrations.expire_api_token(s, client.client_id, token_id):
            abort(404, "You have no API token with that id.")
    flash("The API token is expired: it no longer works.", "ok")
    return redirect(url_for(".api_settings"), 303)


# ---- Webhook settings -----------------------------------------------------------------------

@bp.route("/settings/webhooks", methods=["GET", "POST"])
def webhook_settings():
    with ctx().db.session() as s:
        client = _client(s)
        form = WebhookForm()
        error = None
        if form.validate_on_submit():
            try:
                row, secret = registrations.create_webhook(s, _vault(), client.client_id, form.url.data,
                                                           form.event_types.data or [])
            except registrations.SettingsError as exc:
                error = str(exc)
            else:
                _reveal("webhook_secret", secret, url=row.url)
                return redirect(url_for(".webhook_settings"), 303)
        elif form.is_submitted():
            error = "Check the highlighted field."
        return _render("webhooks.html", client, 422 if error else 200, form=form, error=error,
                       endpoints=registrations.webhooks(s, client.client_id),
                       events=registrations.recent_events(s, client.client_id),
                       new_secret=_take_reveal("webhook_secret"))


def _webhook_action(endpoint_id: int, change, done: str) -> Response:
    _checked(ActionForm())
    with ctx().db.session() as s:
        client = _client(s)
        if not change(s, client.client_id, endpoint_id):
            abort(404, "You have no webhook endpoint with that id.")
    flash(done, "ok")
    return redirect(url_for(".webhook_settings"), 303)


@bp.post("/settings/webhooks/<int:endpoint_id>/disable")
def disable_webhook(endpoint_id: int):
    return _webhook_action(endpoint_id, lambda s, c, i: registrations.set_webhook_disabled(s, c, i, True),
                           "Endpoint disabled: it receives no events until enabled again.")


@bp.post("/settings/webhooks/<int:endpoint_id>/enable")
def enable_webhook(endpoint_id: int):
    return _webhook_action(endpoint_id, lambda s, c, i: registrations.set_webhook_disabled(s, c, i, False),
                           "Endpoint enabled.")


@bp.post("/settings/webhooks/<int:endpoint_id>/delete")
def delete_webhook(endpoint_id: int):
    return _webhook_action(endpoint_id, registrations.delete_webhook, "Endpoint deleted.")


@bp.post("/settings/webhooks/<int:endpoint_id>/ping")
def ping(endpoint_id: int):
    """A ``ping`` event to one endpoint, delivered now (retried like any event if it fails)."""
    _checked(ActionForm())
    with ctx().db.session() as s:
        client_id = _client(s).client_id
    if not registrations.valid_id(endpoint_id):
        abort(404, "You have no webhook endpoint with that id.")
    try:
        event = webhooks.send_ping(ctx().db, ctx().settings, client_id, endpoint_id,
                                   dispatcher=current_app.extensions.get("gbc_webhooks"))
    except LookupError:
        abort(404, "You have no webhook endpoint with that id.")
    result = event.get("last_result") or "queued"
    delivered = bool(event.get("is_delivered")) or result.startswith("200")
    flash(f"Ping {'delivered' if delivered else 'not delivered yet'}: {result}.", "ok" if delivered else "warning")
    return redirect(url_for(".webhook_settings"), 303)


# ---- Green Button hosting -------------------------------------------------------------------

@bp.get("/settings/green-button")
def green_button_settings():
    with ctx().db.session() as s:
        client = _client(s)
        return _render("green_button.html", client, token=_take_reveal("registration_token"),
                       resource_base=resource_base(ctx().settings["sandbox_url"]))


@bp.post("/settings/green-button/token")
def rotate_registration_token():
    _checked(ActionForm())
    with ctx().db.session() as s:
        client = _client(s)
        _reveal("registration_token", registrations.rotate_registration_token(client))
    return redirect(url_for(".green_button_settings"), 303)


@bp.app_template_filter("utc")
def _utc(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M UTC") if value else "—"


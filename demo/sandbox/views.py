"""The sandbox utility portal: /oauth/authorize -> lookup -> passcode -> consent
-> redirect, the token endpoint and the outbox. Views are thin: the rules live
in :mod:`.portal`, :mod:`.custodian` and Authlib."""
from __future__ import annotations

import time
from urllib.parse import urlencode

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Request, abort, current_app, redirect, render_template, request, session, url_for
from werkzeug.test import EnvironBuilder
from wtforms.fields.choices import SelectChoice

from ..lookup import LOOKUP_LABELS, LookupError_
from ..scope import REQUESTABLE_FUNCTION_BLOCKS, ScopeError, describe_function_block
from ..web import allow_form_action, csrf
from . import portal
from .forms import ConsentForm, LookupForm, OtpForm, ResendForm
from .models import ClientRow, OutboxMessage, PendingAuthorization
from .oauth import ctx

bp = Blueprint("sandbox", __name__)


def server():
    return current_app.extensions["gbc_oauth_server"]


def _authorize_request(args: dict) -> Request:
    """The original ``/oauth/authorize`` request, rebuilt for Authlib at consent time."""
    builder = EnvironBuilder(path="/oauth/authorize", base_url=ctx().settings["sandbox_url"],
                             query_string=urlencode(args))
    return Request(builder.get_environ())


def _error_page(error: OAuth2Error, status: int = 400):
    return render_template(
        "sandbox/error.html", code=status, title="This link to share your data isn't valid",
        message=(f"{error.description or error.error} The company that sent you here has a "
                 "configuration problem; nothing was shared. (OAuth error: " + error.error + ")"),
    ), status


@bp.get("/")
def index():
    return render_template("sandbox/index.html", customers=ctx().directory.customers,
                           lookup_labels=LOOKUP_LABELS)


@bp.get("/oauth/authorize")
def authorize():
    try:
        grant = server().get_consent_grant(end_user=None)
    except OAuth2Error as error:
        if error.redirect_uri:
            # the client and its redirect_uri are known: report back to it (RFC 6749 §4.1.2.1)
            return server().handle_error_response(None, error)
        return _error_page(error)
    args = request.args.to_dict(flat=True)
    with ctx().db.session() as s:
        pending = portal.begin(s, grant.client.get_client_id(), args)
        session["pending"] = pending.id
        if portal.try_prefill(s, pending, ctx().directory, ctx().settings, _company(s, pending)):
            return redirect(url_for(".verify"), 303)
    return redirect(url_for(".lookup"), 303)


def _pending(s) -> PendingAuthorization:
    pending_id = session.get("pending")
    pending = s.get(PendingAuthorization, pending_id) if pending_id else None
    if pending is None:
        abort(400, "There is no data-sharing request in progress in this browser. Start again from "
                   "the website of the company that asked for your data.")
    return pending


def _company(s, pending) -> str:
    row = s.get(ClientRow, pending.client_id)
    return row.company_name if row else pending.client_id


@bp.route("/authorize/lookup", methods=["GET", "POST"])
def lookup():
    with ctx().db.session() as s:
        pending = _pending(s)
        form = LookupForm()
        if not form.is_submitted():
            prefill = portal.prefill(pending)
            if prefill:  # a prefill that found nobody: let the customer correct it
                form.method.data, form.value.data = prefill
        error = None
        if form.validate_on_submit():
            try:
                result = ctx().directory.find(form.method.data, form.value.data)
            except LookupError_ as exc:
                error = str(exc)
            else:
                if result.found:
                    portal.use_lookup(s, pending, result, form.method.data, ctx().settings,
                                      _company(s, pending))
                    return redirect(url_for(".verify"), 303)
                error = result.message
        elif form.is_submitted():
            error = "Check the highlighted field."
        notice, pending.notice = pending.notice, None
        status = 422 if error else 200
        return render_template("sandbox/lookup.html", form=form, error=error, notice=notice,
                               company=_company(s, pending), step=1), status


@bp.route("/authorize/verify", methods=["GET", "POST"])
def verify():
    with ctx().db.session() as s:
        pending = _pending(s)
        if pending.stage == "lookup":
            return redirect(url_for(".lookup"), 303)
        if pending.stage == "consent":
            return redirect(url_for(".consent"), 303)
        form = OtpForm()
        error = None
        if form.validate_on_submit():
            outcome = portal.verify_otp(pending, form.code.data, ctx().directory,
                                        int(ctx().settings["sandbox_otp_max_attempts"]))
            if outcome.ok:
                return redirect(url_for(".consent"), 303)
            if outcome.restart:
                return redirect(url_for(".lookup"), 303)
            error = outcome.message
        elif form.is_submitted():
            error = form.code.errors[0] if form.code.errors else "Enter the 6-digit passcode."
        return render_template("sandbox/verify.html", form=form, resend=ResendForm(), error=error,
                               contact=portal.contact_of(pending), pending=pending,
                               company=_company(s, pending), step=2), (422 if error else 200)


@bp.post("/authorize/resend")
def resend():
    form = ResendForm()
    if not form.validate_on_submit():
        abort(400, "The form was not valid.")
    with ctx().db.session() as s:
        pending = _pending(s)
        if pending.stage != "otp":
            return redirect(url_for(".lookup"), 303)
        portal.issue_otp(s, pending, ctx().settings, _company(s, pending))
    return redirect(url_for(".verify"), 303)


@bp.route("/authorize/consent", methods=["GET", "POST"])
def consent():
    with ctx().db.session() as s:
        pending = _pending(s)
        if pending.stage != "consent":
            return redirect(url_for(".lookup" if pending.stage == "lookup" else ".verify"), 303)
        client = s.get(ClientRow, pending.client_id)
        customer = ctx().directory.by_account(pending.account_number or "")
        try:
            scope = portal.requested_scope(pending)
        except ScopeError:  # validated at /oauth/authorize; only a changed config gets here
            abort(400, "The requested scope is no longer valid.")
        # choices are anchored to when the request started, so they are the same on every page load
        options = portal.consent_options(scope, now=portal.started_at(pending))
        form = ConsentForm()
        form.history.choices = [SelectChoice(c.value, c.label) for c in options.history]
        form.end.choices = [SelectChoice(c.value, c.label) for c in options.ends]
        form.meters.choices = [SelectChoice(m.uid, f"Meter {m.meter_number} · {m.service_address} · {m.service_tariff}")
                               for m in customer.meters]
        if not form.is_submitted():
            form.history.data = options.history[0].value
            form.end.data = options.ends[0].value
            form.meters.data = [m.uid for m in customer.meters]
        allow_form_action(pending.request_args.get("redirect_uri", ""))
        error = None
        if form.is_submitted():
            valid = form.validate()
            if form.csrf_token.errors:
                abort(400, "The form's security token was missing or expired. Reload the page and try again.")
            declined = bool(form.decline.data)
            if declined or valid:
                request_obj = _authorize_request(pending.request_args)
                try:
                    grant = server().get_consent_grant(request=request_obj, end_user=None)
                except OAuth2Error as exc:
                    return _error_page(exc)
                grant_user = None
                try:
                    if declined:
                        portal.decline(s, pending, customer, scope)
                    else:
                        grant_user = portal.authorize(
                            s, pending, customer, options, history=form.history.data,
                            end=form.end.data, meter_uids=form.meters.data or [],
                            settings=ctx().settings)
                except ValueError as exc:
                    error = str(exc)
                else:
                    s.delete(pending)
                    session.pop("pending", None)
                    s.commit()
                    return server().create_authorization_response(
                        request=request_obj, grant_user=grant_user, grant=grant)
            else:
                error = "Check your choices below."
        blocks = [(fb, REQUESTABLE_FUNCTION_BLOCKS.get(fb) or describe_function_block(fb))
                  for fb in options.blocks]
        return render_template("sandbox/consent.html", form=form, error=error, client=client,
                               customer=customer, options=options, blocks=blocks,
                               now=int(time.time()), step=3), (422 if error else 200)


@bp.post("/oauth/token")
@csrf.exempt
def token():
    return server().create_token_response()


@bp.get("/outbox")
def outbox():
    with ctx().db.session() as s:
        messages = s.query(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(200).all()
        return render_template("sandbox/outbox.html", messages=messages)

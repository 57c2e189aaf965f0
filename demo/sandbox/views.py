"""The sandbox utility portal: /oauth/authorize -> lookup -> passcode -> consent
-> redirect (or the receipt), the customer's "My authorizations", the token
endpoint and the outbox. Views are thin: the rules live in :mod:`.portal`,
:mod:`.custodian` and Authlib."""
from __future__ import annotations

import time
from urllib.parse import urlencode

from authlib.oauth2 import OAuth2Error
from flask import (
    Blueprint,
    Request,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from sqlalchemy import bindparam, select
from werkzeug.test import EnvironBuilder
from wtforms.fields.choices import SelectChoice

from .. import ratelimit
from ..lookup import LOOKUP_LABELS
from ..scope import REQUESTABLE_FUNCTION_BLOCKS, ScopeError, describe_function_block
from ..tokens import digest, new_token
from ..web import allow_form_action, csrf
from . import delivery, portal
from .forms import ActionForm, ConsentForm, LookupForm, OtpForm, OutboxFilterForm, ResendForm
from .models import AuthorizationRow, ClientRow, OutboxMessage, PendingAuthorization
from .oauth import SandboxClient, ctx, remember_client

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
    directory = ctx().directory
    with ctx().db.session() as s:
        clients = s.query(ClientRow).order_by(ClientRow.client_id).all()
    return render_template("sandbox/index.html", customers=directory.test_customers,
                           real_customers=directory.real_customers, clients=clients,
                           lookup_labels=LOOKUP_LABELS, sandbox_url=ctx().settings["sandbox_url"].rstrip("/"))


@bp.get("/oauth/authorize")
@ratelimit.limited(ratelimit.AUTHORIZE_LOOKUP)
def authorize():
    try:
        grant = server().get_consent_grant(end_user=None)
    except OAuth2Error as error:
        if error.redirect_uri and error.redirect_uri != SandboxClient.RECEIPT:
            # the client and its redirect_uri are known: report back to it (RFC 6749 §4.1.2.1)
            return server().handle_error_response(None, error)
        return _error_page(error)
    args = request.args.to_dict(flat=True)
    with ctx().db.session() as s:
        pending = portal.begin(s, grant.client.get_client_id(), args, browser_hash=_browser_hash())
        session["pending"] = pending.id
        # the registration Authlib just read for this request (no second read of it)
        found = portal.try_prefill(s, pending, ctx().directory, ctx().settings, grant.client.row)
        pending_id, queued = pending.id, pending.deliver
    if found:
        if queued:   # only TEST_<scenario>_<contact> queues a message; this request is new, so none else is
            _deliver(pending_id)
        return redirect(url_for(".verify"), 303)
    return redirect(url_for(".lookup"), 303)


# ---- passcode delivery and the outbox's browser id ----------------------------------------

BROWSER_KEY = "outbox_browser"


def _browser_hash(create: bool = True) -> str | None:
    """The hash of this browser's random id (kept in the sandbox session), which its
    outbox messages carry; a new id when it has none and ``create``."""
    browser = session.get(BROWSER_KEY)
    if not browser and create:
        browser = session[BROWSER_KEY] = new_token(16)
    return digest("outbox-browser:" + browser) if browser else None


def _deliver(pending_id: str) -> list[delivery.Result]:
    """Send the passcode just issued; the transaction that issued it is already committed."""
    return portal.deliver_queued(ctx().db, ctx().settings, pending_id)


def _resent(results: list[delivery.Result]) -> None:
    if not any(r.status == delivery.FAILED for r in results):   # a failure is on the page instead
        flash("New passcode issued: the previous one no longer works.", "ok")


_PENDING = select(PendingAuthorization).where(PendingAuthorization.id == bindparam("id"))
#: the pending request with its registration, for the pages that name the company
_PENDING_AND_CLIENT = (select(PendingAuthorization, ClientRow)
                       .outerjoin(ClientRow, ClientRow.client_id == PendingAuthorization.client_id)
                       .where(PendingAuthorization.id == bindparam("id")))


def _pending(s, with_client: bool = False) -> PendingAuthorization:
    """The browser's pending request (400 without one). ``with_client``: its registration is read
    in the same statement and kept referenced by ``s``, so ``s.get(ClientRow, ...)`` later in this
    request finds it in the session's identity map instead of querying again."""
    pending_id = session.get("pending")
    # statements built once (read on every step of the flow); the same rows s.get would find
    pending = None
    if pending_id and with_client:
        row = s.execute(_PENDING_AND_CLIENT, {"id": pending_id}).first()
        if row is not None:
            pending, client = row
            if client is not None:
                s.info.setdefault("rows_kept", []).append(client)
    elif pending_id:
        pending = s.scalars(_PENDING, {"id": pending_id}).first()
    if pending is None or portal.is_self_service(pending):
        abort(400, "There is no data-sharing request in progress in this browser. Start again from "
                   "the website of the company that asked for your data.")
    return pending


def _company(s, pending) -> str:
    return portal.company_of(s, pending)


@bp.route("/authorize/lookup", methods=["GET", "POST"])
@ratelimit.limited(ratelimit.SEND)
def lookup():
    with ctx().db.session() as s:
        pending = _pending(s, with_client=True)
        form = LookupForm()
        if not form.is_submitted():
            prefill = portal.prefill(pending)
            if prefill:  # a prefill that found nobody: let the customer correct it
                form.method.data, form.value.data = prefill
        error, status, issued = None, 422, None
        if form.validate_on_submit():
            wait = portal.send_wait(s, pending, ctx().settings, interval=False)
            if wait:
                error, status = wait.message, 429
            else:
                error = portal.lookup(s, pending, ctx().directory, ctx().settings, form.method.data,
                                      form.value.data)
                issued = pending.id if error is None else None
        elif form.is_submitted():
            error = "Check the highlighted field."
        if issued is None:
            notice, pending.notice = pending.notice, None
            return render_template("sandbox/lookup.html", form=form, error=error, notice=notice,
                                   company=_company(s, pending), step=1), (status if error else 200)
    _deliver(issued)
    return redirect(url_for(".verify"), 303)


@bp.route("/authorize/verify", methods=["GET", "POST"])
@ratelimit.limited(ratelimit.PASSCODE)
def verify():
    with ctx().db.session() as s:
        # a GET shows the page, which names the company; a right passcode only redirects
        pending = _pending(s, with_client=request.method != "POST")
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
        return _verify_page(s, pending, form, error, 422 if error else 200)


def _verify_page(s, pending: PendingAuthorization, form: OtpForm, error: str | None, status: int,
                 wait: portal.Wait | None = None):
    """The passcode page (the authorize flow's or My authorizations'), with the delivery
    problem of the newest passcode and when a new one may be asked for."""
    mine = portal.is_self_service(pending)
    wait = wait if wait is not None else portal.resend_wait(pending, ctx().settings)
    contact = portal.contact_of(pending)
    page = render_template(
        "sandbox/my/verify.html" if mine else "sandbox/verify.html", form=form, resend=ResendForm(),
        error=error, contact=contact, pending=pending, masked_contact=_real_customer(pending),
        shown_to=delivery.shown_to(contact.channel, contact.address) if contact else "",
        delivery_problem=portal.delivery_problem(pending), wait=wait,
        resend_max=int(ctx().settings["sandbox_resend_max"]),
        company=None if mine else _company(s, pending), step=None if mine else 2)
    headers = {"Retry-After": str(wait.seconds)} if status == 429 and wait else {}
    return page, status, headers


def _real_customer(pending: PendingAuthorization) -> bool:
    """A real (non-test) customer's contact is shown masked, as a real portal would."""
    customer = ctx().directory.by_account(pending.account_number or "")
    return customer is not None and not customer.test


@bp.post("/authorize/resend")
@ratelimit.limited(ratelimit.SEND)
def resend():
    form = ResendForm()
    if not form.validate_on_submit():
        abort(400, "The form was not valid.")
    with ctx().db.session() as s:
        pending = _pending(s, with_client=True)
        if pending.stage != "otp":
            return redirect(url_for(".lookup"), 303)
        wait = portal.resend(s, pending, ctx().settings, _company(s, pending))
        if wait:
            return _verify_page(s, pending, OtpForm(formdata=None), wait.message, 429, wait)
        pending_id = pending.id
    _resent(_deliver(pending_id))
    return redirect(url_for(".verify"), 303)


@bp.route("/authorize/consent", methods=["GET", "POST"])
def consent():
    with ctx().db.session() as s:
        pending = _pending(s, with_client=True)
        if pending.stage != "consent":
            return redirect(url_for(".lookup" if pending.stage == "lookup" else ".verify"), 303)
        client = s.get(ClientRow, pending.client_id)
        if client is not None:
            remember_client(client)   # Authlib's client below: not read again
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
                    to_receipt = not pending.request_args.get("redirect_uri")
                    s.delete(pending)
                    if to_receipt:
                        # no redirect_uri: the customer ends on their receipt (reference §1.3)
                        s.commit()
                        session.pop("pending", None)
                        return _after_decision_without_redirect(client, grant_user)
                    # the code is saved in this transaction (oauth.save_authorization_code): the
                    # decision and its code are committed together, or neither is
                    g.consent_session = s
                    response = server().create_authorization_response(
                        request=request_obj, grant_user=grant_user, grant=grant)
                    s.commit()
                    session.pop("pending", None)
                    return response
            else:
                error = "Check your choices below."
        blocks = [(fb, REQUESTABLE_FUNCTION_BLOCKS.get(fb) or describe_function_block(fb))
                  for fb in options.blocks]
        return render_template("sandbox/consent.html", form=form, error=error, client=client,
                               customer=customer, options=options, blocks=blocks,
                               now=int(time.time()), step=3), (422 if error else 200)


def _after_decision_without_redirect(client: ClientRow | None, authorization: AuthorizationRow | None):
    if authorization is None:
        session["declined_company"] = client.company_name if client else ""
        return redirect(url_for(".declined"), 303)
    return redirect(_receipt_url(authorization.uid), 303)


def _receipt_url(uid: str) -> str:
    keys = [*current_app.config["SECRET_KEY_FALLBACKS"], current_app.secret_key]   # newest last
    return url_for(".receipt", uid=uid, key=portal.receipt_key(keys, uid))


@bp.get("/authorize/declined")
def declined():
    company = session.pop("declined_company", None)
    return render_template("sandbox/declined.html", company=company)


def _receipt_authorization(s, uid: str, key: str | None) -> AuthorizationRow:
    row = s.get(AuthorizationRow, uid) if len(uid) <= 32 else None
    keys = [*current_app.config["SECRET_KEY_FALLBACKS"], current_app.secret_key]   # any of them
    if row is None or not portal.receipt_key_valid(keys, uid, key):
        abort(404, "This receipt link isn't valid. Use the link exactly as you received it, or find your "
                   "authorizations under My authorizations.")
    return row


@bp.get("/authorizations/<uid>/receipt")
def receipt(uid: str):
    key = request.args.get("key")
    with ctx().db.session() as s:
        row = _receipt_authorization(s, uid, key)
        summary = portal.summarize(s, ctx().directory, row)
        return render_template("sandbox/receipt.html", summary=summary, key=key)


@bp.post("/authorizations/<uid>/receipt")
def receipt_revoke(uid: str):
    key = request.args.get("key")
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, "The form was not valid. Reload the page and try again.")
    with ctx().db.session() as s:
        row = _receipt_authorization(s, uid, key)
        company = portal.summarize(s, ctx().directory, row).company
        if portal.revoke_by_customer(s, row):
            flash(f"Access revoked: {company} can no longer get your data.", "ok")
        else:
            flash("This authorization was not active, so there was nothing to revoke.", "info")
    return redirect(url_for(".receipt", uid=uid, key=key), 303)


# ---- My authorizations: the customer's own list, after lookup and passcode ----------------

def _self_service(s) -> PendingAuthorization | None:
    pending_id = session.get("my_pending")
    pending = s.get(PendingAuthorization, pending_id) if pending_id else None
    return pending if portal.is_self_service(pending) else None


@bp.route("/my-authorizations", methods=["GET", "POST"])
@ratelimit.limited(ratelimit.SEND)
def my_authorizations():
    with ctx().db.session() as s:
        pending = _self_service(s)
        account = portal.self_service_account(pending)
        if account is not None:
            customer = ctx().directory.by_account(account)
            summaries = [portal.summarize(s, ctx().directory, row) for row in portal.authorizations_of(s, account)]
            return render_template("sandbox/my/list.html", customer=customer, summaries=summaries)
        form = LookupForm()
        error, status, issued = None, 422, None
        if form.validate_on_submit():
            # a sign-in still at lookup or passcode goes on (its resend limits with it)
            if pending is None or pending.stage not in ("lookup", "otp"):
                pending = portal.begin_self_service(s, browser_hash=_browser_hash())
                session["my_pending"] = pending.id
            wait = portal.send_wait(s, pending, ctx().settings, interval=False)
            if wait:
                error, status = wait.message, 429
            else:
                error = portal.self_service_lookup(s, pending, ctx().directory, ctx().settings,
                                                   form.method.data, form.value.data)
                issued = pending.id if error is None else None
        elif form.is_submitted():
            error = "Check the highlighted field."
        if issued is None:
            notice = None
            if pending is not None:
                notice, pending.notice = pending.notice, None
            return render_template("sandbox/my/lookup.html", form=form, error=error, notice=notice), \
                (status if error else 200)
    _deliver(issued)
    return redirect(url_for(".my_verify"), 303)


@bp.route("/my-authorizations/verify", methods=["GET", "POST"])
@ratelimit.limited(ratelimit.PASSCODE)
def my_verify():
    with ctx().db.session() as s:
        pending = _self_service(s)
        if pending is None or pending.stage != "otp":
            return redirect(url_for(".my_authorizations"), 303)
        form = OtpForm()
        error = None
        if form.validate_on_submit():
            outcome = portal.verify_otp(pending, form.code.data, ctx().directory,
                                        int(ctx().settings["sandbox_otp_max_attempts"]))
            if outcome.ok or outcome.restart:
                return redirect(url_for(".my_authorizations"), 303)
            error = outcome.message
        elif form.is_submitted():
            error = form.code.errors[0] if form.code.errors else "Enter the 6-digit passcode."
        return _verify_page(s, pending, form, error, 422 if error else 200)


@bp.post("/my-authorizations/resend")
@ratelimit.limited(ratelimit.SEND)
def my_resend():
    form = ResendForm()
    if not form.validate_on_submit():
        abort(400, "The form was not valid.")
    with ctx().db.session() as s:
        pending = _self_service(s)
        if pending is None or pending.stage != "otp":
            return redirect(url_for(".my_authorizations"), 303)
        wait = portal.resend(s, pending, ctx().settings, None)
        if wait:
            return _verify_page(s, pending, OtpForm(formdata=None), wait.message, 429, wait)
        pending_id = pending.id
    _resent(_deliver(pending_id))
    return redirect(url_for(".my_verify"), 303)


@bp.post("/my-authorizations/<uid>/revoke")
def my_revoke(uid: str):
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, "The form was not valid. Reload the page and try again.")
    with ctx().db.session() as s:
        account = portal.self_service_account(_self_service(s))
        if account is None:
            flash("Confirm it's you again to manage your authorizations.", "warning")
            return redirect(url_for(".my_authorizations"), 303)
        row = s.get(AuthorizationRow, uid) if len(uid) <= 32 else None
        if row is None or row.account_number != account:
            abort(404, "You have no authorization with that number.")
        company = portal.summarize(s, ctx().directory, row).company
        if portal.revoke_by_customer(s, row):
            flash(f"Access revoked: {company} can no longer get your data.", "ok")
        else:
            flash("That authorization was not active, so there was nothing to revoke.", "info")
    return redirect(url_for(".my_authorizations"), 303)


@bp.post("/my-authorizations/sign-out")
def my_sign_out():
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, "The form was not valid. Reload the page and try again.")
    with ctx().db.session() as s:
        pending = _self_service(s)
        if pending is not None:
            s.delete(pending)
    session.pop("my_pending", None)
    flash("You're signed out of My authorizations.", "ok")
    return redirect(url_for(".my_authorizations"), 303)


@bp.post("/oauth/token")
@csrf.exempt
def token():
    return server().create_token_response()


@bp.get("/outbox")
def outbox():
    """Every passcode message, newest first, filtered by the query string (a GET form)."""
    form = OutboxFilterForm(formdata=request.args)
    scenarios = sorted({c.scenario for c in ctx().directory.customers})
    form.scenario.choices = [SelectChoice("", "Any")] + [SelectChoice(sc, sc) for sc in scenarios]
    own = _browser_hash(create=False)
    error, messages, total, mine_count = None, [], 0, 0
    if not form.validate():
        error = "Check the filters: " + "; ".join(
            f"{getattr(form, name).label.text}: {errors[0]}" for name, errors in form.errors.items())
    with ctx().db.session() as s:
        if error is None:
            wanted = portal.OutboxFilter(channel=form.channel.data or "", to=form.to.data or "",
                                         scenario=form.scenario.data or "", result=form.result.data or "",
                                         browser_hash=(own or "") if form.mine.data else None)
            messages, total = portal.outbox_messages(s, wanted)
        if own:
            mine_count = s.query(OutboxMessage).filter_by(browser_hash=own).count()
        return render_template("sandbox/outbox.html", form=form, messages=messages, total=total, error=error,
                               filtered=any(request.args.get(k) for k in ("channel", "to", "scenario", "result",
                                                                          "mine")),
                               limit=portal.OUTBOX_LIMIT, results=delivery.RESULTS, clear=ActionForm(),
                               mine_count=mine_count, shown_to=delivery.shown_to), (400 if error else 200)


@bp.post("/outbox/clear")
def outbox_clear():
    """"Clear this browser's messages": only the rows this browser caused (the visitor's reset)."""
    form = ActionForm()
    if not form.validate_on_submit():
        abort(400, "The form was not valid. Reload the page and try again.")
    own = _browser_hash(create=False)
    with ctx().db.session() as s:
        cleared = portal.clear_outbox(s, own) if own else 0
    if cleared:
        flash(f"Cleared {cleared} message{'s' if cleared != 1 else ''} of this browser.", "ok")
    else:
        flash("This browser has no messages in the outbox.", "info")
    return redirect(url_for(".outbox"), 303)

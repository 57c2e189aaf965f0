"""Views of the demo site. Thin: the protocol lives in :mod:`.client`,
:mod:`.runs` and :mod:`demo.scope`."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, session, url_for

from ..config import SECRET_VISITOR_KEYS
from ..lookup import LOOKUP_LABELS
from ..scope import ScopeError, parse_scope
from ..tokens import mask, new_uid
from ..web import allow_form_action, origin
from . import exchanges as ex_mod
from . import integrator
from . import runs as runs_mod
from .forms import ConnectForm, ResetForm, SettingsForm
from .models import Run, VisitorSettings
from .otp_test import configured_blocks

bp = Blueprint("site", __name__)


def ctx():
    return current_app.extensions["gbc_site"]


def visitor_id() -> str:
    if "visitor" not in session:
        session["visitor"] = new_uid()
        session.permanent = True
    return session["visitor"]


def current_settings(s) -> dict:
    row, integration = integrator.visitor_rows(s, visitor_id())
    base = runs_mod.effective_settings(ctx().settings, row, ctx().vault)
    eff = integrator.overlay(s, visitor_id(), base, ctx().vault, integration)   # + API token, webhook secret
    if eff.get("api_token") and eff["api_token"] == base.get("api_token") \
            and eff.get("api_url") != ctx().settings.get("api_url"):
        eff["api_token"] = ""   # the configured API token goes only to the configured JSON API
    if eff.get("issuer") and eff["issuer"] == ctx().settings.get("issuer") \
            and eff.get("authorize_url") != ctx().settings.get("authorize_url"):
        eff["issuer"] = ""      # the configured issuer names the configured custodian: another one is its origin
    return eff


def public(eff: dict) -> dict:
    """The settings as templates may see them: the secrets masked."""
    return {**eff, **{k: mask(eff.get(k)) for k in SECRET_VISITOR_KEYS}}


def _timeout() -> float:
    return float(ctx().settings["http_timeout"])


def _connect_form(eff: dict, form_class: type[ConnectForm] = ConnectForm) -> ConnectForm:
    """The connect form (or a subclass, such as the share page's) from the POST body, the query
    (links, the no-JS "Update preview") or, on a bare GET, the configured scope's function blocks."""
    if request.method != "GET":
        return form_class()                     # Flask-WTF reads the POST body and checks the token
    form = form_class(request.args or None, meta={"csrf": False})
    if not request.args:
        form.function_blocks.data = configured_blocks(eff["scope"])
    return form


def connect_choices(form: ConnectForm) -> dict:
    """The connect form's choices as :func:`.runs.review` and :func:`.presets.make` take them."""
    return dict(function_blocks=form.function_blocks.data or [], history=form.history.data or "",
                end_date=form.end_date.data, lookup_type=form.lookup_type.data or "none",
                lookup_value=(form.lookup_value.data or "").strip(), noedit=bool(form.noedit.data),
                meters_all=bool(form.meters_all.data))


def _preview(form: ConnectForm, eff: dict) -> dict:
    """The Review section for the form's current values (see :func:`.runs.review`)."""
    return runs_mod.review(eff, _timeout(), **connect_choices(form))


def _render_home(eff: dict, form: ConnectForm, review: dict, status: int = 200):
    allow_form_action(eff["authorize_url"])
    here, back = origin(request.host_url), origin(eff["redirect_uri"])
    return render_template("site/home.html", eff=public(eff), form=form, preview=review,
                           origin_mismatch=(here, back) if back and here != back else None,
                           test_customers=ctx().test_customers, lookup_labels=LOOKUP_LABELS,
                           nav_active="home"), status


@bp.route("/", methods=["GET"])
def home():
    with ctx().db.session() as s:
        eff = current_settings(s)
    form = _connect_form(eff)
    return _render_home(eff, form, _preview(form, eff))


@bp.get("/preview.json")
def preview():
    """The Review section for the connect form's current values (live preview)."""
    with ctx().db.session() as s:
        eff = current_settings(s)
    review = _preview(_connect_form(eff), eff)
    return {k: review[k] for k in ("scope", "scope_encoded", "url", "explained", "error")}


@bp.post("/connect")
def connect():
    with ctx().db.session() as s:
        eff = current_settings(s)
        form = ConnectForm()
        valid = form.validate_on_submit()
        review = _preview(form, eff)
        if not valid or review["error"]:
            if review["error"]:
                flash(review["error"], "error")
            return _render_home(eff, form, review, 400)
        run, url = runs_mod.start_run(s, visitor_id(), eff, ctx().vault, review["scope"],
                                      review["parsed"].lookup, _timeout())
        run_id = run.id
    return send_to_custodian(eff, run_id, url)


def send_to_custodian(eff: dict, run_id: str, url: str):
    """After the run is stored (the recorder writes in its own transaction): note the
    authorization request on the run and send the browser to the custodian."""
    # a run made in this request has no exchange yet: its first is #1 (a clash would ask the table)
    runs_mod.note_authorize(ex_mod.Recorder(ctx().db, run_id, [eff["client_secret"]], first_seq=1), url)
    allow_form_action(eff["authorize_url"])
    return redirect(url, 303)


@bp.get("/callback")
@bp.get("/callback/<name>")
def callback(name: str | None = None):
    """The custodian's answer. ``/callback/<name>``: one redirect URI per custodian (RFC 9700 §4.4);
    a response arriving on another path than its run's redirect_uri is refused, as is one whose
    ``iss`` names another issuer (RFC 9207), before any token request."""
    params = request.args.to_dict(flat=True)
    shown = {k: (mask(v) if k in ("code", "state") else v) for k, v in params.items()}
    with ctx().db.session() as s:
        run = runs_mod.take_run_for_state(s, visitor_id(), params.get("state"))
        if run is None:
            return render_template(
                "site/error.html", code=400, title="This sign-in response doesn't match",
                message="The state parameter returned by the utility does not belong to a connection "
                        "started in this browser, or it was already used. Nothing was exchanged. "
                        "Start again from the home page.",
                params=shown,
            ), 400
        rec = ex_mod.recorder(ctx(), run)
        check = runs_mod.check_callback(run, request.args.getlist("iss"), request.script_root + request.path)
        if not check["ok"]:
            runs_mod.refuse_callback(run, params, check, request.url, rec)
            return render_template(
                "site/error.html", code=400, title="This sign-in response came from the wrong place",
                message=f"{check['message']} The connection is marked as failed (see Runs); start again "
                        "from the home page.",
                params=shown,
            ), 400
        run.iss_check = check
        runs_mod.finish_run(s, run, params, ctx().vault, _timeout(), rec)
        run_id = run.id
    return redirect(url_for(".run_page", run_id=run_id), 303)


def _visitor_run(s, run_id: str) -> Run:
    run = s.get(Run, run_id)
    if run is None or run.visitor_id != visitor_id():
        abort(404, "There is no such run for this browser.")
    return run


@bp.get("/runs")
def runs():
    with ctx().db.session() as s:
        rows = (s.query(Run).filter_by(visitor_id=visitor_id()).order_by(Run.created.desc())
                .limit(200).all())
        return render_template("site/runs.html", runs=rows, nav_active="runs")


def refetch(run_id: str) -> bool:
    """Ask the custodian again when the run waits for data and Retry-After has passed."""
    return runs_mod.refetch_if_due(ctx().db, run_id, ctx().vault, _timeout(),
                                   lambda run: ex_mod.recorder(ctx(), run))


@bp.get("/runs/<run_id>")
def run_page(run_id: str):
    with ctx().db.session() as s:
        run = _visitor_run(s, run_id)                # 404 for anyone else's run, before any call
        if runs_mod.waiting_for_data(run) != 0:      # nothing to ask the custodian: show this load
            return _render_run(s, run)
    refetch(run_id)
    with ctx().db.session() as s:
        return _render_run(s, _visitor_run(s, run_id))


def _render_run(s, run: Run):
    from .integrator_views import prefill_panel

    eff = current_settings(s)
    prefill_panel(s, run, eff)                       # the JSON API and events panels, from the same settings
    rows = ex_mod.exchanges_for(s, run.id)
    return render_template("site/run.html", run=run, data=runs_mod.run_json(run),
                           waiting=runs_mod.waiting_for_data(run),
                           exchanges=[ex_mod.exchange_view(x) for x in rows],
                           api_revoke=bool(eff.get("api_token")),
                           requested=runs_mod.scope_view(run.requested_scope),
                           granted=runs_mod.scope_view(run.granted_scope), nav_active="runs")


@bp.get("/runs/<run_id>.json")
def run_json(run_id: str):
    with ctx().db.session() as s:
        run = _visitor_run(s, run_id)
        rows = [ex_mod.exchange_dict(x, body_limit=ex_mod.PAGE_LIMIT) for x in ex_mod.exchanges_for(s, run.id)]
        for x in rows:
            if x["response_body"] is not None:
                x["response_body_url"] = url_for("site_tools.exchange_body", run_id=run.id, seq=x["seq"])
        return runs_mod.run_json(run, rows)


@bp.route("/settings", methods=["GET", "POST"])
def settings():
    with ctx().db.session() as s:
        eff = current_settings(s)
        form = SettingsForm(data=None if request.method == "POST" else
                            {k: v for k, v in eff.items() if k not in SECRET_VISITOR_KEYS})
        if form.validate_on_submit():
            try:
                parse_scope(form.scope.data)
            except ScopeError as exc:
                form.scope.errors.append(exc.message)
            else:
                values = {k: getattr(form, k).data for k in
                          ("utility", "client_id", "redirect_uri", "authorize_url", "token_url", "issuer",
                           "require_iss", "scope", "pkce", "token_auth_method", "api_url")}
                values["issuer"] = (values["issuer"] or "").strip()
                runs_mod.save_visitor_settings(s, visitor_id(), values, _typed(form.client_secret.data),
                                               ctx().vault)
                integrator.save_secrets(s, visitor_id(), ctx().vault, api_token=_typed(form.api_token.data),
                                        webhook_secret=_typed(form.webhook_secret.data))
                flash("Settings saved. They apply to this browser only.", "ok")
                return redirect(url_for(".settings"), 303)
        status = 400 if form.is_submitted() else 200
        return render_template("site/settings.html", form=form, reset=ResetForm(), eff=public(eff),
                               secret_masked=mask(eff["client_secret"]), nav_active="settings",
                               issuer_default=runs_mod.expected_issuer({**eff, "issuer": ""}) or "none",
                               integration=integrator.settings_context(s, visitor_id(), eff,
                                                                       ctx().settings["site_url"])), status


def _typed(secret: str | None) -> str | None:
    """A secret field's value; empty or only spaces means "keep the current one" (None)."""
    return secret if secret and secret.strip() else None


@bp.post("/settings/reset")
def settings_reset():
    if not ResetForm().validate_on_submit():
        abort(400, "The form was not valid.")
    with ctx().db.session() as s:
        row = s.get(VisitorSettings, visitor_id())
        if row is not None:
            s.delete(row)
        integrator.reset(s, visitor_id())
    flash("Settings reset to the defaults.", "ok")
    return redirect(url_for(".settings"), 303)

"""The TEST_<scenario>_<contact> lookup builder for manual passcode testing (issue 5).

Thin: :mod:`.otp_test` checks the input and builds the lookup and scope; the run starts as the
home page's Connect starts one (:func:`.runs.start_run`, :func:`.runs.note_authorize`)."""
from __future__ import annotations

from flask import Blueprint, render_template, request

from ..lookup import CustomerDirectory
from ..web import allow_form_action, origin
from . import otp_test
from . import runs as runs_mod
from .otp_forms import OtpTestForm
from .views import _timeout, ctx, current_settings, public, send_to_custodian, visitor_id

bp = Blueprint("otp_test", __name__)


def _target(eff: dict) -> dict:
    """Where the flow goes: the embedded sandbox (passcodes recorded in its outbox, delivered
    when SMTP or Twilio is configured) or another custodian, such as the real PCE (really sent)."""
    settings = ctx().settings
    sandbox_url = settings["sandbox_url"] if settings["sandbox"] else None
    embedded = bool(sandbox_url) and origin(eff["authorize_url"]) == origin(sandbox_url)
    return {"embedded": embedded, "sandbox_url": sandbox_url if embedded else None,
            "authorize_origin": origin(eff["authorize_url"]) or eff["authorize_url"],
            "email": otp_test.delivery_note(settings, "email"), "sms": otp_test.delivery_note(settings, "sms")}


def _form(eff: dict) -> OtpTestForm:
    """The form from the POST body, the query (the no-JS Preview button, links) or the defaults."""
    if request.method == "POST":
        form = OtpTestForm()
    else:
        form = OtpTestForm(request.args if request.args else None, meta={"csrf": False})
    scenarios = otp_test.scenarios(ctx().test_customers)
    form.scenario.choices = [(sc.name, sc.name) for sc in scenarios]
    if request.method == "GET":
        if not form.scenario.data and scenarios:
            form.scenario.data = scenarios[0].name
        if "contact" not in request.args:   # a submitted preview keeps "none ticked" (an error)
            form.function_blocks.data = [str(fb) for fb in otp_test.configured_blocks(eff["scope"])]
    return form


def _build(form: OtpTestForm, target: dict) -> otp_test.OtpLookup | None:
    """The lookup, or None with each field's error put on the form."""
    directory = CustomerDirectory(list(ctx().test_customers)) if target["embedded"] else None
    try:
        return otp_test.build(form.scenario.data, form.contact.data, form.function_blocks.data,
                              [c.scenario for c in ctx().test_customers], directory)
    except otp_test.OtpTestError as exc:
        for name, message in exc.errors.items():
            field = getattr(form, name)
            field.errors = [*field.errors, message]
        return None


def _render(eff: dict, form: OtpTestForm, target: dict, built: otp_test.OtpLookup | None, status: int = 200):
    allow_form_action(eff["authorize_url"])   # the 303 after "Start the flow" goes there
    outbox = otp_test.outbox_url(target["sandbox_url"], built.contact) if built and target["sandbox_url"] else None
    return render_template("site/otp_test.html", eff=public(eff), form=form, target=target, built=built,
                           outbox=outbox, scenarios=otp_test.scenarios(ctx().test_customers),
                           nav_active="otp-test"), status


@bp.route("/otp-test", methods=["GET", "POST"])
def builder():
    with ctx().db.session() as s:
        eff = current_settings(s)
        target = _target(eff)
        form = _form(eff)
        if request.method == "GET":
            # the Preview button (no JS) and links: check what was typed, start nothing
            built = _build(form, target) if "contact" in request.args else None
            return _render(eff, form, target, built, 200 if built or "contact" not in request.args else 422)
        valid = form.validate_on_submit()
        built = _build(form, target)
        if not valid or built is None:
            return _render(eff, form, target, built, 400)
        run, url = runs_mod.start_run(s, visitor_id(), eff, ctx().vault, built.scope, built.lookup, _timeout())
        run_id = run.id
    return send_to_custodian(eff, run_id, url)


@bp.get("/otp-test/preview.json")
def preview():
    """The lookup, scope and outbox link for what is typed so far (otp-test.js)."""
    with ctx().db.session() as s:
        eff = current_settings(s)
    target = _target(eff)
    form = _form(eff)
    built = _build(form, target)
    if built is None:
        errors = {name: getattr(form, name).errors[0] for name in ("scenario", "contact", "function_blocks")
                  if getattr(form, name).errors}
        return {"errors": errors}   # 200: a preview of half-typed input, not a failed submission
    return {"errors": {}, "lookup": built.lookup_value, "lookup_type": built.lookup_type,
            "channel": built.contact.channel, "scope": built.scope, "scope_readable": built.scope_readable,
            "outbox_url": otp_test.outbox_url(target["sandbox_url"], built.contact) if target["sandbox_url"]
            else None}

"""Views of the integrator's tools on a run: the token tools (POST, CSRF-protected), the
readiness poll (``status.json``) and downloads of recorded bodies. Thin: the work is in
:mod:`.tools`, :mod:`.runs` and :mod:`.exchanges`."""
from __future__ import annotations

from urllib.parse import urlencode

from flask import Blueprint, Response, abort, flash, redirect, url_for

from . import exchanges as ex_mod
from . import runs as runs_mod
from . import tools
from .models import Exchange
from .views import _timeout, _visitor_run, ctx, current_settings, refetch

bp = Blueprint("site_tools", __name__)

LABELS = {
    "refresh": "Refresh",
    "client_credentials": "client_credentials → Authorization list",
    "service_status": "ReadServiceStatus",
    "revoke": "Revoke",
    "fetch": "Read again",
}


@bp.post("/runs/<run_id>/tools/<name>")
def run_tool(run_id: str, name: str):
    """Run one tool (the CSRF token is checked by Flask-WTF's CSRFProtect for every POST)."""
    if name not in tools.TOOLS:
        abort(404, "There is no such tool.")
    with ctx().db.session() as s:
        run = _visitor_run(s, run_id)
        rec = ex_mod.recorder(ctx(), run)
        if name == "revoke":
            eff = current_settings(s)
            result = tools.revoke(run, ctx().vault, _timeout(), rec, api_token=eff.get("api_token") or None,
                                  api_url=eff.get("api_url") or None)
        else:
            result = tools.RUNNERS[name](run, ctx().vault, _timeout(), rec)
    if result.get("ok"):
        flash(f"{LABELS[name]}: done. The exchange is in the timeline.", "ok")
    else:
        flash(f"{LABELS[name]}: {result['error'].get('message') or 'failed'}", "error")
    return redirect(url_for("site.run_page", run_id=run_id, _anchor=f"tool-{name}"), 303)


@bp.post("/runs/<run_id>/retry")
def run_retry(run_id: str):
    """"Try again" on a run that failed after its token exchange: read the Authorization and the
    meters again with the stored access token (CSRF-checked like every POST)."""
    with ctx().db.session() as s:
        run = _visitor_run(s, run_id)
        if not tools.can_retry(run):
            flash("This run can't be tried again: it holds no access token. Start a new run instead.", "error")
            return redirect(url_for("site.run_page", run_id=run_id), 303)
        result = tools.retry(run, ctx().vault, _timeout(), ex_mod.recorder(ctx(), run))
    if result.get("ok"):
        flash("Tried again: the utility answered. " + ("It is still collecting the data."
                                                       if result.get("waiting") else ""), "ok")
    else:
        flash("Tried again; it failed again (see below).", "error")
    return redirect(url_for("site.run_page", run_id=run_id), 303)


@bp.app_template_global("run_recovery")
def run_recovery(run) -> dict:
    """For a failed run's banner: can its reads be tried again, and the home page prefilled for a
    new run with the same settings (a failed token exchange can't be repeated)."""
    query = tools.same_settings_query(run)
    return {"can_retry": tools.can_retry(run),
            "new_run_url": url_for("site.home") + ("?" + urlencode(query) if query else "") + "#connect-form"}


@bp.get("/runs/<run_id>/status.json")
def run_status(run_id: str):
    """For the run page's poller: asks the custodian again when Retry-After has passed."""
    with ctx().db.session() as s:
        _visitor_run(s, run_id)
    refetch(run_id)
    with ctx().db.session() as s:
        return runs_mod.status_json(_visitor_run(s, run_id))


@bp.get("/runs/<run_id>/exchanges/<int:seq>/body")
def exchange_body(run_id: str, seq: int):
    """The stored (masked) response body of one exchange, as a download: plain text, so a
    custodian's HTML can never run on this origin."""
    with ctx().db.session() as s:
        run = _visitor_run(s, run_id)
        row = s.query(Exchange).filter_by(run_id=run.id, seq=seq).one_or_none()
        if row is None or row.response_body is None:
            abort(404, "There is no such exchange body.")
        body = row.response_body
        ctype = ex_mod.header(ex_mod.exchange_dict(row), "Content-Type") or ""
    ext = "json" if "json" in ctype else "xml" if "xml" in ctype else "txt"
    return Response(body, mimetype="text/plain", headers={
        "Content-Disposition": f'attachment; filename="run-{run_id}-exchange-{seq}.{ext}"'})

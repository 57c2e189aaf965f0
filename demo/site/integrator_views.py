"""Routes of the integrator's view (thin: the work is in :mod:`.integrator` and
:mod:`.webhook_receiver`).

* ``POST /runs/<id>/json-api``: read the run's authorization through the JSON API (API token
  from the visitor's settings) and keep the summary for the run page.
* ``GET /runs/<id>/events.json``: webhook events received about the run's authorization (the
  run page polls it; the page itself lists them without JavaScript).
* ``POST /webhooks/<receiver_id>``: the receiver. No cookie and no CSRF token (the utility
  calls it); the unguessable receiver id says whose it is, the signature says it is genuine.
"""
from __future__ import annotations

import requests
from flask import Blueprint, abort, flash, g, redirect, request, url_for
from sqlalchemy.exc import OperationalError

from ..tokens import mask
from ..web import csrf
from . import exchanges, integrator
from . import runs as runs_mod
from . import webhook_receiver as receiver
from .models import Run
from .views import ctx, current_settings, visitor_id

bp = Blueprint("integrator", __name__)


def _visitor_run(s, run_id: str) -> Run:
    run = s.get(Run, run_id)
    if run is None or run.visitor_id != visitor_id():
        abort(404, "There is no such run for this browser.")
    return run


def _http(run: Run, api_token: str) -> requests.Session:
    """A session whose calls land on the run's timeline, the API token masked there."""
    rec = exchanges.recorder(ctx(), run)
    rec.learn(api_token)
    return rec.session("json")


@bp.post("/runs/<run_id>/json-api")
def json_api(run_id: str):
    back = url_for("site.run_page", run_id=run_id) + "#json-api"
    with ctx().db.session() as s:
        eff = current_settings(s)
        run = _visitor_run(s, run_id)
        uid = runs_mod.authorization_uid(run)
        espi_meters = list(run.meters or [])
    if not uid:
        flash("This run has no authorization yet, so there is nothing to read through the JSON API.", "error")
        return redirect(back, 303)
    token = eff.get("api_token") or ""
    if not token:
        flash("Set a JSON API token on the Settings page first (the utility's dashboard makes one).", "error")
        return redirect(back, 303)
    data = integrator.fetch_json_view(_http(run, token), eff["api_url"], token, uid, espi_meters,
                                      timeout=float(ctx().settings["http_timeout"]))
    with ctx().db.session() as s:
        integrator.save_data(s, run_id, "json_api", data)
    if data["error"]:
        flash(f"JSON API: {data['error']['message']}", "error")
    return redirect(back, 303)


@bp.get("/runs/<run_id>/events.json")
def run_events(run_id: str):
    with ctx().db.session() as s:
        run = _visitor_run(s, run_id)
        uid = runs_mod.authorization_uid(run)
        events = integrator.events_for_authorization(s, visitor_id(), uid)
    return {"run_id": run_id, "authorization_uid": uid,
            "events": [e for e in events if e["verified"]],
            "rejected": [e for e in events if not e["verified"]]}


@bp.post("/webhooks/<receiver_id>")
@csrf.exempt
def webhook(receiver_id: str):
    if (request.content_length or 0) > receiver.MAX_BODY:
        outcome = receiver.too_large()
        return outcome.body(), outcome.status
    body = request.stream.read(receiver.MAX_BODY + 1)
    try:
        with ctx().db.session() as s:
            outcome = receiver.receive(s, receiver_id, request.headers, body, ctx().vault,
                                       default_secret=ctx().settings.get("webhook_secret") or "")
    except OperationalError:   # the database is busy (SQLite): the platform retries non-200 answers
        return {"error": "busy", "error_description": "Try again shortly."}, 503, {"Retry-After": "5"}
    return outcome.body(), outcome.status


@bp.app_template_global("integrator_panel")
def integrator_panel(run: Run) -> dict:
    """What the run page's JSON API and events panels show (secrets masked), once per request
    (the run page fills it in first with :func:`prefill_panel`)."""
    cache = g.setdefault("integrator_panel", {})
    if run.id not in cache:
        with ctx().db.session() as s:
            cache[run.id] = _panel(s, run, current_settings(s))
    return cache[run.id]


def prefill_panel(s, run: Run, eff: dict) -> None:
    """The panels' data for this request, from the caller's session and settings."""
    g.setdefault("integrator_panel", {})[run.id] = _panel(s, run, eff)


def _panel(s, run: Run, eff: dict) -> dict:
    uid = runs_mod.authorization_uid(run)
    return {
        "authorization_uid": uid,
        "json_api": integrator.load_data(s, run.id, "json_api"),
        "events": integrator.events_for_authorization(s, visitor_id(), uid),
        "api_url": eff.get("api_url"),
        "api_token_masked": mask(eff.get("api_token")),
        "api_ready": bool(eff.get("api_token")),
        "webhook_ready": bool(eff.get("webhook_secret") and eff.get("receiver_id")),
        "receiver_url": integrator.receiver_url(ctx().settings["site_url"], eff["receiver_id"])
        if eff.get("receiver_id") else None,
    }

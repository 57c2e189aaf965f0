"""The meter page: one usage point of a run, as an integrator would check it (interval chart
in local time, daily and monthly totals, bills, customer, the raw XML). Thin: fetching and
every number live in :mod:`.usage`."""
from __future__ import annotations

import json
import re

from flask import Blueprint, Response, abort, current_app, render_template, request

from . import client as gbc
from . import exchanges, usage
from .models import Run
from .views import ctx, visitor_id

bp = Blueprint("meter", __name__)


def _timeout() -> float:
    return float(ctx().settings["http_timeout"])


def _visitor_meter(run_id: str, usage_point_id: str) -> tuple[Run, dict, dict]:
    """The run (this visitor's only, as on the run page), its meter and its token; 404 otherwise."""
    with ctx().db.session() as s:
        run = s.get(Run, run_id)
        if run is None or run.visitor_id != visitor_id():
            abort(404, "There is no such run for this browser.")
    meter = next((m for m in run.meters or [] if m.get("usage_point_id") == usage_point_id), None)
    if meter is None:
        abort(404, f"Run {run_id} has no meter {usage_point_id}.")
    token_json = ctx().vault.decrypt(run.token_enc) if run.token_enc else None
    if not token_json:
        abort(404, "This run holds no access token, so there is no meter data to read.")
    return run, meter, json.loads(token_json)


def _window(meter: dict) -> tuple[usage.Window | None, str | None]:
    clock = usage.LocalClock.from_parameters(meter.get("local_time"))
    try:
        return usage.parse_window(request.args, usage.now_local_date(clock)), None
    except usage.WindowError as exc:
        return None, str(exc)


@bp.get("/runs/<run_id>/meters/<usage_point_id>")
def meter_page(run_id: str, usage_point_id: str):
    run, meter, token = _visitor_meter(run_id, usage_point_id)
    window, problem = _window(meter)
    if window is None:
        return render_template("site/meter.html", run=run, meter=meter, page=None, window=None,
                               window_error=problem, args=request.args, nav_active="runs"), 400
    with exchanges.recorder(ctx(), run).session() as http:   # every call shows in the run's exchanges
        page = usage.load_meter_page(token, meter, window, timeout=_timeout(), http=http)
    return render_template("site/meter.html", run=run, meter=meter, page=page, window=window,
                           window_error=None, args=request.args, nav_active="runs")


@bp.get("/runs/<run_id>/meters/<usage_point_id>/data.xml")
def meter_xml(run_id: str, usage_point_id: str):
    """What the page reads, fetched again for download (the site keeps no copy of meter data)."""
    run, meter, token = _visitor_meter(run_id, usage_point_id)
    window, problem = _window(meter)
    if window is None:
        abort(400, problem)
    clock = usage.LocalClock.from_parameters(meter.get("local_time"))
    try:
        url = usage.meter_url(token, usage_point_id, window, clock)
        with exchanges.recorder(ctx(), run).session() as http:
            data = usage.fetch(url, token, step="meter data", timeout=_timeout(), http=http)
    except gbc.NotReady as exc:
        wait = exc.retry_after if exc.retry_after is not None else 5
        response = Response(f"The utility is still collecting the data; try again in {wait} s.\n", 503,
                            mimetype="text/plain")
        response.headers["Retry-After"] = str(wait)
        return response
    except gbc.CustodianError as exc:
        current_app.logger.info("meter download failed: %s", exc.message)
        abort(502, exc.message)
    name = "-".join(p for p in ("usagepoint", _safe(usage_point_id), *window.args().values()) if p)
    return Response(data, mimetype="application/atom+xml",
                    headers={"Content-Disposition": f'attachment; filename="{name}.xml"'})


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:64]

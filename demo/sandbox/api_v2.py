"""The sandbox's JSON API v2 (``/api/v2``, reference §5): thin Flask views over
:mod:`.jsonapi` and :mod:`.testsubmit`.

Authentication is an API token (the dashboard's "API Settings") in
``Authorization: Bearer <token>`` or ``?access_token=``; OAuth tokens of the ESPI
API are refused. A client sees only its own objects (404 otherwise). Every
answer is JSON, errors in UtilityAPI's envelope, never an HTML page.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound

from ..storage import utcnow
from . import jsonapi, lifecycle, testsubmit
from .credentials import API, CredentialError, bearer_from_header, identify
from .jsonapi import ApiError, View
from .models import ClientRow
from .oauth import ctx

log = logging.getLogger(__name__)

bp = Blueprint("api_v2", __name__, url_prefix=jsonapi.API_PATH)


def _json(obj: Any, status: int = 200) -> Response:
    """Compact JSON in the objects' own field order (as UtilityAPI's), without sorting keys:
    a page of intervals holds ~100,000 small objects."""
    return Response(json.dumps(obj, separators=(",", ":"), ensure_ascii=False), status=status,
                    content_type="application/json")


def _error(status: int, error: str, description: str, url: str | None = None, **extra: Any) -> Response:
    response = _json(jsonapi.error_body(error, description, url, **extra), status)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    return response


@bp.errorhandler(ApiError)
def api_error(exc: ApiError):
    return _error(exc.status, exc.error, exc.description, exc.url, **exc.extra)


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    name = exc.name.lower().replace(" ", "_") if exc.code != 404 else "not_found"
    response = _error(exc.code or 500, name, exc.description or exc.name)
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


@bp.errorhandler(Exception)
def server_error(exc: Exception):  # pragma: no cover - a bug; logged, answered in the envelope
    log.exception("JSON API error on %s %s", request.method, request.path)
    return _error(500, "server_error", "The sandbox hit an unexpected error. It has been logged.")


def _token() -> str | None:
    return bearer_from_header(request.headers.get("Authorization")) or request.args.get("access_token") or None


def api(view: Callable) -> Callable:
    """Authenticate the API token, open a session, build the :class:`View`, run, answer JSON."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        context = ctx()
        with context.db.session() as s:
            try:
                credential = identify(s, _token())
            except CredentialError as exc:
                return _error(401, exc.error, exc.description)
            if credential.kind != API:
                return _error(403, "invalid_token", "This is an OAuth token of the Green Button (ESPI) API; the JSON "
                                                    "API needs an API token from the sandbox dashboard.")
            client = s.get(ClientRow, credential.client_id)
            if client is None:
                return _error(401, "invalid_token", "This API token's client no longer exists.")
            v = View(context.settings, context.directory, client, utcnow())
            result = view(s, v, *args, **kwargs)
        if isinstance(result, Response):
            return result
        return _json(result)

    return wrapper


def _params() -> dict[str, str]:
    return request.args.to_dict(flat=True)


def _body() -> Any:
    """The JSON body; an empty body is None; anything unparsable is a 400 in the envelope."""
    if not request.get_data(cache=True):
        return None
    try:
        return request.get_json(force=True, silent=False)
    except Exception:
        raise ApiError(400, "invalid_param", "The request body must be JSON.") from None


# ---------------------------------------------------------------- authorizations


@bp.get("/authorizations")
@api
def authorizations(s, v: View):
    return jsonapi.list_authorizations(s, v, _params())


@bp.get("/authorizations/<uid>")
@api
def authorization(s, v: View, uid: str):
    return jsonapi.get_authorization(s, v, uid, _params())


@bp.patch("/authorizations/<uid>")
@api
def modify_authorization(s, v: View, uid: str):
    archived = jsonapi.only_is_archived(_body(), "authorization")
    row = jsonapi.own_authorization(s, v, uid)
    row.is_archived = archived
    s.flush()
    return jsonapi.get_authorization(s, v, uid, {})


@bp.delete("/authorizations/<uid>")
@api
def delete_authorization(s, v: View, uid: str):
    return jsonapi.delete_authorization(s, v, uid)


@bp.post("/authorizations/<uid>/revoke")
@api
def revoke_authorization(s, v: View, uid: str):
    row = jsonapi.own_authorization(s, v, uid)
    lifecycle.revoke(s, row, by="third_party", now=v.now)
    s.flush()
    return jsonapi.get_authorization(s, v, uid, {})


# ---------------------------------------------------------------- meters, bills, intervals


@bp.get("/meters")
@api
def meters(s, v: View):
    return jsonapi.list_meters(s, v, _params())


@bp.post("/meters/historical-collection")
@api
def historical_collection(s, v: View):
    return jsonapi.historical_collection(s, v, _body())


@bp.get("/meters/<uid>")
@api
def meter(s, v: View, uid: str):
    return jsonapi.get_meter(s, v, uid, _params())


@bp.patch("/meters/<uid>")
@api
def modify_meter(s, v: View, uid: str):
    archived = jsonapi.only_is_archived(_body(), "meter")
    _authorization, row = jsonapi.own_meter(s, v, uid)
    row.is_archived = archived
    s.flush()
    return jsonapi.get_meter(s, v, uid, {})


@bp.get("/bills")
@api
def bills(s, v: View):
    return jsonapi.list_bills(s, v, _params())


@bp.get("/intervals")
@api
def intervals(s, v: View):
    return jsonapi.list_intervals(s, v, _params())


# ---------------------------------------------------------------- forms


@bp.get("/forms")
@api
def forms(s, v: View):
    jsonapi.default_form(s, v)
    return jsonapi.list_forms(s, v, _params())


@bp.post("/forms")
@api
def create_form(s, v: View):
    return jsonapi.form_object(v, jsonapi.create_form(s, v, _body()))


@bp.get("/forms/<uid>")
@api
def form(s, v: View, uid: str):
    return jsonapi.form_object(v, jsonapi.own_form(s, v, uid))


@bp.post("/forms/<uid>/test-submit")
@api
def test_submit(s, v: View, uid: str):
    return testsubmit.submit(s, v, uid, _body())


# ---------------------------------------------------------------- events


@bp.get("/events")
@api
def events(s, v: View):
    return jsonapi.list_events(s, v, _params())


@bp.get("/events/<uid>")
@api
def event(s, v: View, uid: str):
    return jsonapi.event_object(jsonapi.own_event(s, v, uid))


@bp.patch("/events/<uid>")
@api
def modify_event(s, v: View, uid: str):
    return jsonapi.event_object(jsonapi.set_event_delivered(s, v, uid, _body()))


# ---------------------------------------------------------------- files


@bp.get("/files/<name>")
@api
def file(s, v: View, name: str):
    """The objects' ``exports`` links, as CSV downloads."""
    body = jsonapi.export_csv(s, v, name, _params())
    return Response(body, content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{name.replace("_csv", "")}.csv"'})


# ---------------------------------------------------------------- everything else


@bp.route("/", defaults={"rest": ""}, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def unknown(rest: str):
    """Unknown paths and methods answer in the envelope too (a 404 outside any blueprint
    would be an HTML page, and a POST would first meet the CSRF check)."""
    adapter = current_app.url_map.bind("localhost")
    path = f"{jsonapi.API_PATH}/{rest}"
    real = []
    for method in ("GET", "POST", "PATCH", "DELETE"):
        try:
            endpoint, _args = adapter.match(path, method=method)
        except HTTPException:
            continue
        if endpoint != request.endpoint:
            real.append(method)
    if real:
        raise MethodNotAllowed(valid_methods=real, description=f"Use {', '.join(real)} on this path.")
    raise NotFound("Resource not found.")

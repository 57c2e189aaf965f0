"""The sandbox's Green Button (ESPI) API: same paths and Atom shapes as
UtilityAPI's ``/DataCustodian/espi/1_1/resource`` (reference §4)."""
from __future__ import annotations

import json
from datetime import UTC, datetime

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, abort, current_app

from ..espi.build import authorization_entry, batch_subscription_feed
from .lifecycle import meters_of
from .models import AuthorizationRow, TokenRow
from .oauth import ctx
from .resources import RESOURCE_PATH, espi_authorization, meter_resources, resource_base

bp = Blueprint("espi", __name__, url_prefix=RESOURCE_PATH)

ATOM = "application/atom+xml"


def _token() -> TokenRow:
    try:
        return current_app.extensions["gbc_resource_protector"].acquire_token()
    except OAuth2Error as error:
        status, body, headers = error()
        abort(Response(body if isinstance(body, str) else json.dumps(dict(body)),
                       status=status, headers=dict(headers), content_type="application/json"))


def _authorization_for(uid: str) -> AuthorizationRow:
    token = _token()
    if token.token_class != "access":
        abort(403, "This endpoint needs an access_token from the authorization_code grant.")
    if token.authorization_uid != uid:
        abort(404, "No such resource for this token.")
    with ctx().db.session() as s:
        row = s.get(AuthorizationRow, uid)
        if row is None or row.status != 1:
            abort(404, "No such resource for this token.")
        return row


def _xml(body: bytes) -> Response:
    return Response(body, content_type=f"{ATOM}; charset=utf-8")


def _stamp(row: AuthorizationRow) -> datetime:
    return row.created.replace(tzinfo=UTC)


@bp.get("/Authorization/<uid>")
def authorization(uid: str):
    row = _authorization_for(uid)
    base = resource_base(ctx().settings["sandbox_url"])
    return _xml(authorization_entry(base, espi_authorization(row, base),
                                    updated=_stamp(row), published=_stamp(row)))


@bp.get("/Batch/Subscription/<uid>")
@bp.get("/Subscription/<uid>")
def batch_subscription(uid: str):
    row = _authorization_for(uid)
    customer = ctx().directory.by_account(row.account_number)
    with ctx().db.session() as s:
        return _xml(batch_subscription_feed(resource_base(ctx().settings["sandbox_url"]), row.uid,
                                        meter_resources(customer, meters_of(s, row.uid)),
                                        updated=_stamp(row), published=_stamp(row)))

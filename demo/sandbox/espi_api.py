"""The sandbox's Green Button (ESPI) API: same paths and Atom shapes as
UtilityAPI's ``/DataCustodian/espi/1_1/resource`` (reference §4)."""
from __future__ import annotations

import json
from datetime import UTC, datetime

from authlib.oauth2 import OAuth2Error
from flask import Blueprint, Response, abort, current_app

from ..espi.build import MeterResource, authorization_entry, batch_subscription_feed
from ..espi.model import Authorization, DateTimeInterval, LocalTimeParameters
from .models import AuthorizationRow, TokenRow
from .oauth import ctx, resource_base

bp = Blueprint("espi", __name__, url_prefix="/DataCustodian/espi/1_1/resource")

ATOM = "application/atom+xml"
PACIFIC = LocalTimeParameters(tz_offset=-28800, dst_offset=3600, dst_start_rule="360E2000",
                              dst_end_rule="B40E2000")


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


def _model(row: AuthorizationRow) -> Authorization:
    base = resource_base(ctx().settings)
    end = row.authorized_end
    fb = (row.scope.split(";")[0] if row.scope else "").removeprefix("FB=").split("_")
    return Authorization(
        uid=row.uid,
        status=row.status,
        scope=row.scope,
        token_type="Bearer",
        authorized_period=DateTimeInterval(row.authorized_start, max(0, end - row.authorized_start) if end else 0),
        published_period=DateTimeInterval(row.history_start, row.authorized_start - row.history_start),
        expires_at=end or None,
        grant_type="authorization_code",
        resource_uri=f"{base}/Batch/Subscription/{row.uid}",
        authorization_uri=f"{base}/Authorization/{row.uid}",
        customer_resource_uri=f"{base}/Batch/RetailCustomer/{row.uid}" if "51" in fb else None,
    )


def _stamp(row: AuthorizationRow) -> datetime:
    return row.created.replace(tzinfo=UTC)


@bp.get("/Authorization/<uid>")
def authorization(uid: str):
    row = _authorization_for(uid)
    return _xml(authorization_entry(resource_base(ctx().settings), _model(row),
                                    updated=_stamp(row), published=_stamp(row)))


@bp.get("/Batch/Subscription/<uid>")
@bp.get("/Subscription/<uid>")
def batch_subscription(uid: str):
    row = _authorization_for(uid)
    customer = ctx().directory.by_account(row.account_number)
    meters = [
        MeterResource(uid=m.uid, tariff=m.service_tariff, service_kind=m.service_kind,
                      title=m.service_address, local_time=PACIFIC)
        for m in (customer.meters if customer else ()) if m.uid in row.meter_uids
    ]
    return _xml(batch_subscription_feed(resource_base(ctx().settings), row.uid, meters,
                                        updated=_stamp(row), published=_stamp(row)))

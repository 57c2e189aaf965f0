"""What the sandbox serves, as ESPI models (no Flask): the resource base, the
Authorization resource of a stored authorization, and its meters' UsagePoints."""
from __future__ import annotations

from ..espi.build import MeterResource
from ..espi.model import Authorization, DateTimeInterval, LocalTimeParameters
from ..lookup import Customer, Meter
from ..scope import ScopeError, parse_scope
from .models import AuthorizationRow, MeterRow

RESOURCE_PATH = "/DataCustodian/espi/1_1/resource"
#: US Pacific time, as UtilityAPI sends it for PCE (reference §3.4).
PACIFIC = LocalTimeParameters(tz_offset=-28800, dst_offset=3600, dst_start_rule="360E2000",
                              dst_end_rule="B40E2000")


def resource_base(sandbox_url: str) -> str:
    return sandbox_url.rstrip("/") + RESOURCE_PATH


def grants_customer_data(scope: str) -> bool:
    """FB 51 (retail customer) in a granted scope."""
    try:
        return 51 in parse_scope(scope).function_blocks
    except ScopeError:
        return False


def espi_authorization(row: AuthorizationRow, base: str) -> Authorization:
    """The ESPI Authorization resource, with UtilityAPI's Batch/ URIs (the CITY-P capture)."""
    end = row.authorized_end
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
        customer_resource_uri=f"{base}/Batch/RetailCustomer/{row.uid}" if grants_customer_data(row.scope) else None,
    )


def service_meter(customer: Customer | None, meter: MeterRow) -> Meter | None:
    """The customer-directory meter behind an authorization's meter."""
    for m in customer.meters if customer else ():
        if m.uid == meter.service_uid:
            return m
    return None


def meter_resources(customer: Customer | None, meters: list[MeterRow]) -> list[MeterResource]:
    """The shared meters as UsagePoints (id = the authorization's meter uid), in the customer's order."""
    resources = []
    for meter in meters:
        m = service_meter(customer, meter)
        if m is not None:
            resources.append(MeterResource(uid=meter.uid, tariff=m.service_tariff, service_kind=m.service_kind,
                                           title=m.service_address, local_time=PACIFIC))
    return resources

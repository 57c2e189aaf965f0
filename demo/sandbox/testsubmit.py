"""``POST /api/v2/forms/{uid}/test-submit`` (reference §3.2), free of Flask.

A test-submit makes a test Authorization as if a customer had submitted the
form, so automated tests can exercise a third party's integration without the
authorize page. It goes through :func:`.lifecycle.authorized` exactly like an
OAuth authorization: meters get new uids, events are recorded (and sent to
webhooks), and data is collected after ``sandbox_ready_delay`` seconds.

Each scenario names the directory customer whose meters it returns and the
behaviour of its collection (UtilityAPI's documented table plus names seen in a
real DEMO integration, §3.2). Scenarios whose customer is missing from the
customer file are not offered.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ..lookup import CustomerDirectory
from ..scope import parse_scope
from . import custodian, lifecycle
from .jsonapi import ApiError, View, authorization_object, body_object, form_expiry, own_form
from .models import AuthorizationRow, FormRow


@dataclass(frozen=True)
class Scenario:
    name: str
    customer: str        # the customer-directory scenario whose account and meters are used
    behaviour: str       # AuthorizationRow.behaviour (see lifecycle.ERRORED_BEHAVIOURS, jsonapi.FAILURES)
    description: str
    meters: bool = True  # False: the account is found but no meter is shared
    revoke: bool = False  # the customer revokes right after authorizing


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("residential", "residential", "normal", "finds 1 residential meter"),
    Scenario("commercial", "commercial", "normal", "finds 4 commercial meters (one with solar export)"),
    Scenario("badlogin", "residential", "badlogin", "authorization fails: invalid login credentials"),
    Scenario("badlogin_after", "residential", "badlogin_after",
             "returns a meter, then fails with badlogin when collecting its data"),
    Scenario("websitedown", "residential", "websitedown", "error: utility website down"),
    Scenario("websitedown_after", "residential", "websitedown_after",
             "returns a meter, then the utility website is down during collection"),
    Scenario("utilityerror", "residential", "utilityerror", "authorization fails: utility-side error"),
    Scenario("nointervals", "residential", "nointervals", "returns a meter with bills but no intervals"),
    Scenario("empty", "residential", "normal", "the account is found but has no eligible meters", meters=False),
    Scenario("revoked", "residential", "normal", "returns a meter, then the customer revokes the authorization",
             revoke=True),
)}

DEFAULT_REQUEST = "FB=4_16_51"


def available(directory: CustomerDirectory) -> list[str]:
    """Scenario names whose customer exists in the customer file."""
    return [name for name, sc in SCENARIOS.items() if directory.scenario(sc.customer) is not None]


def _authorization_end(form: FormRow, now: int) -> int:
    """The form's ``scope.expires`` (a duration such as ``3y``, or ISO 8601), else 3 years."""
    end = form_expiry((form.scope or {}).get("expires"), now)
    return end if end is not None else now + custodian.DEFAULT_AUTH_LENGTH


def submit(s: Session, view: View, form_uid: str, body: Any) -> dict:
    """Validate ``{"utility", "scenario"}`` (both required), create the test authorization,
    and return its Authorization object plus the ``referral`` code it was filed under
    (CED re-queries ``/authorizations?referrals=<referral>&include=meters``)."""
    form = own_form(s, view, form_uid)
    body = body_object(body)
    missing = [k for k in ("utility", "scenario") if body.get(k) in (None, "")]
    if missing:
        raise ApiError(400, "required_param_missing", f"{' and '.join(missing)} required, e.g. "
                       f'{{"utility": "{view.utility}", "scenario": "residential"}}.',
                       "https://utilityapi.com/docs/api/forms/test-submit")
    if body["utility"] != view.utility:
        raise ApiError(400, "invalid_param", f"utility must be {view.utility!r}: the only utility of this sandbox.")
    valid = available(view.directory)
    scenario = SCENARIOS.get(body["scenario"]) if isinstance(body["scenario"], str) else None
    if scenario is None or scenario.name not in valid:
        raise ApiError(400, "invalid_param", f"Unknown scenario; use one of: {', '.join(valid)}.",
                       scenarios=valid)
    if form.disabled:
        raise ApiError(400, "invalid_param", "This form is disabled.")
    customer = view.directory.scenario(scenario.customer)
    service_uids = [m.uid for m in customer.meters] if scenario.meters else []
    now = view.epoch
    history = custodian.DEFAULT_HISTORY
    referral = secrets.token_hex(6)
    row = AuthorizationRow(
        uid=lifecycle.numeric_uid(s, AuthorizationRow),
        client_id=view.client.client_id,
        scenario=customer.scenario,
        account_number=customer.account_number,
        customer_email=form.customer_email or customer.email,
        status=1,
        requested_scope=DEFAULT_REQUEST,
        scope=custodian.granted_scope(parse_scope(DEFAULT_REQUEST), history=history, meters=len(service_uids)),
        meter_uids=[],
        history_start=now - history,
        authorized_start=now,
        authorized_end=_authorization_end(form, now),
        is_test=True,
        source="test-submit",
        behaviour=scenario.behaviour,
        form_uid=form.uid,
        referrals=[referral],
    )
    s.add(row)
    s.flush()
    lifecycle.authorized(s, row, service_uids, view.settings, now=view.now)
    if scenario.revoke:
        lifecycle.revoke(s, row, by="customer", now=view.now)
    s.flush()
    return {**authorization_object(view, row, form=form), "referral": referral}

"""The customer's side of an authorization: lookup -> one-time passcode ->
consent, the receipt, and "My authorizations" (no Flask; views call these
functions with a database session).

Sandbox vs live mode (reference §1.1) is enforced here: a sandbox-mode
registration can only receive data from PCE test accounts.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.orm import Session

from ..lookup import LOOKUP_LABELS, NOT_FOUND, Contact, Customer, CustomerDirectory, LookupError_, LookupResult
from ..scope import REQUESTABLE_FUNCTION_BLOCKS, Scope, ScopeError, parse_scope
from ..storage import utcnow
from ..tokens import digest, new_otp, new_uid, same
from . import custodian, lifecycle
from .models import AuthorizationCodeRow, AuthorizationRow, ClientRow, OutboxMessage, PendingAuthorization
from .resources import service_meter

PENDING_LIFETIME = timedelta(days=1)
#: how long a customer who confirmed their passcode may manage "My authorizations"
SELF_SERVICE_LIFETIME = timedelta(hours=1)
#: marks a pending record that is a "My authorizations" sign-in, not an OAuth request
SELF_SERVICE = "my-authorizations"


def client_of(s: Session, pending: PendingAuthorization) -> ClientRow | None:
    return s.get(ClientRow, pending.client_id) if pending.client_id else None


def company_of(s: Session, pending: PendingAuthorization) -> str:
    client = client_of(s, pending)
    return client.company_name if client else pending.client_id


def mode_refusal(client: ClientRow | None, customer: Customer | None, utility: str) -> str | None:
    """Why this registration may not ask this customer for data, or None when it may.
    A sandbox-mode registration only reaches the utility's test accounts (reference §1.1)."""
    if client is None or customer is None or customer.test or client.mode == "live":
        return None
    return (f"{client.company_name} is in sandbox mode: it can only receive data from {utility} test "
            "accounts. Nothing was shared.")


def begin(s: Session, client_id: str, request_args: dict) -> PendingAuthorization:
    """A new pending authorization; abandoned ones and expired codes are cleared on the way."""
    cutoff = utcnow() - PENDING_LIFETIME
    s.query(PendingAuthorization).filter(PendingAuthorization.created < cutoff).delete()
    s.query(AuthorizationCodeRow).filter(AuthorizationCodeRow.expires < utcnow()).delete()
    pending = PendingAuthorization(id=new_uid(), client_id=client_id, request_args=dict(request_args))
    s.add(pending)
    return pending


def started_at(pending: PendingAuthorization) -> int:
    """When the customer arrived at /oauth/authorize (epoch seconds)."""
    return int(pending.created.replace(tzinfo=UTC).timestamp())


def requested_scope(pending: PendingAuthorization) -> Scope:
    return parse_scope(pending.request_args.get("scope") or custodian.DEFAULT_SCOPE)


def prefill(pending: PendingAuthorization) -> tuple[str, str] | None:
    """The lookup the third party pre-filled: ``(type, value)``; value "" for ``auth-{type}``."""
    try:
        scope = requested_scope(pending)
    except ScopeError:
        return None
    return scope.lookup or ((scope.lookup_type, "") if scope.lookup_type else None)


def try_prefill(s: Session, pending: PendingAuthorization, directory: CustomerDirectory, settings: dict,
                company_name: str) -> bool:
    """Look the customer up from the scope's prefill. True: found, on to the passcode step.
    False: the lookup step follows, with a notice when a prefilled value found nobody."""
    lookup = requested_scope(pending).lookup
    if lookup is None:
        return False
    lookup_type, value = lookup
    try:
        result = directory.find(lookup_type, value)
    except LookupError_ as exc:
        pending.notice = (f"We couldn't use the {LOOKUP_LABELS[lookup_type].lower()} {value!r} "
                          f"that was filled in for you: {exc}")
        return False
    if not result.found:
        pending.notice = result.message
        return False
    refusal = mode_refusal(client_of(s, pending), result.customer, settings["utility"])
    if refusal:
        pending.notice = refusal
        return False
    use_lookup(s, pending, result, lookup_type, settings, company_name)
    return True


def lookup(s: Session, pending: PendingAuthorization, directory: CustomerDirectory, settings: dict,
           lookup_type: str, value: str) -> str | None:
    """The customer typed how to find their account: None when found (on to the passcode),
    else what to tell them. Malformed input, nobody found and a customer this registration
    may not reach (sandbox mode) all leave the request where it is."""
    result = _find(directory, lookup_type, value)
    if isinstance(result, str):
        return result
    client = client_of(s, pending)
    refusal = mode_refusal(client, result.customer, settings["utility"])
    if refusal:
        return refusal
    use_lookup(s, pending, result, lookup_type, settings, client.company_name if client else None)
    return None


def _find(directory: CustomerDirectory, lookup_type: str, value: str) -> LookupResult | str:
    """The found customer, or what to tell the person who typed ``value``."""
    try:
        result = directory.find(lookup_type, value)
    except LookupError_ as exc:
        return str(exc)
    return result if result.found else result.message


def use_lookup(s: Session, pending: PendingAuthorization, result: LookupResult, lookup_type: str,
               settings: dict, company_name: str | None) -> None:
    """A found customer moves the pending authorization to the passcode step."""
    assert result.customer is not None and result.contact is not None
    pending.scenario = result.customer.scenario
    pending.account_number = result.customer.account_number
    pending.lookup_type = lookup_type
    pending.contact_channel = result.contact.channel
    pending.contact_address = result.contact.address
    # TEST_<scenario>_<contact> and real customers get a (recorded) message; PCE's test
    # identifiers see the passcode on the page instead
    pending.test_contact = result.test_contact or not result.customer.test
    pending.notice = None
    issue_otp(s, pending, settings, company_name)


def issue_otp(s: Session, pending: PendingAuthorization, settings: dict, company_name: str | None) -> None:
    """A new passcode: shown on the page for test identifiers, recorded in the
    outbox for ``TEST_<scenario>_<contact>`` and real customers (real delivery comes
    later). Without a company it is a "My authorizations" sign-in."""
    code = new_otp()
    pending.stage = "otp"
    pending.otp_hash = digest(pending.id + ":" + code)
    pending.otp_expires = utcnow() + timedelta(seconds=int(settings["sandbox_otp_ttl"]))
    pending.otp_attempts = 0
    if pending.test_contact:
        pending.otp_shown = None
        minutes = int(settings["sandbox_otp_ttl"]) // 60
        utility = settings["utility_name"]
        purpose = (f"to share your energy data with {company_name}" if company_name
                   else "to see and manage who you share your energy data with")
        text = (f"{utility}: {code} is your passcode {purpose}. "
                f"It expires in {minutes} minutes. If you didn't ask for this, ignore this message.")
        s.add(OutboxMessage(channel=pending.contact_channel, to=pending.contact_address,
                            scenario=pending.scenario or "", text=text))
    else:
        pending.otp_shown = code if settings["sandbox_show_test_otp"] else None


@dataclass(frozen=True)
class Verification:
    ok: bool
    message: str = ""
    restart: bool = False     # back to the lookup step


def verify_otp(pending: PendingAuthorization, code: str, directory: CustomerDirectory,
               max_attempts: int) -> Verification:
    code = "".join(ch for ch in (code or "") if ch.isdigit())
    if pending.stage != "otp" or pending.otp_hash is None:
        return Verification(False, "Look up your account first.", restart=True)
    if pending.otp_expires is None or pending.otp_expires < utcnow():
        _restart(pending, "That passcode has expired. Look up your account again to get a new one.")
        return Verification(False, pending.notice, restart=True)
    if not same(digest(pending.id + ":" + code), pending.otp_hash):
        pending.otp_attempts += 1
        left = max_attempts - pending.otp_attempts
        if left <= 0:
            _restart(pending, "Too many wrong passcodes. For your security, start again by looking up your account.")
            return Verification(False, pending.notice, restart=True)
        return Verification(False, f"That passcode isn't right. You have {left} "
                                   f"{'try' if left == 1 else 'tries'} left.")
    customer = directory.by_account(pending.account_number or "")
    if customer is None or not customer.findable:
        # badlogin via TEST_badlogin_<contact>: the passcode arrives, then the account is not found
        _restart(pending, NOT_FOUND)
        return Verification(False, NOT_FOUND, restart=True)
    pending.stage = "consent"
    pending.otp_hash = None
    pending.otp_shown = None
    return Verification(True)


def _restart(pending: PendingAuthorization, notice: str) -> None:
    pending.stage = "lookup"
    pending.otp_hash = None
    pending.otp_shown = None
    pending.otp_expires = None
    pending.otp_attempts = 0
    pending.notice = notice


@dataclass(frozen=True)
class ConsentOptions:
    scope: Scope
    blocks: list[int]
    history: list[custodian.Choice]
    ends: list[custodian.Choice]
    editable: bool
    meters_fixed: bool


def consent_options(scope: Scope, now: int | None = None) -> ConsentOptions:
    now = int(time.time()) if now is None else now
    history = custodian.requested_history(scope)
    end = custodian.requested_end(scope, now)
    editable = not scope.noedit
    return ConsentOptions(
        scope=scope,
        blocks=custodian.requested_blocks(scope),
        history=(custodian.history_choices(history) if editable
                 else [custodian.Choice(history, custodian.history_label(history))]),
        ends=custodian.end_choices(end, now) if editable else [custodian.Choice(end, custodian.end_label(end))],
        editable=editable,
        meters_fixed=scope.noedit or scope.meters_all,
    )


def authorize(s: Session, pending: PendingAuthorization, customer: Customer, options: ConsentOptions,
              *, history: int, end: int, meter_uids: list[str], settings: dict) -> AuthorizationRow:
    """Record the customer's authorization with the final scope; its meters get
    new uids and data collection starts (:func:`.lifecycle.authorized`)."""
    refusal = mode_refusal(client_of(s, pending), customer, settings["utility"])
    if refusal:  # the registration went back to sandbox mode since the lookup
        raise ValueError(refusal)
    allowed = {c.value for c in options.history}
    if history not in allowed:
        raise ValueError("Choose how much past data to share from the list.")
    if end not in {c.value for c in options.ends}:
        raise ValueError("Choose until when to share from the list.")
    all_meters = [m.uid for m in customer.meters]
    if options.meters_fixed:
        meter_uids = all_meters
    meter_uids = [uid for uid in all_meters if uid in set(meter_uids)]
    if not meter_uids:
        raise ValueError("Choose at least one meter to share.")
    now = int(time.time())
    row = AuthorizationRow(
        uid=lifecycle.numeric_uid(s, AuthorizationRow),
        client_id=pending.client_id,
        scenario=customer.scenario,
        account_number=customer.account_number,
        customer_email=customer.email,
        status=1,
        requested_scope=options.scope.to_string(),
        scope=custodian.granted_scope(options.scope, history=history, meters=len(meter_uids)),
        meter_uids=meter_uids,
        history_start=now - history,
        authorized_start=now,
        authorized_end=end,
        is_test=customer.test,
    )
    s.add(row)
    s.flush()
    lifecycle.authorized(s, row, meter_uids, settings)
    return row


def decline(s: Session, pending: PendingAuthorization, customer: Customer | None, scope: Scope) -> None:
    """A declined request is kept (status 2, 'denied'), as UtilityAPI keeps declined authorizations."""
    if customer is None:
        return
    now = int(time.time())
    row = AuthorizationRow(
        uid=lifecycle.numeric_uid(s, AuthorizationRow),
        client_id=pending.client_id, scenario=customer.scenario,
        account_number=customer.account_number, customer_email=customer.email, status=2,
        requested_scope=scope.to_string(), scope="", meter_uids=[], history_start=now,
        authorized_start=now, authorized_end=now, is_test=customer.test,
    )
    s.add(row)
    s.flush()
    lifecycle.declined(s, row)


def contact_of(pending: PendingAuthorization) -> Contact | None:
    if pending.contact_channel and pending.contact_address:
        return Contact(pending.contact_channel, pending.contact_address)
    return None


# ---- after the decision: status, receipt, "My authorizations" ----------------------------

def status_of(row: AuthorizationRow, now: datetime | None = None) -> str:
    """``active``, ``revoked``, ``declined`` or ``expired``, in the customer's words."""
    if row.status == 2:
        return "declined"
    if row.status == 0:
        return "revoked"
    if lifecycle.is_expired(row, now):
        return "expired"
    return "active"


@dataclass(frozen=True)
class SharedMeter:
    uid: str                 # the authorization's meter uid (UtilityAPI's meter uid)
    meter_number: str
    address: str
    tariff: str


@dataclass(frozen=True)
class Summary:
    """An authorization in plain words: who, what, how far back, until when, which meters."""

    row: AuthorizationRow
    company: str
    status: str
    shares: tuple[str, ...]
    history: str
    until: str
    meters: tuple[SharedMeter, ...]

    @property
    def uid(self) -> str:
        return self.row.uid

    @property
    def revocable(self) -> bool:
        return self.status == "active"


def summarize(s: Session, directory: CustomerDirectory, row: AuthorizationRow,
              company: str | None = None, now: datetime | None = None) -> Summary:
    try:
        blocks = custodian.requested_blocks(parse_scope(row.scope or row.requested_scope or custodian.DEFAULT_SCOPE))
    except ScopeError:
        blocks = []
    if company is None:
        client = s.get(ClientRow, row.client_id)
        company = client.company_name if client else row.client_id
    customer = directory.by_account(row.account_number)
    meters = []
    for meter in lifecycle.meters_of(s, row.uid):
        known = service_meter(customer, meter)
        if known is not None:
            meters.append(SharedMeter(meter.uid, known.meter_number, known.service_address, known.service_tariff))
    return Summary(
        row=row, company=company, status=status_of(row, now),
        shares=tuple(REQUESTABLE_FUNCTION_BLOCKS[fb] for fb in blocks),
        history=custodian.history_label(max(0, row.authorized_start - row.history_start)),
        until=custodian.end_label(row.authorized_end),
        meters=tuple(meters),
    )


_RECEIPT_SALT = "gbc-sandbox-receipt"


def receipt_key(secret_key: str, uid: str) -> str:
    """The signature in a receipt link. Like the receipt e-mail's link it does not expire: it
    is the customer's standing way to see and revoke this one authorization, and without
    the app's secret key nobody can make one from an authorization uid."""
    return URLSafeSerializer(secret_key, salt=_RECEIPT_SALT).dumps(uid)


def receipt_key_valid(secret_key: str, uid: str, key: str | None) -> bool:
    if not key or len(key) > 300:
        return False
    try:
        return URLSafeSerializer(secret_key, salt=_RECEIPT_SALT).loads(key) == uid
    except BadSignature:
        return False


def revoke_by_customer(s: Session, row: AuthorizationRow) -> bool:
    """The customer revokes (receipt or "My authorizations"): future access stops; data
    already downloaded is not recalled (reference §1.4). False when it was not active."""
    if status_of(row) != "active":
        return False
    return lifecycle.revoke(s, row, by="customer")


def begin_self_service(s: Session) -> PendingAuthorization:
    """A "My authorizations" sign-in: the same lookup and passcode rules as an OAuth
    request (test passcode on the page, attempts, expiry), without a third party."""
    return begin(s, "", {"purpose": SELF_SERVICE})


def is_self_service(pending: PendingAuthorization | None) -> bool:
    return pending is not None and (pending.request_args or {}).get("purpose") == SELF_SERVICE


def self_service_lookup(s: Session, pending: PendingAuthorization, directory: CustomerDirectory, settings: dict,
                        lookup_type: str, value: str) -> str | None:
    """None when found (on to the passcode), else what to tell the customer. Unlike
    :func:`lookup`, no registration's mode applies: customers manage their own authorizations."""
    result = _find(directory, lookup_type, value)
    if isinstance(result, str):
        return result
    use_lookup(s, pending, result, lookup_type, settings, None)
    return None


def self_service_account(pending: PendingAuthorization | None, now: datetime | None = None) -> str | None:
    """The account this browser may manage: its passcode was confirmed less than
    :data:`SELF_SERVICE_LIFETIME` ago."""
    if not is_self_service(pending) or pending.stage != "consent" or not pending.account_number:
        return None
    if pending.created + SELF_SERVICE_LIFETIME < (now or utcnow()):
        return None
    return pending.account_number


def authorizations_of(s: Session, account_number: str) -> list[AuthorizationRow]:
    """Every authorization of a customer's account, newest first."""
    return (s.query(AuthorizationRow).filter_by(account_number=account_number)
            .order_by(AuthorizationRow.created.desc()).all())

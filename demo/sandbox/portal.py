"""The customer's side of an authorization: lookup -> one-time passcode ->
consent, the receipt, and "My authorizations" (no Flask; views call these
functions with a database session).

Sandbox vs live mode (reference §1.1) is enforced here: a sandbox-mode
registration can only receive data from PCE test accounts.
"""
from __future__ import annotations

import math
import re
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from time import monotonic

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func
from sqlalchemy.orm import Session

from ..lookup import LOOKUP_LABELS, NOT_FOUND, Contact, Customer, CustomerDirectory, LookupError_, LookupResult
from ..scope import REQUESTABLE_FUNCTION_BLOCKS, Scope, ScopeError, parse_scope
from ..storage import Database, utcnow
from ..tokens import digest, new_otp, new_uid, same
from . import custodian, delivery, lifecycle
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
    return shown_company(client_of(s, pending), pending)


def shown_company(client: ClientRow | None, pending: PendingAuthorization) -> str:
    """The third party's name as the customer sees it (its client id when it is gone)."""
    return client.company_name if client else pending.client_id


def mode_refusal(client: ClientRow | None, customer: Customer | None, utility: str) -> str | None:
    """Why this registration may not ask this customer for data, or None when it may.
    A sandbox-mode registration only reaches the utility's test accounts (reference §1.1)."""
    if client is None or customer is None or customer.test or client.mode == "live":
        return None
    return (f"{client.company_name} is in sandbox mode: it can only receive data from {utility} test "
            "accounts. Nothing was shared.")


CODE_MEMORY = timedelta(days=1)


#: how often (seconds, per process and database) :func:`begin` clears abandoned requests and old codes
CLEAN_UP_EVERY = 60.0
_last_clean_up: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def clean_up(s: Session, now: datetime | None = None) -> None:
    """Delete pending requests older than :data:`PENDING_LIFETIME` and codes expired more than
    :data:`CODE_MEMORY` ago (both scan their whole table)."""
    now = now or utcnow()
    s.query(PendingAuthorization).filter(PendingAuthorization.created < now - PENDING_LIFETIME).delete()
    # spent and expired codes are kept a day, so that a replay is still recognised (sandbox/oauth.py)
    s.query(AuthorizationCodeRow).filter(AuthorizationCodeRow.expires < now - CODE_MEMORY).delete()


def _clean_up_due(s: Session) -> bool:
    """True at most once every :data:`CLEAN_UP_EVERY` seconds per process and database. The rows
    cleared are a day past their use, so they go at most a minute later than on every request:
    an expired code is refused by its own expiry check meanwhile."""
    engine = s.get_bind()
    clock = monotonic()
    last = _last_clean_up.get(engine)
    if last is not None and clock - last < CLEAN_UP_EVERY:
        return False
    _last_clean_up[engine] = clock
    return True


def begin(s: Session, client_id: str, request_args: dict, browser_hash: str | None = None) -> PendingAuthorization:
    """A new pending authorization; abandoned ones and expired codes are cleared on the way
    (:func:`clean_up`, at most once a minute per process).
    ``browser_hash`` names the browser session, so its outbox messages can be told apart."""
    if _clean_up_due(s):
        clean_up(s)
    pending = PendingAuthorization(id=new_uid(), client_id=client_id, request_args=dict(request_args),
                                   browser_hash=browser_hash)
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
                client: ClientRow | None) -> bool:
    """Look the customer up from the scope's prefill. True: found, on to the passcode step.
    False: the lookup step follows, with a notice when a prefilled value found nobody.
    ``client`` is the pending request's registration (just read by the caller)."""
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
    refusal = mode_refusal(client, result.customer, settings["utility"])
    if refusal:
        pending.notice = refusal
        return False
    use_lookup(s, pending, result, lookup_type, settings, shown_company(client, pending))
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
    # TEST_<scenario>_<contact> and real customers get a message in the outbox; PCE's test
    # identifiers see the passcode on the page instead. Only TEST_<scenario>_<contact>
    # is really delivered: the real customers are fictional.
    pending.test_contact = result.test_contact or not result.customer.test
    pending.deliver = result.test_contact
    pending.notice = None
    issue_otp(s, pending, settings, company_name)


def issue_otp(s: Session, pending: PendingAuthorization, settings: dict, company_name: str | None,
              now: float | None = None) -> None:
    """A new passcode: shown on the page for test identifiers, recorded in the outbox for
    ``TEST_<scenario>_<contact>`` (queued for delivery: :func:`deliver_queued` sends it once
    this transaction is committed) and for the fictional real customers (never sent).
    Without a company it is a "My authorizations" sign-in."""
    now = time.time() if now is None else now
    code = new_otp()
    pending.stage = "otp"
    pending.otp_hash = digest(pending.id + ":" + code)
    pending.otp_expires = utcnow() + timedelta(seconds=int(settings["sandbox_otp_ttl"]))
    pending.otp_attempts = 0
    pending.otp_sent = [t for t in (pending.otp_sent or []) if t > now - HOUR] + [now]
    pending.otp_delivery = pending.otp_delivery_detail = None
    if pending.test_contact:
        pending.otp_shown = None
        minutes = max(1, int(settings["sandbox_otp_ttl"]) // 60)
        utility = settings["utility_name"]
        if pending.contact_channel == "sms":
            subject, text = "", delivery.sms_text(utility, code, minutes, company_name)
        else:
            subject = delivery.email_subject(utility)
            text = delivery.email_text(utility, code, minutes, company_name)
        # a passcode still waiting to go out is replaced by this one
        (s.query(OutboxMessage).filter_by(pending_id=pending.id, delivery=delivery.QUEUED)
         .update({"delivery": delivery.NOT_SENT, "detail": "not sent: replaced by a newer passcode"},
                 synchronize_session=False))
        if pending.deliver and recipient_full(s, pending.contact_channel, pending.contact_address, settings):
            cap = int(settings["sandbox_recipient_max"])
            result, detail = delivery.FAILED, (f"not sent: {cap} passcodes already went to this "
                                               f"{'number' if pending.contact_channel == 'sms' else 'address'} "
                                               "in the last hour, the sandbox's limit; try again later")
        elif pending.deliver:
            result, detail = delivery.QUEUED, ""
        else:
            result, detail = delivery.NOT_SENT, "not sent: fictional customer"
        s.add(OutboxMessage(channel=pending.contact_channel, to=pending.contact_address,
                            scenario=pending.scenario or "", subject=subject, text=text,
                            delivery=result, detail=detail, pending_id=pending.id,
                            browser_hash=pending.browser_hash))
        pending.otp_delivery, pending.otp_delivery_detail = result, detail
    else:
        pending.otp_shown = code if settings["sandbox_show_test_otp"] else None


def recipient_full(s: Session, channel: str | None, to: str | None, settings: dict) -> bool:
    """Whether this phone or address already got ``sandbox_recipient_max`` passcodes sent (or
    being sent) in the last hour, from any request: with SMTP or Twilio configured, TEST_
    lookups must not let anyone flood someone else's inbox or phone."""
    cap = int(settings.get("sandbox_recipient_max") or 0)
    if cap <= 0 or not to:
        return False
    since = utcnow() - timedelta(seconds=HOUR)
    sent = (s.query(OutboxMessage.id)
            .filter(OutboxMessage.channel == channel, OutboxMessage.to == to, OutboxMessage.created > since,
                    OutboxMessage.delivery.in_((delivery.QUEUED, delivery.SENDING, delivery.DELIVERED)))
            .limit(cap).count())
    return sent >= cap


# ---- delivery, outside any transaction ---------------------------------------------------

def claim_queued(s: Session, pending_id: str) -> list[tuple[int, delivery.Message]]:
    """The pending authorization's messages waiting to go out, marked as being sent (a
    conditional update, so two requests never send the same message)."""
    claimed = []
    rows = (s.query(OutboxMessage.id, OutboxMessage.channel, OutboxMessage.to, OutboxMessage.text,
                    OutboxMessage.subject)
            .filter_by(pending_id=pending_id, delivery=delivery.QUEUED).order_by(OutboxMessage.id).all())
    for row in rows:
        taken = (s.query(OutboxMessage).filter_by(id=row.id, delivery=delivery.QUEUED)
                 .update({"delivery": delivery.SENDING}, synchronize_session=False))
        if taken:
            claimed.append((row.id, delivery.Message(row.channel, row.to, row.text, row.subject)))
    return claimed


def record_delivery(s: Session, outbox_id: int, pending_id: str, result: delivery.Result) -> None:
    """Store what became of a message; the passcode page shows it while it is the newest one."""
    row = s.get(OutboxMessage, outbox_id)
    if row is not None:       # None: the browser cleared its outbox meanwhile
        row.delivery, row.detail, row.delivered_at = result.status, result.detail, utcnow()
    newer = (s.query(OutboxMessage.id)
             .filter(OutboxMessage.pending_id == pending_id, OutboxMessage.id > outbox_id).first())
    pending = s.get(PendingAuthorization, pending_id)
    if pending is not None and newer is None:
        pending.otp_delivery, pending.otp_delivery_detail = result.status, result.detail


def deliver_queued(db: Database, settings: dict, pending_id: str) -> list[delivery.Result]:
    """Send what :func:`issue_otp` queued. Call it after the transaction that issued the
    passcode is committed: no transaction stays open while SMTP or Twilio answers
    (each attempt is bounded by ``sandbox_delivery_timeout``)."""
    with db.session() as s:
        jobs = claim_queued(s, pending_id)
    results = []
    for outbox_id, message in jobs:
        result = delivery.deliver(settings, message)
        with db.session() as s:
            record_delivery(s, outbox_id, pending_id, result)
        results.append(result)
    return results


def delivery_problem(pending: PendingAuthorization) -> str | None:
    """What the passcode page says when the newest passcode could not be sent."""
    if pending.otp_delivery != delivery.FAILED or not pending.contact_address:
        return None
    to = delivery.shown_to(pending.contact_channel or "", pending.contact_address)
    reason = (pending.otp_delivery_detail or "unknown error").rstrip(".")
    return f"We couldn't send the passcode to {to}: {reason}. You can ask for a new one."


# ---- resend limits ---------------------------------------------------------------------------

HOUR = 3600


@dataclass(frozen=True)
class Wait:
    """How long before another passcode may be sent; ``seconds`` 0: now."""

    seconds: int = 0
    message: str = ""

    def __bool__(self) -> bool:
        return self.seconds > 0


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"


def send_wait(s: Session, pending: PendingAuthorization, settings: dict, interval: bool = True) -> Wait:
    """:func:`resend_wait`, for a request about to issue a passcode in this transaction: the
    row is write-locked first and read again, so of two requests at once the second waits
    for the first to commit and sees its passcode (SQLite has no ``SELECT ... FOR UPDATE``;
    a no-op ``UPDATE`` takes the lock there, and the row lock elsewhere)."""
    (s.query(PendingAuthorization).filter_by(id=pending.id)
     .update({PendingAuthorization.stage: PendingAuthorization.stage}, synchronize_session=False))
    s.refresh(pending)
    return resend_wait(pending, settings, interval=interval)


def resend(s: Session, pending: PendingAuthorization, settings: dict, company_name: str | None) -> Wait:
    """A new passcode, unless the limits say to wait (then how long)."""
    wait = send_wait(s, pending, settings)
    if not wait:
        issue_otp(s, pending, settings, company_name)
    return wait


def resend_wait(pending: PendingAuthorization, settings: dict, now: float | None = None,
                interval: bool = True) -> Wait:
    """The per-pending-authorization limits: ``sandbox_resend_interval`` seconds between
    passcodes (``interval=False`` skips it: a new lookup may go to another contact) and at
    most ``sandbox_resend_max`` passcodes an hour."""
    now = time.time() if now is None else now
    sent = sorted(t for t in (pending.otp_sent or []) if t > now - HOUR)
    gap = int(settings["sandbox_resend_interval"])
    most = int(settings["sandbox_resend_max"])
    if most > 0 and len(sent) >= most:
        seconds = math.ceil(sent[-most] + HOUR - now)
        if seconds > 0:
            return Wait(seconds, f"You've asked for {len(sent)} passcodes in the last hour. "
                                 f"You can ask for a new one in {_duration(seconds)}.")
    if interval and sent and gap > 0:
        seconds = math.ceil(sent[-1] + gap - now)
        if seconds > 0:
            return Wait(seconds, f"A passcode was just issued. You can ask for a new one in {_duration(seconds)}.")
    return Wait()


# ---- the outbox ------------------------------------------------------------------------------

OUTBOX_LIMIT = 200


@dataclass(frozen=True)
class OutboxFilter:
    channel: str = ""
    to: str = ""
    scenario: str = ""
    result: str = ""
    #: only this browser's messages: its hash, or "" for a browser that has none
    browser_hash: str | None = None


def _to_needle(to: str) -> str:
    """What to look for in the outbox's ``to``: phones are stored as 10 digits, so a
    number typed any way (``(650) 555-0100``, ``+1 650…``) is reduced to its digits."""
    to = to.strip().lower()
    if re.fullmatch(r"[\d\s()+.\-]+", to):
        digits = re.sub(r"\D", "", to)
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        return digits or to
    return to


def outbox_messages(s: Session, wanted: OutboxFilter, limit: int = OUTBOX_LIMIT) -> tuple[list[OutboxMessage], int]:
    """The messages matching ``wanted``, newest first (at most ``limit``), and how many match."""
    query = s.query(OutboxMessage)
    if wanted.channel:
        query = query.filter(OutboxMessage.channel == wanted.channel)
    if wanted.to.strip():
        query = query.filter(func.lower(OutboxMessage.to).contains(_to_needle(wanted.to), autoescape=True))
    if wanted.scenario:
        query = query.filter(OutboxMessage.scenario == wanted.scenario)
    if wanted.result:
        query = query.filter(OutboxMessage.delivery == wanted.result)
    if wanted.browser_hash == "":          # a browser that caused nothing: not the rows without one
        return [], 0
    if wanted.browser_hash is not None:
        query = query.filter(OutboxMessage.browser_hash == wanted.browser_hash)
    total = query.count()
    return query.order_by(OutboxMessage.id.desc()).limit(limit).all(), total


def clear_outbox(s: Session, browser_hash: str) -> int:
    """Delete this browser's messages (the visitor's reset); another browser's stay."""
    if not browser_hash:
        return 0
    return s.query(OutboxMessage).filter_by(browser_hash=browser_hash).delete(synchronize_session=False)


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
    # added by lifecycle.authorized once complete: one INSERT with its meters, no UPDATE after
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


def receipt_key(secret_key: str | list[str], uid: str) -> str:
    """The signature in a receipt link. Like the receipt e-mail's link it does not expire: it
    is the customer's standing way to see and revoke this one authorization, and without
    the app's secret key nobody can make one from an authorization uid.

    ``secret_key`` is one key or a list, newest last (fallbacks, then the current key): the
    newest signs, and :func:`receipt_key_valid` accepts any, so links keep working while a key
    is rotated and stop when the old key leaves ``secret_key_fallbacks``."""
    return URLSafeSerializer(secret_key, salt=_RECEIPT_SALT).dumps(uid)


def receipt_key_valid(secret_key: str | list[str], uid: str, key: str | None) -> bool:
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


def begin_self_service(s: Session, browser_hash: str | None = None) -> PendingAuthorization:
    """A "My authorizations" sign-in: the same lookup and passcode rules as an OAuth
    request (test passcode on the page, attempts, expiry), without a third party."""
    return begin(s, "", {"purpose": SELF_SERVICE}, browser_hash=browser_hash)


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

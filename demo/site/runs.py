"""Runs of the OAuth flow, free of Flask: start one, finish it at the
callback, and present it (page and JSON)."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, date, datetime
from datetime import time as dtime
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from sqlalchemy.orm import Session

from ..config import SECRET_VISITOR_KEYS, VISITOR_KEYS, normalized_origin
from ..scope import ScopeError, build_scope, describe_function_block, parse_scope
from ..storage import Database, Vault, utcnow
from ..tokens import digest, mask, new_uid
from . import client as gbc
from .exchanges import Recorder
from .explain import explain_error
from .integrator import IntegratorData, WebhookEvent
from .models import Exchange, Run, VisitorSettings


def effective_settings(settings: dict, row: VisitorSettings | None, vault: Vault) -> dict:
    """Configuration with the visitor's own layer on top."""
    eff = {key: settings[key] for key in VISITOR_KEYS}
    if row is not None:
        eff.update({k: v for k, v in (row.values or {}).items() if k in VISITOR_KEYS})
        secret = vault.decrypt(row.client_secret_enc)
        if secret is not None:
            eff["client_secret"] = secret
        elif eff["token_url"] != settings["token_url"] or eff["client_id"] != settings["client_id"]:
            # the configured secret belongs to the configured client at the configured token
            # endpoint: for another endpoint or another client, the visitor brings their own secret
            eff["client_secret"] = ""
    eff["customised"] = row is not None and bool(row.values or row.client_secret_enc)
    return eff


def client_config(eff: dict, timeout: float) -> gbc.ClientConfig:
    return gbc.ClientConfig(
        client_id=eff["client_id"], client_secret=eff["client_secret"],
        authorize_url=eff["authorize_url"], token_url=eff["token_url"],
        redirect_uri=eff["redirect_uri"], token_auth_method=eff["token_auth_method"],
        pkce=bool(eff["pkce"]), timeout=timeout,
    )


def scope_from_choices(*, function_blocks: list[int], history: str, end_date: date | None,
                       lookup_type: str, lookup_value: str, noedit: bool, meters_all: bool) -> str:
    """The scope the connect form describes (raises ScopeError / ValueError with a clear message)."""
    if not function_blocks:
        raise ValueError("Choose at least one function block.")
    additional = []
    if noedit:
        additional.append("noedit")
    if meters_all:
        additional.append("meters-all")
    lookup = None
    if lookup_type and lookup_type != "none":
        if not (lookup_value or "").strip():
            raise ValueError(f"Enter the {lookup_type} to pre-fill, or choose None.")
        lookup = (lookup_type, lookup_value.strip())
    end_ts = None
    if end_date is not None:
        end_ts = int(datetime.combine(end_date, dtime(0), tzinfo=UTC).timestamp())
        if end_ts <= int(datetime.now(UTC).timestamp()):
            raise ValueError("The authorization end date must be in the future.")
    return build_scope(sorted(set(function_blocks)),
                       history_length=int(history) if history not in ("", None) else None,
                       preferred_auth_end_date=end_ts, additional=additional, lookup=lookup)


STATE_PLACEHOLDER = "{state}"


def review(eff: dict, timeout: float, **choices) -> dict:
    """What the connect form describes: the scope (decoded, explained, percent-encoded) and the
    authorization URL with placeholders for the values generated at connect time; or the error."""
    try:
        scope = scope_from_choices(**choices)
    except (ScopeError, ValueError) as exc:
        return {"error": getattr(exc, "message", str(exc)), "scope": "", "scope_encoded": "", "url": "",
                "explained": [], "parsed": None}
    cfg = client_config(eff, timeout)
    url = gbc.authorization_url(replace(cfg, pkce=False), scope, STATE_PLACEHOLDER, None)
    url = url.replace(quote(STATE_PLACEHOLDER, safe=""), STATE_PLACEHOLDER)
    if cfg.pkce:
        url += "&code_challenge={code_challenge}&code_challenge_method=S256"
    parsed = parse_scope(scope)
    explained = [f"FB {fb}: {describe_function_block(fb)}" for fb in parsed.function_blocks]
    explained += [item.describe() for item in parsed.additional]
    return {"scope": scope, "scope_encoded": quote(scope, safe=""), "parsed": parsed, "url": url,
            "explained": explained, "error": None}


def start_run(s: Session, visitor_id: str, eff: dict, vault: Vault, scope: str,
              lookup: tuple[str, str] | None, timeout: float) -> tuple[Run, str]:
    """A new pending run with a fresh single-use state (stored hashed) and PKCE verifier."""
    state = gbc.new_state()
    verifier = gbc.new_code_verifier() if eff["pkce"] else None
    cfg = client_config(eff, timeout)
    url = gbc.authorization_url(cfg, scope, state, verifier)
    run = Run(
        id=new_uid(), visitor_id=visitor_id, status="pending", utility=eff["utility"],
        client_id=eff["client_id"], authorize_url=eff["authorize_url"], token_url=eff["token_url"],
        redirect_uri=eff["redirect_uri"], token_auth_method=eff["token_auth_method"],
        client_secret_enc=vault.encrypt(eff["client_secret"]),
        lookup_type=lookup[0] if lookup else None, lookup_value=lookup[1] if lookup else None,
        requested_scope=scope, state_hash=digest(state), code_verifier_enc=vault.encrypt(verifier),
        authorization_url=url.replace(state, "{state}"),
        issuer=expected_issuer(eff), require_iss=bool(eff.get("require_iss")),
    )
    s.add(run)
    return run, url


def take_run_for_state(s: Session, visitor_id: str, state: str | None) -> Run | None:
    """The pending run this state belongs to, for this visitor only; the state is used up."""
    if not state:
        return None
    run = s.query(Run).filter_by(state_hash=digest(state)).one_or_none()
    if run is None or run.visitor_id != visitor_id or run.status != "pending":
        return None
    run.state_hash = None   # single use
    return run


# ---- mix-up protection (RFC 9700 §4.4, RFC 9207) ------------------------------------------------
# Several custodians may be in use at once (each visitor can point the site at another one). A
# callback is only used when it comes from the custodian its run was started at: its "iss" (when
# sent, or when required) names that custodian's issuer, and it arrived on the run's redirect_uri
# path (one redirect URI per custodian tells them apart without "iss").

def expected_issuer(eff: dict) -> str:
    """The issuer a run's callback must name: the ``issuer`` setting, else the authorize URL's
    origin (scheme, host and a non-default port)."""
    configured = str(eff.get("issuer") or "").strip()
    if configured:
        return configured
    return normalized_origin(str(eff.get("authorize_url") or ""))


ISS_RESULTS = {
    "match": "iss matched the expected issuer",
    "not_sent": "no iss sent (not required)",
    "mismatch": "iss names another issuer: refused",
    "missing": "no iss sent, but required: refused",
    "wrong_path": "arrived on another redirect path: refused",
}
ISS_ERRORS = {"mismatch": "issuer_mismatch", "missing": "issuer_missing", "wrong_path": "wrong_redirect_path"}


def _shown(value: str, limit: int = 200) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def check_callback(run: Run, iss_values: list[str], path: str) -> dict:
    """Whether a callback may be used for ``run``: ``iss_values`` are the callback's ``iss``
    parameters (normally none or one), ``path`` the path it arrived on. Returns the result
    (``ok``, ``result`` (a key of :data:`ISS_RESULTS`), the issuers, a message)."""
    expected = run.issuer or ""
    received = iss_values[0] if len(iss_values) == 1 else None
    out = {"expected_issuer": expected, "received_issuer": received, "required": bool(run.require_iss)}
    if len(iss_values) > 1:
        out["received_issuer"] = ", ".join(_shown(v, 100) for v in iss_values)
        result = "mismatch"
        message = (f"The response carries iss {len(iss_values)} times ({out['received_issuer']}); a custodian "
                   f"sends it once. This run was started at {expected!r}.")
    elif received is not None and received != expected:
        result = "mismatch"
        message = (f"The response says it was issued by {_shown(received)!r}, but this run was started at "
                   f"{expected!r}. Another custodian answered (a mix-up, RFC 9700 §4.4).")
    elif received is None and run.require_iss:
        result = "missing"
        message = (f"The response has no iss parameter, and this run requires one (require_iss): without it the "
                   f"site cannot tell that {expected!r} answered.")
    else:
        expected_path = unquote(urlsplit(run.redirect_uri or "").path or "/")
        if path != expected_path:
            result = "wrong_path"
            out.update(expected_path=expected_path, received_path=_shown(path))
            message = (f"The response arrived at {_shown(path)!r}, but this run's redirect_uri is {expected_path!r}. "
                       "With one redirect URI per custodian, that means another custodian answered.")
        else:
            result = "match" if received is not None else "not_sent"
            message = ISS_RESULTS[result].capitalize() + "."
    ok = result in ("match", "not_sent")
    if not ok:
        message += " The code was not sent anywhere."
    return {"ok": ok, "result": result, "summary": ISS_RESULTS[result], "message": message, **out}


def refuse_callback(run: Run, params: dict, check: dict, url: str, rec: Recorder | None = None) -> None:
    """A callback :func:`check_callback` refused: recorded (the code masked), the run failed with
    the reason, and the code verifier dropped, so the code can never be exchanged."""
    run.callback = _masked_params(params)
    run.iss_check = check
    run.code_verifier_enc = None
    run.status = "error"
    code = ISS_ERRORS[check["result"]]
    if rec is not None:
        rec.learn(params.get("code"), params.get("state"))
        rec.note("callback", "Callback from the utility (browser redirect), refused", method="GET", url=url,
                 params=params, iss_check=check, error={"kind": code, "message": check["message"]})
    run.error = {"error": code, "step": "callback", "message": check["message"], "exchange": _seq(rec),
                 "expected_issuer": check["expected_issuer"], "received_issuer": check["received_issuer"]}


def _masked_params(params: dict) -> dict:
    return {k: (mask(v) if k in ("code", "state") else v) for k, v in params.items()}


def note_authorize(rec: Recorder, url: str) -> None:
    """Record the redirect to the custodian: the authorization URL and its parameters decoded
    (the state masked; the PKCE challenge is no secret)."""
    query = urlsplit(url).query
    rec.note("authorize", "Authorization request (browser redirect to the utility)", method="GET", url=url,
             params=dict(parse_qsl(query, keep_blank_values=True)))


def _callback_url(run: Run, params: dict) -> str:
    return run.redirect_uri + ("&" if "?" in run.redirect_uri else "?") + urlencode(params)


def finish_run(s: Session, run: Run, params: dict, vault: Vault, timeout: float,
               rec: Recorder | None = None) -> None:
    """Handle the callback: an error, or the code -> token -> Authorization -> usage points.
    With ``rec`` every step is recorded (the callback as a note, then each HTTP call)."""
    run.callback = _masked_params(params)
    http = None
    if rec is not None:
        rec.learn(params.get("code"), params.get("state"))
        rec.note("callback", "Callback from the utility (browser redirect)", method="GET",
                 url=_callback_url(run, params), params=params, iss_check=run.iss_check)
        http = rec.session()
    if params.get("error"):
        code = params["error"]
        run.status = "declined" if code == "access_denied" else "error"
        run.error = _masked({"error": code, "error_description": params.get("error_description"),
                             "message": gbc.explain(code), "step": "authorize", "exchange": _seq(rec)}, rec)
        return
    if not params.get("code"):
        run.status = "error"
        run.error = {"error": "invalid_request", "step": "callback", "exchange": _seq(rec),
                     "message": "The callback carried neither a code nor an error."}
        return
    cfg = gbc.ClientConfig(
        client_id=run.client_id, client_secret=vault.decrypt(run.client_secret_enc) or "",
        authorize_url=run.authorize_url, token_url=run.token_url, redirect_uri=run.redirect_uri,
        token_auth_method=run.token_auth_method, pkce=run.code_verifier_enc is not None, timeout=timeout)
    verifier = vault.decrypt(run.code_verifier_enc)
    run.code_verifier_enc = None
    try:
        token = gbc.exchange_code(cfg, params["code"], verifier, http=http)
        run.token_enc = vault.encrypt(json.dumps(token))
        run.token_summary = token_summary(token)
        run.granted_scope = token.get("scope")
        fetched = gbc.fetch_authorization_and_meters(token, timeout=timeout, http=http)
    except gbc.CustodianError as exc:
        run.status = "error"
        run.error = _masked({**exc.as_dict(), "exchange": _seq(rec)}, rec)
        return
    except gbc.NotReady as exc:
        run.status = "authorized"
        _not_ready(run, exc, rec)
        return
    run.status = "authorized"
    _fetched(run, fetched, rec)


def _seq(rec: Recorder | None) -> int | None:
    """The exchange that caused an error (the last one recorded), for the run page's link."""
    return rec.last_seq if rec is not None else None


#: Meters can appear minutes after the authorization (UtilityAPI adds them as it finds them,
#: EDDIE #1459): an empty UsagePoint list is asked again with back-off for this long.
NO_METERS_PATIENCE = 300
NO_METERS_STEPS = (5, 10, 20, 30, 60)


def _masked(error: dict, rec: Recorder | None) -> dict:
    """An error to store: a custodian's description may echo a secret back, so it is masked
    as the exchanges are."""
    return rec.masker.json_value(error) if rec is not None else error


def _not_ready(run: Run, exc: gbc.NotReady, rec: Recorder | None = None) -> None:
    wait = exc.retry_after if exc.retry_after is not None else 5
    run.authorization = exc.authorization or run.authorization
    run.error = {"error": "not_ready", "step": "meters", "retry_after": wait,
                 "retry_at": int(time.time()) + wait, "exchange": _seq(rec),
                 "message": f"The utility is still collecting the data (it answered 202 Accepted, "
                            f"Retry-After: {wait} s)."}


def _fetched(run: Run, fetched: gbc.Fetched, rec: Recorder | None = None) -> None:
    run.authorization = fetched.authorization
    run.meters = fetched.meters
    run.meter_count = len(fetched.meters)
    if fetched.meters:
        run.error = None
        return
    previous = run.error if run.error and run.error.get("error") == "no_meters_yet" else {}
    attempt = int(previous.get("attempt", 0)) + 1
    since = int(previous.get("since", time.time()))
    if time.time() - since >= NO_METERS_PATIENCE:
        run.error = {"error": "no_meters", "step": "meters", "exchange": _seq(rec),
                     "message": f"The subscription still lists no meters after {NO_METERS_PATIENCE // 60} "
                                "minutes of asking. The customer may have shared none, or the utility did not "
                                "find any: check the authorization's notes in the JSON API."}
        return
    wait = NO_METERS_STEPS[min(attempt, len(NO_METERS_STEPS)) - 1]
    run.error = {"error": "no_meters_yet", "step": "meters", "retry_after": wait, "attempt": attempt,
                 "since": since, "retry_at": int(time.time()) + wait, "exchange": _seq(rec),
                 "message": "The authorization has no meters yet: utilities add them as they find them."}


record_fetched = _fetched   # for the tools ("read again")

WAITING_ERRORS = ("not_ready", "no_meters_yet")


def waiting_for_data(run: Run) -> int | None:
    """Seconds until the custodian said to ask again, for a run whose data is not ready; else None."""
    if run.status != "authorized" or not run.error or run.error.get("error") not in WAITING_ERRORS:
        return None
    return max(0, int(run.error.get("retry_at", 0)) - int(time.time()))


def refetch_if_due(db: Database, run_id: str, vault: Vault, timeout: float,
                   recorder_for: Callable[[Run], Recorder]) -> bool:
    """Ask the custodian again once Retry-After has passed (the run page and its status poll call
    this); True when this call asked.

    No database session is held across the HTTP calls (they may take ``timeout`` each), and of
    several pollers of one run only one asks: it claims the attempt first by moving the retry
    time on with a conditional UPDATE, and applies the answer in a new session afterwards."""
    with db.session() as s:
        run = s.get(Run, run_id)
        if run is None or waiting_for_data(run) != 0 or not run.token_enc:
            return False
        token = json.loads(vault.decrypt(run.token_enc) or "{}")
        if not token.get("access_token"):
            return False
        claimed_error = {**run.error, "retry_at": int(time.time()) + int(timeout) + 5}
        claimed = (s.query(Run).filter(Run.id == run_id, Run.updated == run.updated)
                   .update({"error": claimed_error, "updated": utcnow()}, synchronize_session=False))
        if claimed != 1:
            return False
        rec = recorder_for(run)
    try:
        outcome: object = gbc.fetch_authorization_and_meters(token, timeout=timeout, http=rec.session())
    except (gbc.NotReady, gbc.CustodianError) as exc:
        outcome = exc
    with db.session() as s:
        run = s.get(Run, run_id)
        run.error = claimed_error          # what _fetched's back-off reads
        apply_fetch(run, outcome, rec)
    return True


def apply_fetch(run: Run, outcome: gbc.Fetched | gbc.NotReady | gbc.CustodianError,
                rec: Recorder | None = None) -> None:
    """A read of the Authorization and the meters, applied to the run (the run is always kept):
    the data, "still collecting" (202), or the explained error. Also how a run that failed
    after its token exchange is tried again (tools.retry)."""
    if isinstance(outcome, gbc.NotReady):
        run.status = "authorized"
        _not_ready(run, outcome, rec)
    elif isinstance(outcome, gbc.CustodianError):
        run.status = "error"
        run.error = _masked({**outcome.as_dict(), "exchange": _seq(rec)}, rec)
    else:
        run.status = "authorized"
        _fetched(run, outcome, rec)


def status_json(run: Run) -> dict:
    """What the run page's poller needs: is it still waiting, for how long, and the message."""
    wait = waiting_for_data(run)
    return {"id": run.id, "status": run.status, "waiting": wait is not None, "retry_in": wait,
            "message": (run.error or {}).get("message"), "meter_count": run.meter_count,
            "updated": run.updated.replace(tzinfo=UTC).isoformat() if run.updated else None}


def token_summary(token: dict) -> dict:
    """What of a token response may be shown: secrets masked to their last 4 characters."""
    out = {}
    for key, value in token.items():
        if key in ("access_token", "refresh_token", "id_token"):
            out[key] = mask(value)
        else:
            out[key] = value
    return out


def run_json(run: Run, exchanges: list[dict] | None = None) -> dict:
    """The run's data with stable keys (``requested_scope``, ``granted_scope``,
    ``authorization``, ``meters``, ``error``, ``tools``, ``exchanges``): masked throughout."""
    explanation = explain_error(run.error) if run.error else None
    return {
        "id": run.id,
        "status": run.status,
        "created": run.created.replace(tzinfo=UTC).isoformat(),
        "utility": run.utility,
        "client_id": run.client_id,
        "redirect_uri": run.redirect_uri,
        "issuer": run.issuer,
        "iss_check": run.iss_check,
        "lookup": {"type": run.lookup_type, "value": run.lookup_value} if run.lookup_type else None,
        "requested_scope": run.requested_scope,
        "granted_scope": run.granted_scope,
        "token": run.token_summary,
        "authorization": run.authorization,
        "meters": run.meters or [],
        "error": run.error,
        "explanation": explanation.as_dict() if explanation else None,
        "tools": run.tools or {},
        "exchanges": exchanges or [],
    }


def scope_view(text: str | None) -> dict | None:
    """A parsed scope for display, or the parse error."""
    if not text:
        return None
    try:
        scope = parse_scope(text)
    except ScopeError as exc:
        return {"raw": text, "error": exc.message}
    return {"raw": text, "scope": scope}


def save_visitor_settings(s: Session, visitor_id: str, values: dict, secret: str | None, vault: Vault) -> None:
    row = s.get(VisitorSettings, visitor_id) or VisitorSettings(visitor_id=visitor_id, values={})
    # secrets never go into the plain values: the client secret is encrypted below, the others
    # in the integrator's own table
    row.values = {k: v for k, v in values.items() if k in VISITOR_KEYS and k not in SECRET_VISITOR_KEYS}
    if secret:
        row.client_secret_enc = vault.encrypt(secret)
    row.updated = utcnow()
    s.merge(row)


def _chunks(values: list, size: int = 500) -> Iterable[list]:
    for i in range(0, len(values), size):
        yield values[i:i + size]


def authorization_uid(run: Run) -> str | None:
    """The uid of the authorization a run obtained, if any."""
    uid = run.authorization.get("uid") if isinstance(run.authorization, dict) else None
    return str(uid) if uid else None


def delete_visitor_runs(s: Session, visitor_id: str) -> int:
    """Delete ``visitor_id``'s runs, their exchanges and JSON API data, and the webhook events
    this visitor received about those runs' authorizations. Nothing of any other visitor, and
    no settings. Returns how many runs went."""
    runs = s.query(Run.id, Run.authorization).filter(Run.visitor_id == visitor_id).all()
    ids = [r.id for r in runs]
    uids = sorted({uid for r in runs if (uid := authorization_uid(r))})
    for chunk in _chunks(ids):
        s.query(Exchange).filter(Exchange.run_id.in_(chunk)).delete(synchronize_session=False)
        s.query(IntegratorData).filter(IntegratorData.run_id.in_(chunk)).delete(synchronize_session=False)
        s.query(Run).filter(Run.visitor_id == visitor_id, Run.id.in_(chunk)).delete(synchronize_session=False)
    for chunk in _chunks(uids):
        s.query(WebhookEvent).filter(WebhookEvent.visitor_id == visitor_id,
                                     WebhookEvent.authorization_uid.in_(chunk)).delete(synchronize_session=False)
    return len(ids)

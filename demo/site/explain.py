"""Errors explained for people: every code the flow can meet, what it means and what to check.

One table for everything the demo site shows: OAuth 2.0 error codes (RFC 6749 §4.1.2.1 for the
redirect, §5.2 for the token endpoint, RFC 6750 §3.1 for bearer challenges), UtilityAPI's JSON
API error types and authorization/meter note types (reference §5.1, §5.3, §5.4), the redirect
error vocabulary of UtilityAPI's forms (peers.md), HTTP statuses (reference §4.2), and the
failures of the transport itself (timeouts, refused connections, bodies that are not what
was expected). No Flask: the run page, the run JSON and the tools all ask here.
"""
from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any


@dataclass(frozen=True)
class Explanation:
    code: str                  # the code as the custodian (or we) named it
    title: str                 # a few words
    message: str               # what happened, for a person
    hint: str                  # what to check
    detail: str | None = None  # the custodian's own words (error_description), when it gave some
    status: int | None = None
    retry_after: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _e(code: str, title: str, message: str, hint: str) -> Explanation:
    return Explanation(code, title, message, hint)


#: RFC 6749 §4.1.2.1 (authorization redirect) and §5.2 (token endpoint), RFC 6750 §3.1 (resources).
OAUTH: dict[str, Explanation] = {e.code: e for e in (
    _e("invalid_request", "Malformed request",
       "The request was missing a parameter, repeated one, or had a malformed one.",
       "Compare the request with the spec: response_type=code, client_id, redirect_uri, scope and state on the "
       "authorize URL; grant_type, code and redirect_uri on the token request; percent-encoding of the scope."),
    _e("unauthorized_client", "Client not allowed",
       "This client is not allowed to use this grant type or response type.",
       "Check the registration at the utility: the grant types enabled for this client_id, and that you use the "
       "client_id of this utility (registrations are per utility)."),
    _e("issuer_mismatch", "Answered by another custodian",
       "The site refused this response before any token request: its iss names another custodian than the "
       "one this run was started at (a mix-up, RFC 9700 §4.4). The code was not sent anywhere.",
       "Check which custodian this browser was sent to. If the custodian's issuer is not the authorize URL's "
       "origin, enter it as Issuer on Settings."),
    _e("issuer_missing", "No issuer in the response",
       "The site refused this response before any token request: it has no iss parameter, and this run "
       "requires one. The code was not sent anywhere.",
       "Untick Refuse a response without iss on Settings for a custodian that doesn't send iss (UtilityAPI is "
       "not known to send it)."),
    _e("wrong_redirect_path", "Arrived on another redirect path",
       "The site refused this response before any token request: it arrived on another path than this run's "
       "redirect_uri, which, with one redirect URI per custodian, means another custodian answered.",
       "Check the redirect URI registered at each custodian and the one on Settings: they must match byte "
       "for byte."),
    _e("access_denied", "Declined",
       "The customer declined to share their data (or the utility refused the request).",
       "Nothing to fix on your side if the customer chose Decline; otherwise check the requested scope and "
       "that the customer's account is eligible."),
    _e("unsupported_response_type", "Response type not supported",
       "The custodian does not support this response_type for this client.",
       "Send response_type=code (the only one Green Button Connect uses)."),
    _e("invalid_scope", "Scope not accepted",
       "The scope was not accepted: unknown function blocks, a malformed value, or more than the registration "
       "allows.",
       "Check FB=… against the function blocks of your registration, the syntax (key=value pairs separated by ';', "
       "FB numbers by '_'), and that the scope is percent-encoded as one parameter."),
    _e("server_error", "Custodian error",
       "The custodian hit an unexpected error while handling the request.",
       "Try again later; if it persists, send the utility the time and the request shown here."),
    _e("temporarily_unavailable", "Temporarily unavailable",
       "The custodian is overloaded or under maintenance and could not handle the request.",
       "Try again in a few minutes."),
    _e("invalid_client", "Client authentication failed",
       "The custodian did not accept the client credentials.",
       "Check client_id and client_secret (no stray spaces; a new secret after rotation), the token endpoint "
       "authentication method (HTTP Basic vs form fields) and that you use this utility's token URL."),
    _e("invalid_grant", "Grant not accepted",
       "The authorization code or refresh token was not accepted: already used, expired, revoked, issued to "
       "another client, or the redirect_uri / PKCE code_verifier did not match.",
       "Exchange a code once and at once; send the same redirect_uri as on the authorize URL and the verifier of "
       "that flow; after a refresh, use the new refresh token (rotation) — replaying an old one can end the "
       "authorization's tokens."),
    _e("unsupported_grant_type", "Grant type not supported",
       "The token endpoint does not support this grant_type.",
       "Use authorization_code, refresh_token or client_credentials."),
    _e("invalid_token", "Token not accepted",
       "The access token is missing, unknown, expired or revoked.",
       "Refresh the access token (they last an hour) or check it was not revoked; send it as "
       "'Authorization: Bearer <token>'."),
    _e("insufficient_scope", "Not covered by this token",
       "The token is valid but does not reach this resource: the wrong class of token, or the granted scope "
       "does not include the function block the resource needs.",
       "Use an access_token (authorization code) for Subscription/Batch data, a client_access_token "
       "(client_credentials) for the Authorization list and Bulk; check the granted scope's function blocks."),
    _e("mismatching_state", "State mismatch",
       "The state returned does not match a flow started in this browser.",
       "Start again from the home page; a callback is only accepted once, in the browser that started it."),
    _e("incomplete_registration", "Registration incomplete",
       "The third party's registration with the utility is not complete, so the utility will not authorize it.",
       "Finish the registration (company details, redirect URI, function blocks) in the utility's third-party "
       "dashboard."),
)}

#: UtilityAPI: JSON API error types, authorization and meter note types, form redirect errors.
UTILITYAPI: dict[str, Explanation] = {e.code: e for e in (
    _e("required_param_missing", "Parameter missing",
       "A required parameter of the JSON API call was missing.",
       "Read error_description for the parameter's name, and the endpoint's documentation."),
    _e("invalid_param", "Invalid parameter",
       "A parameter of the JSON API call had a value the API does not accept.",
       "Check the value's type and format (uids are strings, lists are comma-separated, timestamps ISO 8601)."),
    _e("expired_or_revoked", "Authorization expired or revoked",
       "Every meter named belongs to an authorization that has expired or was revoked.",
       "Ask the customer for a new authorization; revoked and expired authorizations' data is deleted."),
    _e("not_found", "Not found",
       "Nothing matches: the uid is wrong, it belongs to another account, or the filters match nothing.",
       "Check the uid and which API token you use; 404 also hides what this token may not see."),
    _e("access_valid", "Access valid",
       "The customer's account was verified; nothing more is needed from them.", "Nothing to do."),
    _e("access_invalid", "Account not accepted",
       "The utility rejected the customer's account details (for test-submits: the badlogin scenario).",
       "The customer has to authorize again with the right account; nothing to fix in your integration."),
    _e("access_locked", "Account locked",
       "The customer's utility account is locked, so no data can be collected.",
       "The customer has to unlock their account with the utility, then authorize again."),
    _e("access_unsupported", "Account not supported",
       "This kind of utility account cannot be collected (e.g. an unsupported account type).",
       "Nothing to fix in the integration; tell the customer their account type is not supported."),
    _e("access_code_needed", "Code needed",
       "The utility needs a multi-factor code from the customer before data can be collected.",
       "The customer has to enter the code; check the authorization's notes for where."),
    _e("utility_down", "Utility unavailable",
       "The utility's systems were down, so the request could not be handled.",
       "Try again later; the authorization usually retries by itself (look for a 'retrying' note)."),
    _e("website_down", "Utility website down",
       "The utility's website was down while collecting data.",
       "Wait: collection retries by itself. Check the authorization's status_message and notes."),
    _e("utility_error", "Utility error",
       "The utility returned an error while the data was being collected.",
       "Try again later; if it persists, tell the utility (the authorization uid helps)."),
    _e("retrying", "Retrying", "Collection failed for now and will be retried (see the note's eta).", "Wait."),
    _e("waiting", "Waiting", "Collection is queued (see the note's eta).", "Wait, or subscribe to webhooks."),
    _e("meters_full", "All meters found", "The utility found every meter of the authorization.", "Nothing to do."),
    _e("bills_full", "All bills found", "Every bill of the meter was collected.", "Nothing to do."),
    _e("bills_errored", "Bills failed", "Collecting the meter's bills failed.",
       "Try historical collection again later."),
    _e("bills_strange", "Unusual bill", "A bill looked unusual (see bill_note_type).", "Review that bill."),
    _e("intervals_empty", "No intervals", "The utility has no interval data for this meter.",
       "Normal for meters without smart-meter data; bills may still be there."),
    _e("async_pending", "Not ready yet", "The data is still being prepared (202 Accepted).",
       "Repeat the same request after Retry-After seconds."),
)}

#: Failures of the exchange itself, named by the site (``CustodianError.kind`` and recorder errors).
TRANSPORT: dict[str, Explanation] = {e.code: e for e in (
    _e("timeout", "No answer in time",
       "The custodian did not answer within the time limit.",
       "Is the custodian up and reachable from this server? Large batches take long: ask for a smaller range "
       "(published-min/max) or raise the timeout (GBC_HTTP_TIMEOUT)."),
    _e("connection", "Could not connect",
       "The connection to the custodian failed (refused, DNS, TLS).",
       "Check the URL in the settings (scheme, host, port), that the custodian runs, and proxies/firewalls."),
    _e("read_error", "Answer cut off", "The connection broke while the body was being read.",
       "Try again; if it repeats with big feeds, ask for a smaller date range."),
    _e("transport", "HTTP failure", "The request could not be sent or its answer read.", "See the message."),
    _e("truncated", "Answer cut short",
       "The connection closed before the whole answer arrived: the body is shorter than its Content-Length.",
       "Try again; if it repeats, something between the site and the custodian (a proxy, a crashing worker) "
       "breaks the answers off."),
    _e("html", "HTML instead of data",
       "The custodian answered with a web page (HTML) where JSON or Atom XML was expected: usually an error or "
       "maintenance page of a proxy or load balancer, a login page, or the wrong URL.",
       "Check the URL (token endpoint, resource URI, API base) and read the page's text below; try again later "
       "if it is a maintenance page."),
    _e("not_json", "Not JSON", "The answer was expected to be JSON but is not (an HTML error page, a proxy's "
       "answer, or the wrong URL).", "Check the URL (token endpoint, API base) and look at the body below."),
    _e("not_xml", "Not XML", "The answer was expected to be Atom XML but is not.",
       "Check the resource URL; an HTML page often means a login page, a proxy or the wrong host."),
    _e("bad_xml", "Unreadable XML", "The XML could not be read as ESPI (malformed, unexpected elements, or a "
       "DOCTYPE, which is refused for safety).", "Look at the body below; validate it against espi.xsd."),
    _e("too_large", "Too large", "The answer was bigger than the site accepts.",
       "Ask for less: a single UsagePoint, or a published-min/max range."),
    _e("no_resource", "No resourceURI", "The token response names no subscription, so there is nothing to read.",
       "The token response should carry resourceURI (and authorizationURI); check the custodian."),
    _e("http", "HTTP error", "The custodian answered with an error status.", "See the status and body below."),
    _e("not_ready", "Collecting data",
       "The utility is still collecting the data (202 Accepted with Retry-After).",
       "Nothing to fix: ask again after Retry-After seconds (this page does it by itself)."),
    _e("no_refresh_token", "No refresh token", "This run has no refresh token to use.",
       "Only an authorization-code run with a token response that included refresh_token can be refreshed."),
    _e("no_token", "No token", "This run has no access token yet.", "Finish the authorization first."),
)}

#: HTTP statuses (reference §4.2 and §5.1).
HTTP: dict[int, Explanation] = {e.status: e for e in (
    Explanation("http_202", "Accepted: not ready", "The custodian accepted the request but the data is not ready "
                "yet (202, usually with Retry-After).", "Repeat the same request after Retry-After seconds.",
                status=202),
    Explanation("http_400", "Bad request", "The custodian refused the request's parameters.",
                "Read error / error_description in the body.", status=400),
    Explanation("http_401", "Not authenticated", "The token (or client credentials) is missing, invalid, expired "
                "or revoked.", "Refresh the access token; for the token endpoint, check client_id/client_secret.",
                status=401),
    Explanation("http_402", "Payment required", "The UtilityAPI account's plan does not cover this request.",
                "Check the plan or the number of meters activated.", status=402),
    Explanation("http_403", "Forbidden", "The token is valid but of the wrong class for this endpoint, or the "
                "granted scope does not cover the resource.",
                "access_token for Subscription/Batch data; client_access_token for Authorization list and Bulk; "
                "compare the resource with the granted function blocks.", status=403),
    Explanation("http_404", "Not found", "No such resource for this token: a wrong id, another client's or "
                "authorization's resource, or an authorization that is no longer active (its data is deleted).",
                "Check the URL (from resourceURI / authorizationURI) and the authorization's status.", status=404),
    Explanation("http_405", "Method not allowed", "The endpoint does not accept this HTTP method.",
                "Check GET vs POST.", status=405),
    Explanation("http_429", "Too many requests", "The custodian rate-limited the client.",
                "Wait for Retry-After seconds, then slow down.", status=429),
    Explanation("http_500", "Server error", "The custodian failed while handling the request.",
                "Try again later; report the time and request if it persists.", status=500),
    Explanation("http_502", "Bad gateway", "A proxy in front of the custodian got no valid answer.",
                "Try again later.", status=502),
    Explanation("http_503", "Unavailable", "The custodian is down for maintenance or overloaded.",
                "Try again later (honour Retry-After if given).", status=503),
    Explanation("http_504", "Timed out upstream", "The custodian took too long to build the answer.",
                "Ask for less data (a date range, one UsagePoint) or try again later.", status=504),
)}


def lookup(code: str | None) -> Explanation | None:
    """The explanation of an error code from any vocabulary (OAuth first, as it is the most common)."""
    if not code:
        return None
    return OAUTH.get(code) or UTILITYAPI.get(code) or TRANSPORT.get(code)


def explain(code: str | None) -> str:
    """One sentence for ``code`` (kept for callers that want only the message)."""
    found = lookup(code)
    return found.message if found else f"The custodian reported the error {code!r}."


def for_status(status: int | None) -> Explanation | None:
    if status is None:
        return None
    if status in HTTP:
        return HTTP[status]
    if 500 <= status < 600:
        return Explanation(f"http_{status}", "Server error", f"The custodian failed (HTTP {status}).",
                           "Try again later.", status=status)
    if 400 <= status < 500:
        return Explanation(f"http_{status}", "Client error", f"The custodian refused the request (HTTP {status}).",
                           "Read the body for details.", status=status)
    return None


def note(note_type: str | None) -> Explanation | None:
    """A UtilityAPI authorization or meter note type (``notes[].type``)."""
    return UTILITYAPI.get(note_type or "")


_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


def _header(headers: Any, name: str) -> str | None:
    for k, v in headers or []:
        if str(k).lower() == name.lower():
            return str(v)
    return None


def _retry_after(headers: Any) -> int | None:
    return parse_retry_after(_header(headers, "Retry-After"))


def parse_retry_after(value: str | None, now: float | None = None) -> int | None:
    """``Retry-After`` (RFC 9110 §10.2.3) as seconds from ``now``: delay-seconds, or an HTTP-date
    (a date in the past is 0). None when absent or unreadable."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(int(value), 10**9)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0, int(when.timestamp() - (time.time() if now is None else now) + 0.5))


def retry_phrase(seconds: int | None, now: float | None = None) -> str:
    """``It asks to wait 30 s before trying again (until 04:31:02 UTC).`` or ``""``."""
    if seconds is None:
        return ""
    at = datetime.fromtimestamp((time.time() if now is None else now) + seconds, UTC)
    minutes, rest = divmod(seconds, 60)
    wait = f"{seconds} s" if seconds < 120 else f"{minutes} min" + (f" {rest} s" if rest else "")
    return f"It asks to wait {wait} before trying again (Retry-After), that is until {at:%Y-%m-%d %H:%M:%S} UTC."


_HTML_START = re.compile(rb"^(?:\xef\xbb\xbf)?\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html|head|body)\b", re.I | re.S)


def looks_like_html(content_type: str | None, body: bytes | str | None) -> bool:
    """Is this answer a web page? By its Content-Type or by how its body starts."""
    if "html" in (content_type or "").lower():
        return True
    head = body[:1024] if body else b""
    if isinstance(head, str):
        head = head.encode("utf-8", "replace")
    return bool(_HTML_START.match(head))


_SCRIPT = re.compile(r"<(script|style)\b.*?(?:</\1\s*>|$)", re.I | re.S)
_COMMENT = re.compile(r"<!--.*?(?:-->|$)", re.S)
_INLINE_TAG = re.compile(r"</?(?:a|abbr|b|code|em|i|small|span|strong|sub|sup|u)\b[^>]*>", re.I)
_TAG = re.compile(r"<[^>]*>?")


def text_excerpt(body: bytes | str | None, limit: int = 200) -> str:
    """The readable text at the start of a body (tags, scripts and comments dropped, entities
    decoded, spaces collapsed), at most ``limit`` characters: for saying what an HTML page or
    other unexpected answer says. Plain text: templates escape it like any other."""
    if not body:
        return ""
    text = body[:16384].decode("utf-8", "replace") if isinstance(body, bytes) else body[:16384]
    text = _TAG.sub(" ", _INLINE_TAG.sub("", _COMMENT.sub(" ", _SCRIPT.sub(" ", text))))
    text = " ".join(html.unescape(text).split())
    text = "".join(c for c in text if c.isprintable())
    return text if len(text) <= limit else text[:limit].rstrip() + "…"


def error_from_body(body: str | None) -> tuple[str | None, str | None]:
    """``(error, error_description)`` from an OAuth / UtilityAPI JSON error body, if it is one."""
    if not body or body.lstrip()[:1] != "{":
        return None, None
    try:
        data = json.loads(body)
    except ValueError:
        return None, None
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        return None, None
    desc = data.get("error_description")
    return data["error"], desc if isinstance(desc, str) else None


def combine(code: str | None, status: int | None = None, detail: str | None = None,
            retry_after: int | None = None) -> Explanation | None:
    """The explanation for an error code and/or HTTP status: the code's words, with the status's
    hint added when the code is unknown."""
    by_code, by_status = lookup(code), for_status(status)
    if code == "http" and by_status is not None:
        by_code = None          # a bare HTTP error: the status says more than "HTTP error"
        code = by_status.code
    base = by_code or by_status
    if base is None:
        if not code:
            return None
        base = Explanation(code, code.replace("_", " ").capitalize(), f"The custodian reported the error {code!r}.",
                           "Read error_description; the custodian's documentation names its codes.")
    if by_code is None and code and by_status is not None and code != by_status.code:
        base = Explanation(code, by_status.title, f"{by_status.message} (error {code!r})", by_status.hint)
    return Explanation(base.code, base.title, base.message, base.hint, detail=detail or base.detail,
                       status=status, retry_after=retry_after)


def explain_exchange(ex: Mapping[str, Any]) -> Explanation | None:
    """Why a recorded exchange (see :func:`demo.site.exchanges.exchange_dict`) did not go as hoped,
    or None when it went fine."""
    error = ex.get("error") or {}
    if isinstance(error, Mapping) and error.get("kind"):
        found = combine(error["kind"], ex.get("status"), detail=error.get("message"))
        if found is not None:
            return found
    fields = ex.get("fields") or {}
    params = fields.get("params") if isinstance(fields, Mapping) else None
    if isinstance(params, Mapping) and params.get("error"):
        return combine(str(params["error"]), detail=params.get("error_description"))
    status = ex.get("status")
    if status is None or ex.get("kind") in ("authorize", "callback"):
        return None
    headers = ex.get("response_headers") or []
    body = ex.get("response_body") or ""
    if status == 202:
        retry = _retry_after(headers)
        found = combine("not_ready", 202, retry_after=retry)
        return found
    if status >= 400:
        code, desc = error_from_body(body)
        if code is None and looks_like_html(_header(headers, "Content-Type"), body):
            desc = text_excerpt(body) or None
        challenge = _header(headers, "WWW-Authenticate") or ""
        params_ = dict(_CHALLENGE.findall(challenge))
        if code is None and params_.get("error"):
            code, desc = params_["error"], params_.get("error_description")
        if code is None and status in (401, 403) and ex.get("kind") != "token":
            code = "invalid_token" if status == 401 else "insufficient_scope"
        return combine(code, status, detail=desc, retry_after=_retry_after(headers))
    if 200 <= status < 300 and body and not ex.get("response_truncated"):
        ctype = (_header(headers, "Content-Type") or "").lower()
        start = body.lstrip()[:1]
        if ex.get("kind") in ("token", "json", "espi") and looks_like_html(ctype, body):
            page = TRANSPORT["html"]
            wanted = "XML" if ex.get("kind") == "espi" else "JSON"
            return Explanation(f"not_{wanted.lower()}", f"HTML instead of {wanted}", page.message, page.hint,
                               detail=text_excerpt(body) or None, status=status)
        if ex.get("kind") in ("token", "json") and start not in ("{", "[") and "csv" not in ctype:
            return combine("not_json", status)
        if ex.get("kind") == "espi" and start != "<":
            return combine("not_xml", status)
    return None


def explain_error(error: Mapping[str, Any] | None) -> Explanation | None:
    """For a run's stored ``error`` dict (``{"error", "error_description", "status", …}``)."""
    if not error:
        return None
    return combine(error.get("error"), error.get("status"), detail=error.get("error_description"),
                   retry_after=error.get("retry_after"))

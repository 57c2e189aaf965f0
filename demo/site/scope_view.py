"""The /decode page's logic, free of Flask: read what an integrator pasted (a scope, raw or
percent-encoded, a query string, or a whole authorization or callback URL), decode every part,
validate it and explain it, and locate each problem by character offsets so the page can
highlight the offending text.

Why a separate module: :mod:`demo.scope` owns the scope grammar (parse, explain, compare);
this module owns the OAuth authorization request around it (RFC 6749 §4.1.1, PKCE RFC 7636)
and the redaction of secrets, which only the site needs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, unquote_plus, urlsplit

from ..scope import Explanation, Scope, ScopeError, explain, parse_scope
from ..tokens import mask
from .explain import lookup as explain_code

MAX_INPUT = 8000          # characters; a real authorization URL is well under 2,000
MAX_PARAMS = 100

#: Values that must not travel in shareable links (their names, lower case).
SENSITIVE = frozenset({"code", "state", "access_token", "refresh_token", "id_token", "token", "client_secret",
                       "code_verifier", "password", "api_key", "apikey", "assertion", "client_assertion",
                       "session", "otp", "passcode"})
_SENSITIVE_NAME = re.compile(r"(secret|password|passwd|_token$|verifier|api_?key)", re.I)
#: Secrets that never belong in an authorization URL at all (the customer's browser sees it).
NEVER_IN_URL = frozenset({"client_secret", "access_token", "refresh_token", "code_verifier", "password"})
_PKCE_CHARS = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_S256 = re.compile(r"[A-Za-z0-9\-_]{43}")
_PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
_LOOPBACK = ("127.0.0.1", "localhost", "[::1]", "::1")


class DecodeError(ValueError):
    """Input that cannot be read at all (empty, too long): the page answers 400."""


@dataclass
class ScopeReport:
    """A scope as the parser saw it, its explanation, or its error with offsets into ``text``."""

    text: str
    decoded_from: str | None = None        # "percent-encoding" when the input was encoded
    scope: Scope | None = None
    explanations: list[Explanation] = field(default_factory=list)
    error: str | None = None
    error_start: int = -1
    error_end: int = -1

    @property
    def encoded(self) -> str:
        return quote(self.text, safe="")

    @property
    def canonical(self) -> str | None:
        return self.scope.to_string() if self.scope else None

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.scope.warnings if self.scope else ()

    def segments(self) -> list[tuple[str, str | None]]:
        """``text`` cut around the error: [(text, css class or None)], for highlighting."""
        return segments(self.text, [(self.error_start, self.error_end, "is-error")] if self.error else [])


@dataclass
class ParamReport:
    """One query parameter: decoded, explained and judged (``status`` ok | warning | error | unknown)."""

    name: str
    value: str
    meaning: str
    status: str = "ok"
    note: str = ""
    sensitive: bool = False
    start: int = -1                          # offsets of ``name=value`` in the input
    end: int = -1
    value_start: int = -1
    scope: ScopeReport | None = None

    @property
    def shown(self) -> str:
        """The value as the page shows it: secrets masked to their last 4 characters."""
        return mask(self.value) if self.sensitive else self.value


@dataclass
class Decoded:
    """Everything the page shows for one input."""

    input: str
    kind: str                                # scope | url | query
    purpose: str = ""                        # authorize | callback | "" (unknown)
    base: str | None = None                  # scheme://host/path of a URL
    params: list[ParamReport] = field(default_factory=list)
    scope: ScopeReport | None = None
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not (self.scope and self.scope.error) and \
            not any(p.status == "error" for p in self.params)

    @property
    def sensitive(self) -> list[str]:
        return [p.name for p in self.params if p.sensitive]

    @property
    def share_input(self) -> str:
        """The input with every secret value replaced by ``{name}``: safe for a shareable link."""
        text = self.input
        for p in sorted((p for p in self.params if p.sensitive and p.value_start >= 0),
                        key=lambda p: p.value_start, reverse=True):
            text = text[:p.value_start] + "{" + p.name + "}" + text[p.end:]
        return text

    def segments(self) -> list[tuple[str, str | None]]:
        """The input cut around problem parameters, for highlighting; secret values masked."""
        if self.kind == "scope":
            report = self.scope
            if report and report.error and not report.decoded_from:
                return segments(self.input, [(report.error_start, report.error_end, "is-error")])
            return [(self.input, None)]
        out: list[tuple[str, str | None]] = []
        pos = 0
        for p in sorted((p for p in self.params if p.start >= 0), key=lambda p: p.start):
            if not p.sensitive and p.status == "ok":
                continue
            if p.start > pos:
                out.append((self.input[pos:p.start], None))
            text = self.input[p.start:p.end]
            if p.sensitive:
                text = (self.input[p.start:p.value_start] + p.shown) if p.value_start >= 0 else p.name
            out.append((text, f"is-{p.status}" if p.status != "ok" else "is-secret"))
            pos = p.end
        if pos < len(self.input) or not out:
            out.append((self.input[pos:], None))
        return out


def segments(text: str, spans: list[tuple[int, int, str]]) -> list[tuple[str, str | None]]:
    """Cut ``text`` into plain and marked pieces; an empty span marks the spot with ``""``."""
    out: list[tuple[str, str | None]] = []
    pos = 0
    for start, end, css in sorted(s for s in spans if 0 <= s[0] <= s[1] <= len(text)):
        if start < pos:
            continue                          # overlapping: the first one wins
        if start > pos:
            out.append((text[pos:start], None))
        out.append((text[start:end], css + (" is-empty" if start == end else "")))
        pos = end
    if pos < len(text) or not out:
        out.append((text[pos:], None))
    return out


def decode(raw: str | None, *, client_id: str | None = None, redirect_uri: str | None = None) -> Decoded:
    """Read ``raw`` (see the module doc). ``client_id``/``redirect_uri`` are the visitor's
    settings, to say whether a pasted URL matches them. Raises :class:`DecodeError`."""
    text = (raw or "").strip()
    if not text:
        raise DecodeError("Paste a scope, a query string or a whole authorization URL.")
    if len(text) > MAX_INPUT:
        raise DecodeError(f"That is {len(text):,} characters; the decoder reads at most {MAX_INPUT:,}.")
    if re.match(r"^[a-z][a-z0-9+.\-]*://", text, re.I):
        return _decode_url(text, client_id, redirect_uri)
    if text.startswith("?") or re.search(
            r"(^|&)(scope|response_type|client_id|redirect_uri|state|code|error)=", text, re.I):
        return _decode_query(Decoded(text, "query"), text, 1 if text.startswith("?") else 0, client_id,
                             redirect_uri)
    return Decoded(text, "scope", scope=scope_report(text))


def scope_report(text: str) -> ScopeReport:
    """Parse a scope, raw or percent-encoded (no literal ``=`` but a ``%3D``: decoded once,
    so that value encodings such as ``%40`` inside it survive)."""
    decoded_from = None
    if "=" not in text and re.search("%3d", text, re.I):
        text, decoded_from = unquote(text), "percent-encoding"
    report = ScopeReport(text=text, decoded_from=decoded_from)
    try:
        report.scope = parse_scope(text)
    except ScopeError as exc:
        report.error, report.error_start, report.error_end = exc.message, exc.start, exc.end
        return report
    report.explanations = explain(report.scope)
    return report


# --- URLs and query strings ---------------------------------------------------------------

def _decode_url(text: str, client_id: str | None, redirect_uri: str | None) -> Decoded:
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
    except ValueError as exc:
        raise DecodeError(f"That URL cannot be read: {exc}.") from None
    out = Decoded(text, "url", base=f"{parts.scheme}://{parts.netloc}{parts.path}")
    if parts.scheme not in ("http", "https"):
        out.problems.append(f"The scheme is {parts.scheme}: authorization URLs are https (http only on loopback).")
    elif parts.scheme == "http" and host not in _LOOPBACK:
        out.warnings.append("This URL uses http on a public host: real utilities use https only.")
    if parts.fragment:
        out.warnings.append("The URL has a #fragment: browsers never send it to the server, and tokens in a "
                            "fragment (the implicit flow) are not part of Green Button Connect.")
    if not parts.query:
        out.problems.append("The URL has no query string: an authorization request needs at least "
                            "response_type and client_id.")
        return out
    offset = text.index("?") + 1
    return _decode_query(out, parts.query, offset, client_id, redirect_uri)


def _decode_query(out: Decoded, text: str, offset: int, client_id: str | None,
                  redirect_uri: str | None) -> Decoded:
    query = text[offset:] if out.kind == "query" else text
    query = query.split("#", 1)[0]
    pos = offset
    seen: dict[str, int] = {}
    for piece in query.split("&"):
        start = pos
        pos += len(piece) + 1
        if not piece:
            continue
        if len(out.params) >= MAX_PARAMS:
            out.problems.append(f"More than {MAX_PARAMS} parameters; the rest were not read.")
            break
        raw_name, eq, raw_value = piece.partition("=")
        name, value = unquote_plus(raw_name), unquote_plus(raw_value)
        report = ParamReport(name=name, value=value, meaning="", start=start, end=start + len(piece),
                             value_start=start + len(raw_name) + 1 if eq else -1)
        seen[name] = seen.get(name, 0) + 1
        out.params.append(report)
    names = set(seen)
    out.purpose = "callback" if ({"code", "error"} & names and "response_type" not in names) else "authorize"
    for p in out.params:
        p.sensitive = (p.name.lower() in SENSITIVE or bool(_SENSITIVE_NAME.search(p.name))) \
            and bool(p.value) and not _PLACEHOLDER.fullmatch(p.value)
        _judge(p, out.purpose, client_id, redirect_uri)
        if seen[p.name] > 1:
            p.status = "error"
            p.note = f"{p.name} appears {seen[p.name]} times: servers may take either, or refuse the request. " \
                + p.note
    if out.purpose == "authorize":
        _missing(out, names)
    scope = next((p for p in out.params if p.name == "scope"), None)
    if scope is not None and scope.scope is not None:
        out.scope = scope.scope
    if out.sensitive:
        out.warnings.append(
            "This input carries " + ", ".join(sorted(set(out.sensitive))) + ": single-use or secret values tied "
            "to someone's sign-in. They are masked here, and the share link below replaces them with "
            "{placeholders}. Do not paste live values into links, tickets or chat.")
    return out


def _missing(out: Decoded, names: set[str]) -> None:
    if "response_type" not in names:
        out.problems.append("response_type is missing: Green Button Connect uses response_type=code.")
    if "client_id" not in names:
        out.problems.append("client_id is missing: the utility cannot tell which third party asks.")
    if "redirect_uri" not in names:
        out.warnings.append("No redirect_uri: UtilityAPI then uses your registration's default; the sandbox "
                            "shows the customer their receipt instead of sending them back.")
    if "scope" not in names:
        out.warnings.append("No scope: the consent form starts from the utility's default (FB=4_16_51).")
    if "state" not in names:
        out.warnings.append("No state: send a fresh random state and check it at the callback, or a "
                            "forged callback could attach someone else's data to this session (CSRF).")
    if "code_challenge_method" in names and "code_challenge" not in names:
        out.problems.append("code_challenge_method without a code_challenge: send both, or neither.")
    elif "code_challenge" in names and "code_challenge_method" not in names:
        out.warnings.append("code_challenge without code_challenge_method means plain (RFC 7636 §4.3): "
                            "add code_challenge_method=S256.")
    elif "code_challenge" not in names:
        out.warnings.append("No PKCE code_challenge: recommended for every client (RFC 9700 §2.1.1); "
                            "send code_challenge=BASE64URL(SHA-256(code_verifier))&code_challenge_method=S256.")


def _judge(p: ParamReport, purpose: str, client_id: str | None, redirect_uri: str | None) -> None:
    """Fill in ``meaning``, ``status`` and ``note`` for one parameter."""
    name, value = p.name, p.value
    if name.lower() in NEVER_IN_URL or (p.sensitive and name.lower() not in ("code", "state")):
        p.meaning = "A secret"
        p.status = "error"
        p.note = (f"Never put {name} in a URL: the customer's browser, its history, proxies and server "
                  "logs all see it. It belongs in the back-channel request to the token endpoint.")
        return
    if name == "response_type":
        p.meaning = "Which OAuth flow: code = the authorization code flow"
        if value != "code":
            p.status, p.note = "error", f"Green Button Connect uses response_type=code, not {value!r}."
    elif name == "client_id":
        p.meaning = "Your registration with the utility (UtilityAPI: the utility id, '_' and a code)"
        if not value:
            p.status, p.note = "error", "client_id is empty."
        elif client_id and value != client_id:
            p.status, p.note = "warning", f"Your settings use {client_id}."
        elif client_id:
            p.note = "Matches your settings."
    elif name == "redirect_uri":
        p.meaning = "Where the utility sends the customer back with the code (or an error)"
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            p.status, p.note = "error", "redirect_uri must be an absolute http(s) URL."
        elif parts.fragment:
            p.status, p.note = "error", "redirect_uri must not contain a #fragment (RFC 6749 §3.1.2)."
        elif redirect_uri and value != redirect_uri:
            p.status, p.note = "warning", (f"Your settings use {redirect_uri}; the utility compares redirect "
                                           "URIs byte for byte with those registered.")
        else:
            p.note = "Must be registered with the utility byte for byte."
    elif name == "scope":
        p.meaning = "What to share; it only pre-fills the consent form (see below)"
        p.scope = scope_report(value)
        if p.scope.error:
            p.status, p.note = "error", p.scope.error
        elif p.scope.warnings:
            p.status, p.note = "warning", "; ".join(p.scope.warnings)
    elif name == "state":
        p.meaning = "An opaque, single-use value the site checks at the callback (CSRF protection)"
        if len(value) < 16 and purpose == "authorize" and not _PLACEHOLDER.fullmatch(value):
            p.status, p.note = "warning", "Short states can be guessed: use at least 128 random bits."
    elif name == "code_challenge":
        p.meaning = "PKCE: BASE64URL(SHA-256(code_verifier)); the token request must prove the verifier"
        if not _PKCE_CHARS.fullmatch(value):
            p.status, p.note = "error", "A code_challenge is 43 to 128 characters of A-Z a-z 0-9 - . _ ~."
        elif not _S256.fullmatch(value):
            p.status, p.note = "warning", "An S256 challenge is exactly 43 base64url characters."
    elif name == "code_challenge_method":
        p.meaning = "How the challenge was made from the verifier"
        if value == "plain":
            p.status, p.note = "warning", "plain sends the verifier itself; use S256 (the sandbox requires it)."
        elif value != "S256":
            p.status, p.note = "error", f"Unknown method {value!r}: use S256."
    elif name == "code" and purpose == "callback":
        p.meaning = "The authorization code: single use, valid for minutes; exchange it at the token endpoint"
    elif name == "error":
        known = explain_code(value)
        p.meaning = known.message if known else "An error the utility reported"
        p.status = "warning"
    elif name == "error_description":
        p.meaning = "The utility's explanation of the error"
    elif name == "error_uri":
        p.meaning = "A page about the error"
    else:
        p.meaning = "Not a parameter of a Green Button Connect authorization request"
        p.status, p.note = "unknown", "The utility may ignore it or refuse the request."

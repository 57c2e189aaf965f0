"""Every exchange of a run, recorded for the integrator and masked before it is stored.

The site talks to the custodian through ``requests``; a :class:`Recorder` mounts a
transport adapter on a session so that each request and its response land in the
``exchanges`` table, with secrets reduced to ``••••`` + their last 4 characters. Browser
steps the server never sees as HTTP calls (the authorization redirect, the callback) are
recorded with :meth:`Recorder.note`.

Framework-free apart from ``requests``: the views only read :class:`~.models.Exchange`
rows and call :func:`exchange_view`.

Usage::

    rec = recorder(ctx, run)                      # or Recorder(db, run_id, secrets=[...])
    http = rec.session()                          # a requests.Session; everything through it is recorded
    http.get(url, headers=..., timeout=10)
    rec.attach(oauth2_session)                    # make another Session (Authlib's) record too
    rec.note("callback", "Callback from the utility", url=callback_url, params=request.args)

Masking happens in one place, :class:`Masker`, on the way in: the database never holds an
unmasked secret (a literal-secret pass runs over every stored string as a second guard).
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import shlex
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus, urlsplit, urlunsplit

import requests
from sqlalchemy import bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from ..storage import Database
from ..tokens import mask
from .client import GuardedAdapter, Session
from .models import Exchange

log = logging.getLogger(__name__)

STORE_LIMIT = 256 * 1024        # bytes of each body kept (masked); the rest is counted, not stored
PAGE_LIMIT = 32 * 1024          # characters of a body shown inline on the run page
REQUEST_LIMIT = 64 * 1024       # request bodies are small (forms); keep this much
MASK = "••••"

# Names whose values are secrets, by where they appear.
SECRET_FORM_FIELDS = frozenset({"client_secret", "code", "code_verifier", "refresh_token", "access_token",
                                "token", "client_assertion", "password"})
SECRET_JSON_FIELDS = frozenset({"access_token", "refresh_token", "client_secret", "id_token",
                                "client_access_token", "registration_access_token", "token"})
SECRET_QUERY_PARAMS = frozenset({"code", "state", "access_token", "client_secret", "code_verifier",
                                 "refresh_token", "token"})
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key",
                            "x-webhook-secret"})
# ESPI's Authorization once carried the tokens as elements; mask them if a custodian still does.
_XML_SECRET = re.compile(r"(<(?:[\w.-]+:)?(access_token|refresh_token|client_secret)\b[^>]*>)([^<]+)(</)")

_JSON_SECRET = re.compile(r'("(%s)"\s*:\s*")([^"\\]+)("?)' % "|".join(sorted(SECRET_JSON_FIELDS)))

# Placeholders used in the copyable snippets: names a reader exports in their shell.
PLACEHOLDERS = {
    "client_secret": "CLIENT_SECRET", "code": "CODE", "code_verifier": "CODE_VERIFIER",
    "refresh_token": "REFRESH_TOKEN", "access_token": "ACCESS_TOKEN", "token": "TOKEN",
    "state": "STATE", "client_assertion": "CLIENT_ASSERTION", "password": "PASSWORD",
}

# Response headers shown up front in the timeline (the rest are one click away).
KEY_HEADERS = frozenset({"content-type", "retry-after", "www-authenticate", "location", "content-length"})

# Headers requests/curl add by themselves: left out of the snippets.
_DEFAULT_HEADERS = frozenset({"user-agent", "accept-encoding", "connection", "content-length", "host"})


def is_masked(value: str) -> bool:
    return value.startswith(MASK) or value == "(not set)"


class Masker:
    """Masks secrets in URLs, headers and bodies. Knows literal secrets too (the client secret,
    tokens, the code and verifier of the run) and learns new ones as tokens are issued, so a
    value masked by its field name in one place is also masked wherever else it turns up."""

    MIN_LITERAL = 8   # shorter literals would mask ordinary text

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets: set[str] = set()
        #: per known secret, longest first: its mask and the forms it is written in (made once, not per text)
        self._plan: list[tuple[str, tuple[str, ...]]] | None = None
        for value in secrets:
            self.learn(value)

    def learn(self, value: Any) -> None:
        if isinstance(value, str) and len(value) >= self.MIN_LITERAL and not is_masked(value) \
                and value not in self.secrets:
            self.secrets.add(value)
            self._plan = None

    # -- literal pass -----------------------------------------------------------------------
    def literals(self, text: str | None) -> str | None:
        """Replace every known secret, also percent- and base64-encoded, wherever it occurs."""
        if not text or not self.secrets:
            return text
        if self._plan is None:
            self._plan = [(mask(secret), tuple(dict.fromkeys((secret, quote(secret, safe=""), quote_plus(secret)))))
                          for secret in sorted(self.secrets, key=len, reverse=True)]
        for masked, forms in self._plan:
            for form in forms:
                if form in text:
                    text = text.replace(form, masked)
        return text

    # -- structured passes ------------------------------------------------------------------
    def value(self, value: str | None) -> str:
        self.learn(value)
        return mask(value)

    def url(self, url: str | None) -> str | None:
        if not url:
            return url
        parts = urlsplit(url)
        query = self.pairs(parts.query, SECRET_QUERY_PARAMS)
        frag = self.pairs(parts.fragment, SECRET_QUERY_PARAMS) if "=" in parts.fragment else parts.fragment
        return self.literals(urlunsplit((parts.scheme, parts.netloc, parts.path, query, frag)))

    def pairs(self, text: str, names: frozenset[str]) -> str:
        """``a=1&code=xyz`` with the named values masked; the other pairs are kept as written
        (masked values are written unencoded, so they stay readable)."""
        if not text:
            return text
        out = []
        for piece in text.split("&"):
            key, sep, raw = piece.partition("=")
            if sep and unquote_plus(key) in names and raw:
                out.append(f"{key}={self.value(unquote_plus(raw))}")
            else:
                out.append(piece)
        return "&".join(out)

    def form(self, body: str) -> str:
        return self.literals(self.pairs(body, SECRET_FORM_FIELDS))

    def header(self, name: str, value: str) -> str:
        lname = name.lower()
        if lname in ("authorization", "proxy-authorization"):
            scheme, _, cred = value.partition(" ")
            if scheme.lower() == "basic" and cred:
                try:
                    user, sep, password = base64.b64decode(cred.strip(), validate=True).decode("utf-8").partition(":")
                except (binascii.Error, UnicodeDecodeError, ValueError):
                    return f"{scheme} {self.value(cred)}"
                self.learn(cred.strip())
                # the client id is no secret; Basic auth percent-encodes both parts (RFC 6749 §2.3.1)
                return f"{scheme} {user}:{self.value(unquote_plus(password)) if sep else MASK}"
            if cred:
                return f"{scheme} {self.value(cred.strip())}"
            return self.value(value)
        if lname in ("cookie", "set-cookie"):
            name_part, sep, rest = value.partition("=")
            cookie_value, semi, attrs = rest.partition(";")
            return f"{name_part}={self.value(cookie_value)}{semi}{attrs}" if sep else self.value(value)
        if lname in SECRET_HEADERS:
            return self.value(value)
        if lname == "location":
            return self.url(value) or value
        return self.literals(value) or value

    def headers(self, headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> list[list[str]]:
        items = headers.items() if isinstance(headers, Mapping) else (headers or [])
        return [[str(k), self.header(str(k), str(v))] for k, v in items]

    def json_value(self, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: (self.value(v) if k in SECRET_JSON_FIELDS and isinstance(v, str) else self.json_value(v))
                    for k, v in value.items()}
        if isinstance(value, list):
            return [self.json_value(v) for v in value]
        if isinstance(value, str):
            return self.literals(value)
        return value

    def body(self, text: str | None, content_type: str = "") -> str | None:
        """A request or response body, masked by its kind (form, JSON, XML) and literally."""
        if not text:
            return text
        ctype = content_type.lower()
        stripped = text.lstrip()
        if "json" in ctype or stripped[:1] in ("{", "["):
            try:
                data = json.loads(text)
            except ValueError:   # cut short or not JSON after all: mask the secret fields by pattern
                text = _JSON_SECRET.sub(lambda m: m.group(1) + self.value(m.group(3)) + m.group(4), text)
            else:
                return json.dumps(self.json_value(data), indent=2, ensure_ascii=False)
        if "x-www-form-urlencoded" in ctype:
            return self.form(text)
        if "xml" in ctype or stripped.startswith("<"):
            text = _XML_SECRET.sub(lambda m: m.group(1) + self.value(m.group(3).strip()) + m.group(4), text)
        return self.literals(text)


# ---------------------------------------------------------------------------------------------
# Recording
# ---------------------------------------------------------------------------------------------

def _decode(data: bytes, headers: Mapping[str, str] | None) -> str:
    ctype = (headers or {}).get("Content-Type", "") if headers is not None else ""
    m = re.search(r"charset=([\w.-]+)", ctype or "", re.I)
    try:
        return data.decode(m.group(1) if m else "utf-8", "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


class Recorder:
    """Records HTTP exchanges of one run into the site database, masked.

    Thread-safe enough for one run: each exchange is written in its own short transaction
    (``seq`` counted by the recorder, retried from the table on a clash); a failure to record is
    logged, never raised, so recording can't break the flow it watches.
    """

    def __init__(self, db: Database, run_id: str, secrets: Iterable[str | None] = (), *,
                 kind: str = "http", first_seq: int | None = None) -> None:
        self.db = db
        self.run_id = run_id
        self.masker = Masker(secrets)
        self.kind = kind            # kind of HTTP exchanges whose URL says nothing (see :func:`kind_for`)
        self.last_seq: int | None = None
        #: the seq the next exchange tries first (None: ask the table); ``first_seq=1`` for a run
        #: that has just been created, so its first note needs no query
        self.next_seq: int | None = first_seq

    # -- public API ------------------------------------------------------------------------------
    def session(self, kind: str | None = None) -> requests.Session:
        """A ``requests.Session`` whose every request/response is recorded."""
        return self.attach(Session(), kind)

    def attach(self, session: requests.Session, kind: str | None = None) -> requests.Session:
        """Make ``session`` (any ``requests.Session``, e.g. Authlib's ``OAuth2Session``) record."""
        adapter = RecordingAdapter(self, kind)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def learn(self, *secrets: str | None) -> None:
        """Secrets found after the recorder was made (e.g. a token from another place)."""
        for value in secrets:
            self.masker.learn(value)

    def note(self, kind: str, title: str, **fields: Any) -> None:
        """A step that is not an HTTP call the server makes: ``url=`` (masked), ``method=``,
        ``params=`` (a dict; secret values masked), ``status=``, ``error=`` and any other fields
        (stored under ``fields``, strings masked literally)."""
        url = fields.pop("url", None)
        method = fields.pop("method", None)
        status = fields.pop("status", None)
        error = fields.pop("error", None)
        params = fields.get("params")
        if isinstance(params, Mapping):
            fields["params"] = {str(k): (self.masker.value(str(v)) if k in SECRET_QUERY_PARAMS | SECRET_FORM_FIELDS
                                         else self.masker.literals(str(v))) for k, v in params.items()}
        self._save(kind=kind, title=title, method=method, url=self.masker.url(url), status=status,
                   error=self.masker.json_value(error) if error else None,
                   fields=self.masker.json_value(fields) if fields else None)

    # -- used by the adapter -----------------------------------------------------------------------
    def record_request(self, kind: str, request: requests.PreparedRequest) -> dict:
        """The masked request half (secrets in it are learnt first, so the response is masked too)."""
        headers = dict(request.headers or {})
        body = request.body
        size = None
        if isinstance(body, str):
            body = body.encode("utf-8")
        if isinstance(body, bytes):
            size = len(body)
            text = _decode(body[:REQUEST_LIMIT], headers)
        elif body is None:
            text = None
        else:
            text = "(streamed request body, not recorded)"
        ctype = headers.get("Content-Type", "")
        masked_headers = self.masker.headers(headers)   # learns Bearer/Basic secrets
        masked_body = self.masker.body(text, ctype) if text else text
        return {"kind": kind, "title": _title(kind, request.method or "GET", request.url or "", text),
                "method": request.method, "url": self.masker.url(request.url),
                "request_headers": masked_headers, "request_body": masked_body, "request_size": size}

    def record_response(self, req: dict, status: int | None, headers: Mapping[str, str] | None,
                        body: bytes | None, size: int | None, truncated: bool, duration_ms: int,
                        error: dict | None) -> None:
        text = None
        if body is not None:
            text = self.masker.body(_decode(body, headers), (headers or {}).get("Content-Type", ""))
        # the request half again: a token response may have taught us secrets it repeats
        req = {**req, "url": self.masker.literals(req["url"]),
               "request_body": self.masker.literals(req["request_body"])}
        masked_headers = self.masker.headers(headers) if headers is not None else None
        self._save(**req, status=status, response_headers=masked_headers, response_body=text,
                   response_size=size, response_truncated=truncated, duration_ms=duration_ms, error=error)

    def _save(self, **values: Any) -> None:
        """Insert one exchange in its own short transaction (committed before the next call, so
        a killed worker keeps what happened). The recorder counts its own ``seq`` after the first
        one; when another recorder of the run took that number, the clash is retried from the
        table's ``max(seq)``. A Core insert of the same columns the ORM would write."""
        values["kind"] = str(values.get("kind") or self.kind)[:16]
        values["title"] = (self.masker.literals(str(values.get("title") or "")) or "")[:200]
        seq = self.next_seq
        for _attempt in range(5):
            try:
                with self.db.engine.begin() as conn:
                    if seq is None:
                        seq = (conn.execute(_MAX_SEQ, {"run_id": self.run_id}).scalar() or 0) + 1
                    conn.execute(_INSERT, {**values, "run_id": self.run_id, "seq": seq})
                self.last_seq = seq
                self.next_seq = seq + 1
                return
            except IntegrityError:
                seq = None      # another recorder of this run took that seq: ask the table
                continue
            except SQLAlchemyError:
                log.exception("could not record an exchange of run %s", self.run_id)
                return


_EXCHANGES = Exchange.__table__
_MAX_SEQ = select(func.max(_EXCHANGES.c.seq)).where(_EXCHANGES.c.run_id == bindparam("run_id"))
_INSERT = insert(_EXCHANGES)


def _title(kind: str, method: str, url: str, body: str | None = None) -> str:
    """A short name for the timeline: the grant for token requests, else method and path tail."""
    if kind == "token":
        grant = dict(parse_qsl(body or "")).get("grant_type")
        return f"Token request ({grant})" if grant else "Token request"
    if kind == "revoke":
        return "Token revocation (RFC 7009)"
    path = urlsplit(url).path
    tail = "/".join(p for p in path.split("/")[-2:] if p)
    return f"{method} …/{tail}" if tail else f"{method} {url}"


def kind_for(url: str, default: str) -> str:
    """Guess what an HTTP exchange is from its URL (the timeline groups and labels by it)."""
    path = urlsplit(url or "").path
    if path.endswith("/token"):
        return "token"
    if path.endswith("/revoke") and "/oauth/" in path:
        return "revoke"
    if "/espi/" in path or "/DataCustodian/" in path:
        return "espi"
    if "/api/v2/" in path or path.endswith("/api/v2"):
        return "json"
    return default


class _Tee:
    """Wraps a urllib3 response: what the caller reads is also kept (up to ``limit`` bytes);
    the exchange is saved once, when the body ends, fails or the response is closed."""

    def __init__(self, raw: Any, done: Any, limit: int) -> None:
        self._raw = raw
        self._done = done
        self._limit = limit
        self._buf = bytearray()
        self._size = 0
        self._finished = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)

    def _keep(self, data: bytes) -> None:
        self._size += len(data)
        room = self._limit - len(self._buf)
        if room > 0:
            self._buf += data[:room]

    def _finish(self, complete: bool, error: dict | None = None) -> None:
        if not self._finished:
            self._finished = True
            self._done(bytes(self._buf), self._size, not complete or self._size > self._limit, error)

    def read(self, amt: int | None = None, *args: Any, **kwargs: Any) -> bytes:
        try:
            data = self._raw.read(amt, *args, **kwargs)
        except Exception as exc:
            self._finish(False, {"kind": "read_error", "message": str(exc)})
            raise
        self._keep(data)
        if not data or amt is None or getattr(self._raw, "length_remaining", None) == 0:
            self._finish(True)
        return data

    def stream(self, amt: int | None = 2 ** 16, decode_content: bool | None = None) -> Iterator[bytes]:
        try:
            for chunk in self._raw.stream(amt, decode_content=decode_content):
                self._keep(chunk)
                yield chunk
        except GeneratorExit:
            self._finish(False)
            raise
        except Exception as exc:
            self._finish(False, {"kind": "read_error", "message": str(exc)})
            raise
        self._finish(True)

    def close(self) -> None:
        self._finish(False)
        self._raw.close()

    def release_conn(self) -> None:
        self._finish(False)
        release = getattr(self._raw, "release_conn", None)
        if release is not None:
            release()


class RecordingAdapter(GuardedAdapter):
    """An ``HTTPAdapter`` that records each request it sends through a :class:`Recorder` (and,
    as every adapter of the site's calls, gives up on an answer that does not start within
    ``http_max_seconds``: see :class:`~.client.GuardedAdapter`)."""

    def __init__(self, recorder: Recorder, kind: str | None = None) -> None:
        super().__init__()
        self.recorder = recorder
        self.kind = kind

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        rec = self.recorder
        kind = self.kind or kind_for(request.url or "", rec.kind)
        try:
            req = rec.record_request(kind, request)
        except Exception:  # never let recording break the call  # pragma: no cover - defensive
            log.exception("could not mask a request")
            return super().send(request, *args, **kwargs)
        start = time.perf_counter()
        try:
            resp = super().send(request, *args, **kwargs)
        except requests.RequestException as exc:
            rec.record_response(req, None, None, None, None, False, _ms(start), _transport_error(exc))
            raise
        headers = resp.headers

        def done(body: bytes, size: int, truncated: bool, error: dict | None) -> None:
            try:
                rec.record_response(req, resp.status_code, headers, body, size, truncated, _ms(start), error)
            except Exception:  # pragma: no cover - defensive
                log.exception("could not record a response")

        resp.raw = _Tee(resp.raw, done, STORE_LIMIT)
        return resp


def _ms(start: float) -> int:
    return int(round((time.perf_counter() - start) * 1000))


def _transport_error(exc: Exception) -> dict:
    if isinstance(exc, requests.Timeout):
        return {"kind": "timeout", "message": str(exc)}
    if isinstance(exc, requests.ConnectionError):
        return {"kind": "connection", "message": str(exc)}
    return {"kind": "transport", "message": str(exc)}


def recorder(ctx: Any, run: Any, extra: Iterable[str | None] = ()) -> Recorder:
    """The recorder for ``run`` from the site context (``ctx.db``, ``ctx.vault``): it knows the
    run's secrets (client secret, the tokens, a code verifier still stored) — plus ``extra``
    ones, e.g. a JSON API token — so they are masked wherever they appear."""
    vault = ctx.vault
    secrets: list[str | None] = [vault.decrypt(run.client_secret_enc), vault.decrypt(run.code_verifier_enc),
                                 *extra]
    token_json = vault.decrypt(run.token_enc) if run.token_enc else None
    if token_json:
        try:
            token = json.loads(token_json)
        except ValueError:
            token = {}
        secrets += [v for k, v in token.items() if k in SECRET_JSON_FIELDS and isinstance(v, str)]
    return Recorder(ctx.db, run.id, secrets)


# ---------------------------------------------------------------------------------------------
# Reading: the view of one exchange, snippets
# ---------------------------------------------------------------------------------------------

@dataclass
class Snippets:
    curl: str
    python: str


def _placeholder(name: str, kind: str = "") -> str:
    if name in ("bearer", "access_token") and kind == "json":
        return "API_TOKEN"      # the JSON API takes an API token, as Bearer or ?access_token=
    if name == "bearer":
        return "ACCESS_TOKEN"
    return PLACEHOLDERS.get(name, "SECRET")


@dataclass
class _Shell:
    """A shell word built from literal text and ``$VARIABLE`` parts, quoted safely."""

    parts: list[tuple[str, bool]] = field(default_factory=list)

    def text(self, value: str) -> _Shell:
        self.parts.append((value, False))
        return self

    def var(self, name: str) -> _Shell:
        self.parts.append((name, True))
        return self

    def render(self) -> str:
        merged: list[tuple[str, bool]] = []
        for value, is_var in self.parts:   # adjacent literals are quoted as one
            if merged and not is_var and not merged[-1][1]:
                merged[-1] = (merged[-1][0] + value, False)
            else:
                merged.append((value, is_var))
        out = []
        for value, is_var in merged:
            if is_var:
                out.append(f'"${value}"')
            elif value:
                out.append(shlex.quote(value) if re.search(r"[^\w@%+=:,./-]", value) else value)
        return "".join(out) or "''"


def _split_masked(text: str, names: frozenset[str], kind: str) -> list[tuple[str, str | None]]:
    """``a=1&code=••••x`` -> [("a", "1"), ("code", None)] where None means "placeholder"."""
    out: list[tuple[str, str | None]] = []
    for key, value in parse_qsl(text, keep_blank_values=True):
        out.append((key, None if (key in names or is_masked(value)) else value))
    return out


def _var_for(key: str, value: str | None, kind: str) -> str:
    return _placeholder(key, kind) if value is None else ""


def snippets(ex: Mapping[str, Any]) -> Snippets | None:
    """A copyable ``curl`` command and Python ``requests`` code for an HTTP exchange, with shell /
    environment placeholders (``$CLIENT_SECRET``, ``$ACCESS_TOKEN``…) where the secrets were."""
    method, url = ex.get("method"), ex.get("url")
    if not method or not url or ex.get("kind") in ("authorize", "callback", "webhook"):
        return None
    kind = ex.get("kind") or ""
    parts = urlsplit(url)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    query = _split_masked(parts.query, SECRET_QUERY_PARAMS, kind)
    headers = [(k, v) for k, v in (ex.get("request_headers") or []) if k.lower() not in _DEFAULT_HEADERS]
    ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
    body = ex.get("request_body") or ""
    envs: list[str] = []

    def need(var: str) -> str:
        if var not in envs:
            envs.append(var)
        return var

    # --- curl
    lines = []
    url_word = _Shell().text(base)
    for i, (key, value) in enumerate(query):
        url_word.text(("?" if i == 0 else "&") + quote_plus(key) + "=")
        if value is None:
            url_word.var(need(_placeholder(key, kind)))
        else:
            url_word.text(quote_plus(value))
    first = f"curl -sS -X {method} {url_word.render()}" if method != "GET" else f"curl -sS {url_word.render()}"
    lines.append(first)
    auth_py = None
    py_headers: list[tuple[str, str, str | None]] = []   # name, literal, env var
    for name, value in headers:
        lname = name.lower()
        if lname == "authorization":
            scheme, _, cred = value.partition(" ")
            if scheme.lower() == "basic":
                user = cred.partition(":")[0]
                lines.append("-u " + _Shell().text(user + ":").var(need("CLIENT_SECRET")).render())
                auth_py = user
            else:
                var = need(_placeholder("bearer", kind))
                lines.append("-H " + _Shell().text(f"{name}: {scheme} ").var(var).render())
                py_headers.append((name, f"{scheme} ", var))
            continue
        if lname == "content-type" and "x-www-form-urlencoded" in value.lower():
            continue   # curl --data-urlencode / requests data= set it
        if is_masked(value):
            var = need("SECRET")
            lines.append("-H " + _Shell().text(f"{name}: ").var(var).render())
            py_headers.append((name, "", var))
        else:
            lines.append("-H " + _Shell().text(f"{name}: {value}").render())
            py_headers.append((name, value, None))
    form: list[tuple[str, str | None]] = []
    if body and "x-www-form-urlencoded" in ctype.lower():
        form = _split_masked(body, SECRET_FORM_FIELDS, kind)
        for key, value in form:
            word = _Shell().text(f"{key}=")
            word.var(need(_placeholder(key, kind))) if value is None else word.text(value)
            lines.append("--data-urlencode " + word.render())
    elif body and not body.startswith("(streamed"):
        lines.append("--data-binary " + _Shell().text(body).render())
    curl = " \\\n  ".join(lines)
    if envs:
        curl = "# export " + " ".join(f"{v}=…" for v in envs) + "\n" + curl

    # --- python
    py = ["import os", "", "import requests", ""]
    call = [f"resp = requests.{method.lower()}(" if method in ("GET", "POST", "PUT", "DELETE", "PATCH")
            else f"resp = requests.request({method!r}, ", f"    {base!r},"]
    if query:
        items = ", ".join(f"{k!r}: " + (f"os.environ[{_placeholder(k, kind)!r}]" if v is None else repr(v))
                          for k, v in query)
        call.append(f"    params={{{items}}},")
    if auth_py is not None:
        call.append(f"    auth=({auth_py!r}, os.environ['CLIENT_SECRET']),")
    if py_headers:
        items = ", ".join(f"{n!r}: " + (f"{lit!r} + os.environ[{var!r}]" if var and lit else
                                        f"os.environ[{var!r}]" if var else repr(lit))
                          for n, lit, var in py_headers)
        call.append(f"    headers={{{items}}},")
    if form:
        items = ", ".join(f"{k!r}: " + (f"os.environ[{_placeholder(k, kind)!r}]" if v is None else repr(v))
                          for k, v in form)
        call.append(f"    data={{{items}}},")
    elif body and not body.startswith("(streamed"):
        call.append(f"    data={body!r},")
    call += ["    timeout=30,", ")", "print(resp.status_code, resp.headers.get('Content-Type'))",
             "print(resp.text[:2000])"]
    python = "\n".join(py + call)
    return Snippets(curl=curl, python=python)


def pretty(body: str | None, content_type: str = "") -> str | None:
    """A body laid out for reading: JSON indented, XML re-indented when it parses safely."""
    if not body:
        return body
    stripped = body.lstrip()
    if stripped[:1] in ("{", "["):
        try:
            return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            return body
    looks_xml = stripped.startswith(("<?xml", "<feed", "<entry"))
    if stripped.startswith("<") and ("xml" in content_type.lower() or looks_xml):
        try:
            from lxml import etree

            from ..espi.parse import parse_document

            # the project's one XML entrance: DOCTYPE refused, entities, DTDs and network off
            root = parse_document(body.encode("utf-8"))
            etree.indent(root)
            return etree.tostring(root, pretty_print=True, encoding="unicode")
        except Exception:  # truncated, refused or not XML: show as it came
            return body
    return body


def header(ex: Mapping[str, Any], name: str, which: str = "response_headers") -> str | None:
    for k, v in ex.get(which) or []:
        if k.lower() == name.lower():
            return v
    return None


def exchange_dict(ex: Any, body_limit: int | None = None) -> dict:
    """The stored exchange as plain data (for ``/runs/<id>.json``): already masked. With
    ``body_limit`` the response body is cut there (``response_body_cut`` says so; the whole
    stored part is a download away)."""
    body = ex.response_body
    cut = body_limit is not None and body is not None and len(body) > body_limit
    return {
        "seq": ex.seq, "ts": ex.ts.isoformat() + "Z" if ex.ts else None, "kind": ex.kind, "title": ex.title,
        "method": ex.method, "url": ex.url, "status": ex.status, "duration_ms": ex.duration_ms,
        "request_headers": ex.request_headers, "request_body": ex.request_body, "request_size": ex.request_size,
        "response_headers": ex.response_headers, "response_body": body[:body_limit] if cut else body,
        "response_body_cut": cut,
        "response_size": ex.response_size, "response_truncated": bool(ex.response_truncated),
        "error": ex.error, "fields": ex.fields,
    }


def exchange_view(ex: Any) -> dict:
    """What the timeline shows for one exchange: the stored data, pretty bodies (cut for the
    page), snippets and an explanation when something went wrong."""
    from .explain import explain_exchange

    data = exchange_dict(ex)
    ctype = header(data, "Content-Type") or ""
    body = data["response_body"] or ""
    shown = body[:PAGE_LIMIT]
    data["response_pretty"] = pretty(shown, ctype) if len(body) <= PAGE_LIMIT else shown
    data["response_cut"] = bool(body) and (len(body) > PAGE_LIMIT or data["response_truncated"])
    data["request_pretty"] = pretty(data["request_body"], header(data, "Content-Type", "request_headers") or "")
    req_type = header(data, "Content-Type", "request_headers") or ""
    data["request_form"] = (parse_qsl(data["request_body"], keep_blank_values=True)
                            if data["request_body"] and "x-www-form-urlencoded" in req_type.lower() else None)
    data["key_headers"] = [[k, v] for k, v in data["response_headers"] or [] if k.lower() in KEY_HEADERS]
    data["snippets"] = snippets(data)
    data["explanation"] = explain_exchange(data)
    data["content_type"] = ctype
    return data


def exchanges_for(s: Any, run_id: str) -> list:
    """The run's exchanges in order, as read-only rows with the model's attribute names (a
    select built once; the pages only read them, so no ORM objects are made)."""
    return s.execute(_BY_RUN, {"run_id": run_id}).all()


# the model's columns (an ORM select: the session flushes first, as for a query of objects)
_BY_RUN = (select(*(getattr(Exchange, c.key) for c in _EXCHANGES.c))
           .where(Exchange.run_id == bindparam("run_id")).order_by(Exchange.seq))

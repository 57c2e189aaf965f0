"""The third party's side of the protocol, free of Flask: build the
authorization URL, exchange the code (Authlib's OAuth2 client), and read the
custodian's ESPI resources over HTTP."""
from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import urllib3
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from ..espi import parse as espi_parse
from ..espi.parse import EspiError
from .explain import error_from_body, explain

#: default caps on one download from the custodian (config ``http_max_body``, ``http_max_seconds``)
MAX_BODY = 32 * 1024 * 1024
MAX_SECONDS = 60.0


@dataclass(frozen=True)
class Limits:
    """Caps on one download: ``max_body`` bytes (after any gzip decoding) and ``max_seconds`` of
    total time from the answer's headers to its last byte (``timeout`` only bounds each wait,
    so a body sent a byte at a time would otherwise never end)."""

    max_body: int = MAX_BODY
    max_seconds: float = MAX_SECONDS

    @classmethod
    def from_settings(cls, settings: Mapping) -> Limits:
        """From ``http_max_body`` and ``http_max_seconds``; a missing, zero or negative value
        keeps the default (a cap can't be switched off)."""
        body, seconds = settings.get("http_max_body"), settings.get("http_max_seconds")
        return cls(int(body) if body and int(body) > 0 else MAX_BODY,
                   float(seconds) if seconds and float(seconds) > 0 else MAX_SECONDS)


_limits: ContextVar[Limits | None] = ContextVar("gbc_download_limits", default=None)


def use_limits(limits: Limits) -> None:
    """Set the caps :func:`fetch_xml` applies in this context (the site sets them per request
    from its configuration); without it the defaults apply."""
    _limits.set(limits)


def current_limits() -> Limits:
    return _limits.get() or Limits()


@dataclass(frozen=True)
class ClientConfig:
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    redirect_uri: str
    token_auth_method: str = "client_secret_basic"
    pkce: bool = True
    timeout: float = 10.0


class CustodianError(Exception):
    """A failed exchange with the custodian, explained for a person.

    ``kind`` is the OAuth/HTTP error code or one of ``timeout``,
    ``connection``, ``http``, ``not_xml``, ``too_large``.
    """

    def __init__(self, kind: str, message: str, *, step: str, status: int | None = None,
                 description: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.step = step
        self.status = status
        self.description = description

    def as_dict(self) -> dict:
        return {"error": self.kind, "message": self.message, "step": self.step,
                "status": self.status, "error_description": self.description}


class NotReady(Exception):
    """The custodian answered 202 Accepted: the data is still being prepared.

    ``authorization`` carries what was already read (the Authorization entry is
    served at once; the data endpoints wait until collection is done)."""

    def __init__(self, retry_after: int | None, authorization: dict | None = None) -> None:
        super().__init__(f"not ready, retry after {retry_after}s")
        self.retry_after = retry_after
        self.authorization = authorization


def new_state() -> str:
    return generate_token(43)


def new_code_verifier() -> str:
    return generate_token(64)


def _session(cfg: ClientConfig, scope: str | None = None, http: requests.Session | None = None) -> OAuth2Session:
    """Authlib's client; with ``http``, its transport adapters are used (a recorder's adapters
    record the token request like any other call: OAuth2Session is a requests.Session)."""
    sess = OAuth2Session(
        cfg.client_id,
        cfg.client_secret,
        scope=scope,
        redirect_uri=cfg.redirect_uri,
        token_endpoint_auth_method=cfg.token_auth_method,
        revocation_endpoint_auth_method=cfg.token_auth_method,
        code_challenge_method="S256" if cfg.pkce else None,
    )
    if http is not None:
        for prefix, adapter in http.adapters.items():
            sess.mount(prefix, adapter)
    return sess


def authorization_url(cfg: ClientConfig, scope: str, state: str, code_verifier: str | None) -> str:
    """The URL that sends the customer to the custodian (the scope as one percent-encoded string)."""
    with _session(cfg, scope) as sess:
        kwargs = {"code_verifier": code_verifier} if cfg.pkce and code_verifier else {}
        url, _ = sess.create_authorization_url(cfg.authorize_url, state=state, **kwargs)
    return url


def _token_request(cfg: ClientConfig, http: requests.Session | None, step: str, **fields) -> dict:
    """``POST`` the token endpoint with ``fields`` (client authentication as configured); the
    whole token JSON, or a :class:`CustodianError` that says what went wrong."""
    try:
        with _session(cfg, http=http) as sess:
            token = sess.fetch_token(cfg.token_url, timeout=cfg.timeout, **fields)
    except OAuthError as exc:
        raise CustodianError(exc.error or "oauth_error", explain(exc.error), step=step,
                             description=exc.description) from None
    except requests.Timeout:
        raise CustodianError("timeout", f"The token endpoint did not answer within {cfg.timeout:g} s.",
                             step=step) from None
    except requests.ConnectionError:
        raise CustodianError("connection", f"Could not connect to the token endpoint {cfg.token_url}.",
                             step=step) from None
    except requests.HTTPError as exc:   # Authlib raises for 5xx
        status = exc.response.status_code if exc.response is not None else None
        raise CustodianError("http", f"The token endpoint answered HTTP {status}.", step=step,
                             status=status) from None
    except ValueError as exc:  # not JSON
        raise CustodianError("not_json", f"The token endpoint did not answer with JSON ({exc}).",
                             step=step) from None
    return dict(token)


def exchange_code(cfg: ClientConfig, code: str, code_verifier: str | None,
                  http: requests.Session | None = None) -> dict:
    """``POST`` the token endpoint; returns the whole token JSON (with resourceURI & co)."""
    kwargs = {"code_verifier": code_verifier} if cfg.pkce and code_verifier else {}
    return _token_request(cfg, http, "token", grant_type="authorization_code", code=code, **kwargs)


def refresh_token(cfg: ClientConfig, refresh: str, http: requests.Session | None = None) -> dict:
    """``grant_type=refresh_token`` (reference §1.7): a new access token, maybe a new refresh token."""
    return _token_request(cfg, http, "refresh", grant_type="refresh_token", refresh_token=refresh)


def client_credentials(cfg: ClientConfig, http: requests.Session | None = None) -> dict:
    """``grant_type=client_credentials`` (reference §1.8): the client_access_token for the
    Authorization list and Bulk."""
    return _token_request(cfg, http, "client_credentials", grant_type="client_credentials")


def revocation_url(token_url: str) -> str:
    """RFC 7009 endpoint next to the token endpoint: ``…/oauth/token`` -> ``…/oauth/revoke``."""
    base = token_url.rstrip("/")
    return (base[: -len("/token")] if base.endswith("/token") else base) + "/revoke"


def revoke_token(cfg: ClientConfig, token: str, hint: str | None, http: requests.Session | None = None) -> int:
    """RFC 7009 revocation of ``token``; the HTTP status (200), or a :class:`CustodianError`."""
    url = revocation_url(cfg.token_url)
    try:
        with _session(cfg, http=http) as sess:
            resp = sess.revoke_token(url, token=token, token_type_hint=hint, timeout=cfg.timeout)
    except requests.Timeout:
        raise CustodianError("timeout", f"{url} did not answer within {cfg.timeout:g} s.", step="revoke") from None
    except requests.ConnectionError:
        raise CustodianError("connection", f"Could not connect to {url}.", step="revoke") from None
    if resp.status_code != 200:
        raise _http_error(resp, url, "revoke")
    return resp.status_code


def _http_error(resp: requests.Response, url: str, step: str) -> CustodianError:
    """A non-success answer, named by its JSON error code when it has one."""
    text = resp.text[:2000]   # these calls are not streamed
    code, desc = error_from_body(text)
    if code:
        return CustodianError(code, explain(code), step=step, status=resp.status_code, description=desc)
    return CustodianError("http", f"{url} answered HTTP {resp.status_code}.", step=step,
                          status=resp.status_code, description=text[:500])


def post_json(url: str, bearer: str, *, step: str, timeout: float = 10.0,
              http: requests.Session | None = None) -> dict:
    """``POST`` a JSON API action with an API token (e.g. ``authorizations/{uid}/revoke``)."""
    try:
        resp = (http or requests).post(url, headers={"Authorization": f"Bearer {bearer}",
                                                     "Accept": "application/json"},
                                       timeout=timeout, allow_redirects=False)
    except requests.Timeout:
        raise CustodianError("timeout", f"{url} did not answer within {timeout:g} s.", step=step) from None
    except requests.ConnectionError:
        raise CustodianError("connection", f"Could not connect to {url}.", step=step) from None
    if not 200 <= resp.status_code < 300:
        raise _http_error(resp, url, step)
    try:
        data = resp.json()
    except ValueError:
        raise CustodianError("not_json", f"{url} did not answer with JSON.", step=step,
                             status=resp.status_code) from None
    return data if isinstance(data, dict) else {"data": data}


ERROR_BODY = 64 * 1024


def fetch_xml(url: str, access_token: str, *, step: str, timeout: float = 10.0,
              http: requests.Session | None = None, limits: Limits | None = None) -> bytes:
    """GET an ESPI resource with the Bearer token; capped in size and total time (``limits``,
    else :func:`current_limits`). With ``http`` (a recorder's session) the call is recorded;
    otherwise plain ``requests``."""
    limits = limits or current_limits()
    try:
        with (http or requests).get(url, headers={"Authorization": f"Bearer {access_token}",
                                                  "Accept": "application/atom+xml"},
                                    timeout=timeout, stream=True, allow_redirects=False) as resp:
            with _Deadline(resp, limits.max_seconds) as deadline:
                try:
                    return _read_body(resp, url, step, limits.max_body, deadline)
                except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
                    if deadline.expired:
                        raise deadline.error(url, step) from None
                    raise
    except (requests.Timeout, urllib3.exceptions.ReadTimeoutError):
        raise CustodianError("timeout", f"{url} did not answer within {timeout:g} s.", step=step) from None
    except requests.ConnectionError:
        raise CustodianError("connection", f"Could not connect to {url}.", step=step) from None
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:   # the body broke off
        raise CustodianError("read_error", f"The answer from {url} was cut off: {type(exc).__name__}.",
                             step=step) from None


def _read_body(resp: requests.Response, url: str, step: str, max_body: int, deadline: _Deadline) -> bytes:
    if resp.status_code == 202:
        retry = resp.headers.get("Retry-After", "").strip()
        resp.raw.read(ERROR_BODY, decode_content=True)
        raise NotReady(int(retry) if retry.isdigit() else None)
    if resp.status_code != 200:
        body = resp.raw.read(ERROR_BODY, decode_content=True).decode("utf-8", "replace")
        code, desc = error_from_body(body)
        if code:
            raise CustodianError(code, f"{url} answered HTTP {resp.status_code}: {explain(code)}",
                                 step=step, status=resp.status_code, description=desc)
        raise CustodianError("http", f"{url} answered HTTP {resp.status_code}.", step=step,
                             status=resp.status_code, description=body[:500])
    declared = resp.headers.get("Content-Length", "").strip()
    if declared.isdigit() and int(declared) > max_body:      # refused before a byte of it is read
        raise _too_large(url, step, max_body)
    chunks, size = [], 0
    for chunk in resp.iter_content(65536):
        size += len(chunk)
        if size > max_body:
            raise _too_large(url, step, max_body)
        if deadline.expired or deadline.passed():
            raise deadline.error(url, step)
        chunks.append(chunk)
    if deadline.expired:
        raise deadline.error(url, step)
    return b"".join(chunks)


def _too_large(url: str, step: str, max_body: int) -> CustodianError:
    return CustodianError("too_large", f"{url} sent more than {_size(max_body)}, the site's limit "
                          "(GBC_HTTP_MAX_BODY); it was cut off there.", step=step)


def _size(n: int) -> str:
    return f"{n / 2**20:g} MB" if n >= 2**20 else f"{n:,} bytes"


class _Deadline:
    """Cuts a download off after ``seconds``: between chunks by a clock check, and while a read
    is blocked (a body sent a byte at a time) by a timer that shuts the connection's socket
    down, so the blocked read returns at once. Used as a context manager around the reading."""

    def __init__(self, resp: requests.Response, seconds: float) -> None:
        self.resp, self.seconds = resp, seconds
        self.end = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._done = False
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()

    def passed(self) -> bool:
        if time.monotonic() >= self.end:
            self.expired = True
        return self.expired

    def _cut(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            conn = getattr(self.resp.raw, "connection", None)   # urllib3's HTTPConnection
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def error(self, url: str, step: str) -> CustodianError:
        return CustodianError("timeout", f"{url} did not finish sending its answer within {self.seconds:g} s, "
                              "the site's total time limit (GBC_HTTP_MAX_SECONDS); it was cut off there.",
                              step=step)


def usage_points_url(resource_uri: str) -> str:
    """``…/[Batch/]Subscription/{id}`` -> ``…/Subscription/{id}/UsagePoint``: the meters
    without their interval data (a 2-year batch is tens of megabytes)."""
    url = resource_uri.replace("/Batch/Subscription/", "/Subscription/", 1).rstrip("/")
    return url if url.endswith("/UsagePoint") else url + "/UsagePoint"


def batch_url(resource_uri: str) -> str:
    """``…/Subscription/{id}`` (token response form) -> ``…/Batch/Subscription/{id}``."""
    if "/Batch/Subscription/" in resource_uri:
        return resource_uri
    return resource_uri.replace("/Subscription/", "/Batch/Subscription/", 1)


@dataclass
class Fetched:
    authorization: dict | None
    meters: list[dict]


def fetch_authorization_and_meters(token: dict, *, timeout: float, http: requests.Session | None = None) -> Fetched:
    """The Authorization entry and the subscription's usage points, as plain dicts."""
    access = token["access_token"]
    authorization = None
    if token.get("authorizationURI"):
        xml = fetch_xml(token["authorizationURI"], access, step="authorization", timeout=timeout, http=http)
        try:
            authorization = authorization_dict(espi_parse.parse_authorization(xml))
        except EspiError as exc:
            raise CustodianError("bad_xml", f"The Authorization resource could not be read: {exc}",
                                 step="authorization") from None
    resource = token.get("resourceURI") or (authorization or {}).get("resource_uri")
    if not resource:
        raise CustodianError("no_resource", "The token response has no resourceURI, so there is no "
                             "subscription to read.", step="meters")
    try:
        xml = fetch_xml(usage_points_url(resource), access, step="meters", timeout=timeout, http=http)
    except NotReady as exc:
        exc.authorization = authorization
        raise
    try:
        points = espi_parse.parse_usage_points(xml)
    except EspiError as exc:
        raise CustodianError("bad_xml", f"The subscription feed could not be read: {exc}",
                             step="meters") from None
    points = with_local_time(points, access, timeout, http, origin=resource)
    return Fetched(authorization, [meter_dict(up) for up in points])


def same_origin(url: str, other: str) -> bool:
    a, b = urlsplit(url), urlsplit(other)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def with_local_time(points: list, access: str, timeout: float, http: requests.Session | None = None,
                    *, origin: str | None = None) -> list:
    """UsagePoints from a UsagePoint feed name their LocalTimeParameters only by a related
    link: read each distinct one. It only adds the time zone, so failures leave it unknown.
    The bearer token goes only to links on ``origin`` (the resourceURI's): a custodian's XML
    must not be able to send our token elsewhere."""
    cache: dict[str, object] = {}
    out = []
    for up in points:
        href = next((h for h in up.related if "/LocalTimeParameters/" in h), None)
        if href and origin and not same_origin(href, origin):
            href = None
        if up.local_time is None and href:
            if href not in cache:
                try:
                    cache[href] = espi_parse.parse_local_time(
                        fetch_xml(href, access, step="meters", timeout=timeout, http=http))
                except (CustodianError, NotReady, EspiError):
                    cache[href] = None
            up = dataclasses.replace(up, local_time=cache[href])
        out.append(up)
    return out


def authorization_dict(auth) -> dict:
    def period(p):
        return {"start": p.start, "duration": p.duration} if p else None

    return {
        "uid": auth.uid,
        "status": auth.status,
        "status_name": auth.status_name,
        "scope": auth.scope,
        "token_type": auth.token_type,
        "authorized_period": period(auth.authorized_period),
        "published_period": period(auth.published_period),
        "expires_at": auth.expires_at,
        "grant_type": auth.grant_type,
        "resource_uri": auth.resource_uri,
        "authorization_uri": auth.authorization_uri,
        "customer_resource_uri": auth.customer_resource_uri,
    }


def meter_dict(up) -> dict:
    lt = up.local_time
    return {
        "usage_point_id": up.id,
        "self_uri": up.self_uri,
        "title": up.title,
        "service_kind": up.service_kind,
        "service_kind_name": up.service_kind_name,
        "tariff": up.tariff_profile,
        "local_time": None if lt is None else {
            "tz_offset": lt.tz_offset, "dst_offset": lt.dst_offset,
            "dst_start_rule": lt.dst_start_rule, "dst_end_rule": lt.dst_end_rule,
        },
    }

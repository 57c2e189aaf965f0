"""The third party's side of the protocol, free of Flask: build the
authorization URL, exchange the code (Authlib's OAuth2 client), and read the
custodian's ESPI resources over HTTP."""
from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
import requests.adapters
import urllib3
import urllib3.connection
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from ..espi import parse as espi_parse
from ..espi.parse import EspiError
from .explain import (
    error_from_body,
    explain,
    for_status,
    looks_like_html,
    parse_retry_after,
    retry_phrase,
    text_excerpt,
)

#: default caps on one download from the custodian (config ``http_max_body``, ``http_max_seconds``)
MAX_BODY = 32 * 1024 * 1024
MAX_SECONDS = 60.0
#: a token endpoint's answer is a few hundred bytes: more than this is refused whatever ``http_max_body`` says
TOKEN_MAX_BODY = 1024 * 1024
#: of an error answer (any status but 200) this much is read and kept; the rest is left unread
ERROR_BODY = 64 * 1024


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


# --- a whole-answer guard for the part before the body ------------------------------------------
#
# ``timeout`` bounds each wait, so a custodian that sends its status line and headers a byte at a
# time would hold the request (and the site's worker) for as long as it likes; the body has
# :func:`read_capped`. Every call goes through a :class:`GuardedAdapter`: its connections report
# themselves to the guard of the call on this thread, and the guard shuts their socket down if no
# response has arrived after ``max_seconds``.

_watch = threading.local()

log = logging.getLogger(__name__)


class TotalTimeout(requests.Timeout):
    """The answer's status line and headers did not arrive within ``http_max_seconds``."""


class _Watchdog:
    """One thread that fires every :class:`_SocketTimer` of the process when its time is up
    (a thread per timer cost more CPU than the call it guarded: two per call to the custodian).
    Timers wait in a heap by deadline, each in a one-item list that disarming empties (so a
    disarmed timer and the response it watched are freed at once); empty slots are dropped when
    they reach the top, and the heap is rebuilt when they pile up."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, list]] = []
        self._order = itertools.count()
        self._disarmed = 0
        self._thread: threading.Thread | None = None

    def arm(self, timer: _SocketTimer, when: float) -> list:
        """Fire ``timer._cut()`` at ``when`` (``time.monotonic``); returns its slot for :meth:`disarm`."""
        slot = [timer]
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name="gbc-call-watchdog", daemon=True)
                thread.start()          # kept only once started: a failed start is tried again
                self._thread = thread
            if self._disarmed > 256 and self._disarmed * 2 > len(self._heap):
                self._heap = [item for item in self._heap if item[2][0] is not None]
                heapq.heapify(self._heap)
                self._disarmed = 0
            heapq.heappush(self._heap, (when, next(self._order), slot))
            if self._heap[0][2] is slot:     # the earliest now: the thread waits for a later one
                self._cond.notify()
        return slot

    def disarm(self, slot: list) -> None:
        with self._cond:
            if slot[0] is not None:
                slot[0] = None
                self._disarmed += 1

    def _next_due(self) -> _SocketTimer:
        with self._cond:
            while True:
                while self._heap and self._heap[0][2][0] is None:
                    heapq.heappop(self._heap)
                    self._disarmed = max(0, self._disarmed - 1)
                if not self._heap:
                    self._cond.wait()
                    continue
                when, _, slot = self._heap[0]
                if when <= time.monotonic():
                    heapq.heappop(self._heap)
                    timer, slot[0] = slot[0], None
                    return timer
                self._cond.wait(when - time.monotonic())

    def _run(self) -> None:
        while True:
            timer = self._next_due()
            try:
                timer._cut()
            except Exception:   # never let one timer stop the cutting of all later ones
                log.exception("the call watchdog could not cut a connection")
            del timer


_watchdog_lock = threading.Lock()
_watchdog: _Watchdog | None = None


def _after_fork_in_child() -> None:
    """A forked child (a gunicorn worker) starts with no watchdog and a free lock, even if the
    parent forked while another of its threads held it."""
    global _watchdog, _watchdog_lock
    _watchdog_lock = threading.Lock()
    _watchdog = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def _the_watchdog() -> _Watchdog:
    """The process's watchdog (a new one after a fork: the thread does not survive it)."""
    global _watchdog
    dog = _watchdog
    if dog is None or dog._pid != os.getpid():
        with _watchdog_lock:
            if _watchdog is None or _watchdog._pid != os.getpid():
                _watchdog = _Watchdog()
            dog = _watchdog
    return dog


class _SocketTimer:
    """After ``seconds``, shuts down the sockets :meth:`sockets` names, so that a read blocked on
    them returns at once; a context manager around the work it bounds (leaving it disarms it).
    The process's :class:`_Watchdog` thread does the cutting."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._done = False
        self._dog: _Watchdog | None = None
        self._slot: list | None = None

    def sockets(self) -> list:
        raise NotImplementedError

    def __enter__(self):
        self._dog = _the_watchdog()
        self._slot = self._dog.arm(self, time.monotonic() + self.seconds)
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._done = True
        if self._dog is not None and self._slot is not None:
            self._dog.disarm(self._slot)

    def _cut(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            for sock in self.sockets():
                # TLS through an HTTPS proxy: urllib3's SSLTransport wraps the real socket and has
                # no shutdown of its own
                raw = sock if hasattr(sock, "shutdown") else getattr(sock, "socket", None)
                try:
                    raw.shutdown(socket.SHUT_RDWR)
                except (OSError, AttributeError):
                    pass


class _Guard(_SocketTimer):
    """The connections a call opens on this thread (see :class:`_Watched`), cut after ``seconds``."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self._conns: list = []

    def watch(self, conn) -> None:
        with self._lock:
            self._conns.append(conn)

    def sockets(self) -> list:
        return [sock for sock in (getattr(conn, "sock", None) for conn in self._conns) if sock is not None]


class _Watched:
    """Mixed into urllib3's connection classes: a request on this thread tells its guard."""

    def request(self, *args, **kwargs):
        guard = getattr(_watch, "guard", None)
        if guard is not None:
            guard.watch(self)
        return super().request(*args, **kwargs)


class _HTTPConnection(_Watched, urllib3.connection.HTTPConnection):
    pass


class _HTTPSConnection(_Watched, urllib3.connection.HTTPSConnection):
    pass


class _HTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """An ``HTTPAdapter`` whose sends give up when no answer (status line and headers) has come
    within ``http_max_seconds`` (:func:`current_limits`), however slowly it trickles in. The body
    is read afterwards, within the same caps, by :func:`read_capped`."""

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if type(manager) is urllib3.ProxyManager:   # an HTTP(S) proxy; SOCKS keeps its own connections
            manager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        return manager

    def send(self, request: requests.PreparedRequest, *args, **kwargs) -> requests.Response:
        guard = _Guard(current_limits().max_seconds)
        outer = getattr(_watch, "guard", None)
        _watch.guard = guard
        try:
            with guard:
                resp = super().send(request, *args, **kwargs)
        except requests.RequestException as exc:
            if guard.expired:
                raise TotalTimeout(f"no answer within {guard.seconds:g} s", request=request) from exc
            raise
        finally:
            _watch.guard = outer
        if guard.expired:   # cut while the headers came: what arrived may look like a whole answer
            resp.close()
            raise TotalTimeout(f"no answer within {guard.seconds:g} s", request=request)
        return resp


class Session(requests.Session):
    """A ``requests.Session`` that reads its settings from the environment (proxies, ``no_proxy``,
    CA bundle) once per origin instead of on every request: requests walks ``os.environ``
    several times per call, a large part of the CPU of a short call. A session lives for one
    request of the site, so a change of the environment is seen by the next one."""

    def __init__(self) -> None:
        super().__init__()
        self._from_env: dict = {}

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        if proxies or not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url or "")
        try:
            key = (parts.scheme, parts.netloc, stream, verify, cert, self.stream, self.verify, self.cert,
                   tuple(sorted(self.proxies.items())))
            hash(key)
        except TypeError:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        found = self._from_env.get(key)
        if found is None:
            found = self._from_env[key] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        return {**found, "proxies": dict(found["proxies"])}


def guarded(session: requests.Session) -> requests.Session:
    """``session`` with :class:`GuardedAdapter` for http and https."""
    session.mount("http://", GuardedAdapter())
    session.mount("https://", GuardedAdapter())
    return session


def _plain(http: requests.Session | None) -> requests.Session:
    """The session to use: the caller's (a recorder's, guarded too) or a new guarded one."""
    return http if http is not None else guarded(Session())


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

    ``kind`` is the OAuth/UtilityAPI error code of the answer, or one the site names: ``timeout``,
    ``connection``, ``http`` (an error status without a code), ``html`` (a web page instead of
    data), ``not_json``, ``not_xml``, ``truncated``, ``too_large``, ``read_error``.
    ``retry_after``: seconds the custodian asked to wait (429/503 Retry-After); ``excerpt``: the
    start of an unexpected body as plain text.
    """

    def __init__(self, kind: str, message: str, *, step: str, status: int | None = None,
                 description: str | None = None, retry_after: int | None = None,
                 excerpt: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.step = step
        self.status = status
        self.description = description
        self.retry_after = retry_after
        self.excerpt = excerpt

    def as_dict(self) -> dict:
        out = {"error": self.kind, "message": self.message, "step": self.step,
               "status": self.status, "error_description": self.description}
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        if self.excerpt:
            out["excerpt"] = self.excerpt
        return out


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


@contextmanager
def _session(cfg: ClientConfig, scope: str | None = None,
             http: requests.Session | None = None) -> Iterator[OAuth2Session]:
    """Authlib's client; with ``http``, its transport adapters are used (a recorder's adapters
    record the token request like any other call: OAuth2Session is a requests.Session). Borrowed
    adapters stay open afterwards (they belong to ``http``, whose next call reuses the connection)."""
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
    else:
        guarded(sess)
    try:
        yield sess
    finally:
        if http is None:
            sess.close()


def authorization_url(cfg: ClientConfig, scope: str, state: str, code_verifier: str | None) -> str:
    """The URL that sends the customer to the custodian (the scope as one percent-encoded string)."""
    with _session(cfg, scope) as sess:
        kwargs = {"code_verifier": code_verifier} if cfg.pkce and code_verifier else {}
        url, _ = sess.create_authorization_url(cfg.authorize_url, state=state, **kwargs)
    return url


TOKEN_ENDPOINT = "The token endpoint"


def _token_request(cfg: ClientConfig, http: requests.Session | None, step: str, **fields) -> dict:
    """``POST`` the token endpoint with ``fields`` (client authentication as configured); the
    whole token JSON, or a :class:`CustodianError` that says what went wrong.

    Authlib sends the request (streamed) and parses the token; its ``access_token_response``
    compliance hook hands us the response first, and we read the body through
    :func:`read_capped` (size and total time) and turn any answer that is not a JSON object
    with 2xx into an explained error. Authlib then parses what we read."""

    def capped(resp: requests.Response) -> requests.Response:
        limits = current_limits()
        resp._content = read_capped(resp, cfg.token_url, step, limits=Limits(
            min(limits.max_body, TOKEN_MAX_BODY), limits.max_seconds), who=TOKEN_ENDPOINT)
        check_json_answer(resp, resp._content, cfg.token_url, step, who=TOKEN_ENDPOINT)
        return resp

    try:
        with _session(cfg, http=http) as sess:
            sess.register_compliance_hook("access_token_response", capped)
            token = sess.fetch_token(cfg.token_url, timeout=cfg.timeout, stream=True, **fields)
    except OAuthError as exc:    # a 2xx JSON object that names an error
        raise CustodianError(exc.error or "oauth_error", explain(exc.error), step=step,
                             description=exc.description) from None
    except requests.RequestException as exc:
        raise request_error(exc, cfg.token_url, step, cfg.timeout, who=TOKEN_ENDPOINT) from None
    except ValueError as exc:   # Authlib could not read what the hook let through (should not happen)
        raise CustodianError("not_json", f"The token endpoint's answer could not be read as a token ({exc}).",
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
            with sess.revoke_token(url, token=token, token_type_hint=hint, timeout=cfg.timeout,
                                   stream=True) as resp:
                body = read_answer(resp, url, "revoke")
    except requests.RequestException as exc:
        raise request_error(exc, url, "revoke", cfg.timeout) from None
    if resp.status_code != 200:
        raise answer_error(resp, body, url, "revoke")
    return resp.status_code


def post_json(url: str, bearer: str, *, step: str, timeout: float = 10.0,
              http: requests.Session | None = None) -> dict:
    """``POST`` a JSON API action with an API token (e.g. ``authorizations/{uid}/revoke``),
    within the caps of :func:`read_capped`."""
    try:
        with _plain(http).post(url, headers={"Authorization": f"Bearer {bearer}", "Accept": "application/json"},
                               timeout=timeout, allow_redirects=False, stream=True) as resp:
            body = read_answer(resp, url, step)
    except requests.RequestException as exc:
        raise request_error(exc, url, step, timeout) from None
    if 200 <= resp.status_code < 300 and not body.strip():
        return {}           # an action may answer 204 / an empty 200
    return check_json_answer(resp, body, url, step)


def get_json(url: str, bearer: str, *, step: str, timeout: float = 10.0, params: Mapping | None = None,
             http: requests.Session | None = None, max_body: int | None = None, who: str | None = None) -> dict:
    """``GET`` a JSON API resource with an API token, within the caps of :func:`read_capped`
    (and ``max_body`` if smaller); the JSON object, or an explained :class:`CustodianError`."""
    limits = current_limits()
    if max_body:
        limits = Limits(min(limits.max_body, max_body), limits.max_seconds)
    try:
        with _plain(http).get(url, params=params, headers={"Authorization": f"Bearer {bearer}",
                                                           "Accept": "application/json"},
                              timeout=timeout, allow_redirects=False, stream=True) as resp:
            body = read_answer(resp, url, step, limits=limits, who=who)
    except requests.RequestException as exc:
        raise request_error(exc, url, step, timeout, who=who) from None
    return check_json_answer(resp, body, url, step, who=who)


# --- reading answers: one capped reader and one way to explain what came back -----------------

def read_answer(resp: requests.Response, url: str, step: str, *, limits: Limits | None = None,
                who: str | None = None) -> bytes:
    """The body of a streamed answer: a success is read whole within the caps (more is an
    error), an error status only its first :data:`ERROR_BODY` bytes (enough to explain it)."""
    if 200 <= resp.status_code < 300:
        return read_capped(resp, url, step, limits=limits, who=who)
    return read_capped(resp, url, step, limits=limits, who=who, keep=ERROR_BODY)


def read_capped(resp: requests.Response, url: str, step: str, *, limits: Limits | None = None,
                who: str | None = None, keep: int | None = None) -> bytes:
    """Read a response sent with ``stream=True`` within ``limits`` (else :func:`current_limits`):
    at most ``max_body`` bytes after gzip decoding (a declared larger Content-Length is refused
    before a byte is read) and ``max_seconds`` from now to the last byte, also when a body comes
    a byte at a time. With ``keep``, only the first ``keep`` bytes are read and the rest is left
    (for error pages). Every call to the custodian reads its answer here; failures come back as
    an explained :class:`CustodianError` and the response is closed."""
    limits = limits or current_limits()
    who = who or url
    try:
        with _Deadline(resp, limits.max_seconds) as deadline:
            try:
                if keep is not None:
                    data = _read_some(resp, keep, deadline)
                else:
                    data = _read_all(resp, url, step, limits.max_body, deadline)
            except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                if deadline.expired:
                    raise deadline.error(url, step) from None
                raise _broken(exc, who, step, resp) from None
            if deadline.expired:
                raise deadline.error(url, step)
            return data
    except CustodianError:
        resp.close()
        raise


def _read_all(resp: requests.Response, url: str, step: str, max_body: int, deadline: _Deadline) -> bytes:
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
    return b"".join(chunks)


def _read_some(resp: requests.Response, keep: int, deadline: _Deadline) -> bytes:
    chunks, size = [], 0
    for chunk in resp.iter_content(min(keep, 65536)):
        chunks.append(chunk)
        size += len(chunk)
        if size >= keep or deadline.expired or deadline.passed():
            break
    return b"".join(chunks)[:keep]


def _broken(exc: BaseException, who: str, step: str, resp: requests.Response) -> CustodianError:
    """A body that broke off while it was read: cut short (fewer bytes than Content-Length) or
    the connection failed."""
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError | urllib3.exceptions.ProtocolError) \
            or "IncompleteRead" in text:
        declared = resp.headers.get("Content-Length", "").strip()
        promised = f" it announced {int(declared):,} bytes (Content-Length) but" if declared.isdigit() else ""
        return CustodianError("truncated", f"The answer from {_lower(who)} was cut short:{promised} the connection "
                              "closed before the whole body arrived.", step=step, status=resp.status_code)
    if isinstance(exc, requests.Timeout | urllib3.exceptions.ReadTimeoutError | TimeoutError) \
            or "timed out" in text:   # requests reports a read timeout inside a body as a ConnectionError
        return CustodianError("timeout", f"{who} stopped sending its answer part way through and did not go "
                              "on within the time limit.", step=step, status=resp.status_code)
    return CustodianError("read_error", f"The answer from {_lower(who)} was cut off: {type(exc).__name__}.", step=step,
                          status=resp.status_code)


def request_error(exc: requests.RequestException, url: str, step: str, timeout: float,
                  who: str | None = None) -> CustodianError:
    """A request that got no answer (or whose answer broke off before :func:`read_capped`)."""
    who = who or url
    if isinstance(exc, TotalTimeout):
        return CustodianError("timeout", f"{who} did not finish the start of its answer (status line and headers) "
                              f"within {current_limits().max_seconds:g} s, the site's total time limit "
                              "(GBC_HTTP_MAX_SECONDS); it was cut off there.", step=step)
    if isinstance(exc, requests.Timeout):
        return CustodianError("timeout", f"{who} did not answer within {timeout:g} s (GBC_HTTP_TIMEOUT).",
                              step=step)
    if isinstance(exc, requests.ConnectionError):
        why = _refused_or(exc)
        where = f" {url}" if who != url else ""
        return CustodianError("connection", f"Could not connect to {_lower(who)}{where}"
                              f"{': ' + why if why else ''}.", step=step)
    return CustodianError("read_error", f"The request to {url} failed: {type(exc).__name__}.", step=step)


def _lower(who: str) -> str:
    """"The token endpoint" inside a sentence; a URL as it is."""
    return who if "://" in who else who[:1].lower() + who[1:]


def _refused_or(exc: BaseException) -> str:
    """A short reason from a connection error's chain ("connection refused", …), or ""."""
    seen, cur = 0, exc
    while cur is not None and seen < 10:
        if isinstance(cur, ConnectionRefusedError):
            return "connection refused (nothing listens on that host and port)"
        if isinstance(cur, socket.gaierror):
            return "the host name could not be resolved"
        cur = cur.__cause__ or cur.__context__ or (cur.args[0] if cur.args and isinstance(cur.args[0],
                                                                                       BaseException) else None)
        seen += 1
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused (nothing listens on that host and port)"
    if "RemoteDisconnected" in text or "Connection aborted" in text:
        return "the server closed the connection without answering"
    return ""


def answer_error(resp: requests.Response, body: bytes, url: str, step: str, *, who: str | None = None,
                 expected: str = "JSON") -> CustodianError:
    """An answer with an error status, explained: by its OAuth/UtilityAPI error code when the
    body has one, else by the status; Retry-After (seconds or an HTTP-date) says when to try
    again, and an HTML page is named as such with the start of its text."""
    who = who or url
    status = resp.status_code
    retry = parse_retry_after(resp.headers.get("Retry-After"))
    when = retry_phrase(retry)
    text = body.decode("utf-8", "replace")
    code, desc = error_from_body(text)
    reason = f" ({resp.reason})" if resp.reason else ""
    if code:
        message = f"{who} answered HTTP {status}{reason} with the error {code!r}: {explain(code)}"
        return CustodianError(code, " ".join(p for p in (message, when) if p), step=step, status=status,
                              description=desc, retry_after=retry)
    found = for_status(status)
    meaning = f" {found.message}" if found else ""
    html = looks_like_html(resp.headers.get("Content-Type"), body)
    page = f" Instead of {expected} it sent an HTML page." if html else ""
    message = " ".join(p for p in (f"{who} answered HTTP {status}{reason}.{meaning}{page}", when) if p)
    excerpt = text_excerpt(body) or None
    return CustodianError("http", message, step=step, status=status, retry_after=retry,
                          description=None if html else (text[:500] or None), excerpt=excerpt if html else None)


def check_json_answer(resp: requests.Response, body: bytes, url: str, step: str, *,
                      who: str | None = None) -> dict:
    """A 2xx answer that is a JSON object, as a dict; anything else as an explained error."""
    who = who or url
    if not 200 <= resp.status_code < 300:
        raise answer_error(resp, body, url, step, who=who, expected="JSON")
    if looks_like_html(resp.headers.get("Content-Type"), body):
        raise CustodianError("html", f"{who} answered with an HTML page instead of JSON (HTTP {resp.status_code}, "
                             f"Content-Type {resp.headers.get('Content-Type') or 'not given'}).", step=step,
                             status=resp.status_code, excerpt=text_excerpt(body) or None)
    try:
        data = json.loads(body.decode("utf-8-sig")) if body.strip() else None
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise CustodianError("not_json", f"{who} did not answer with a JSON object (HTTP {resp.status_code}, "
                             f"{len(body):,} bytes).", step=step, status=resp.status_code,
                             excerpt=text_excerpt(body) or None)
    return data


def fetch_xml(url: str, access_token: str, *, step: str, timeout: float = 10.0,
              http: requests.Session | None = None, limits: Limits | None = None) -> bytes:
    """GET an ESPI resource with the Bearer token; capped in size and total time (``limits``,
    else :func:`current_limits`). With ``http`` (a recorder's session) the call is recorded;
    otherwise plain ``requests``."""
    limits = limits or current_limits()
    try:
        with _plain(http).get(url, headers={"Authorization": f"Bearer {access_token}",
                                            "Accept": "application/atom+xml"},
                              timeout=timeout, stream=True, allow_redirects=False) as resp:
            if resp.status_code == 202:
                read_capped(resp, url, step, limits=limits, keep=ERROR_BODY)
                raise NotReady(parse_retry_after(resp.headers.get("Retry-After")))
            body = read_answer(resp, url, step, limits=limits)
    except requests.RequestException as exc:
        raise request_error(exc, url, step, timeout) from None
    if resp.status_code != 200:
        raise answer_error(resp, body, url, step, expected="Atom XML")
    if looks_like_html(resp.headers.get("Content-Type"), body):
        raise CustodianError("html", f"{url} answered with an HTML page instead of Atom XML (HTTP 200, "
                             f"Content-Type {resp.headers.get('Content-Type') or 'not given'}).", step=step,
                             status=200, excerpt=text_excerpt(body) or None)
    return body


def _too_large(url: str, step: str, max_body: int) -> CustodianError:
    return CustodianError("too_large", f"{url} sent more than {_size(max_body)}, the site's limit "
                          "(GBC_HTTP_MAX_BODY); it was cut off there.", step=step)


def _size(n: int) -> str:
    return f"{n / 2**20:g} MB" if n >= 2**20 else f"{n:,} bytes"


class _Deadline(_SocketTimer):
    """Cuts a download off after ``seconds``: between chunks by a clock check, and while a read
    is blocked (a body sent a byte at a time) by a timer that shuts the connection's socket
    down, so the blocked read returns at once. Used as a context manager around the reading."""

    def __init__(self, resp: requests.Response, seconds: float) -> None:
        super().__init__(seconds)
        self.resp = resp
        self.end = time.monotonic() + seconds

    def passed(self) -> bool:
        if time.monotonic() >= self.end:
            self.expired = True
        return self.expired

    def sockets(self) -> list:
        conn = getattr(self.resp.raw, "connection", None)   # urllib3's HTTPConnection
        sock = getattr(conn, "sock", None)
        return [sock] if sock is not None else []

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

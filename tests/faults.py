"""A data custodian on loopback whose answers fail on demand (issue 6, the fault matrix).

It answers like a small custodian: ``/oauth/authorize`` sends the browser straight back with a
code, ``/oauth/token`` issues a token, the ESPI Authorization and UsagePoint feed are served under
``/DataCustodian/espi/1_1/resource``, and the JSON API's reads under ``/api/v2``. A test sets a
fault per endpoint::

    server = FaultServer()
    server.fail("token", "503")          # until server.heal()

Endpoints: ``token``, ``authorization``, ``usage_points``, ``json`` (every ``/api/v2`` read).
Fault kinds (:data:`KINDS`): ``timeout`` (no answer for longer than the site waits), ``refused``
(the URL handed out names a closed port; the test points the site's own settings there for
``token`` and ``json``), ``500``, ``503`` (Retry-After as an HTTP-date), ``429`` (Retry-After in
seconds), ``html`` (a 200 web page), ``truncated`` (fewer bytes than Content-Length), ``oversized``
(:attr:`FaultServer.oversize` bytes without Content-Length), ``drip`` (the body a byte every
:attr:`FaultServer.drip_every` seconds) and ``slow_headers`` (the status line and headers that way).
"""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

RESOURCE = "/DataCustodian/espi/1_1/resource"
ATOM = "http://www.w3.org/2005/Atom"
ESPI = "http://naesb.org/espi"

ENDPOINTS = ("token", "authorization", "usage_points", "json")
KINDS = ("timeout", "refused", "500", "503", "429", "html", "truncated", "oversized", "drip", "slow_headers")

#: the text a person should see from the ``html`` fault's page; the script must never run or show
HTML_PAGE = (b'<!DOCTYPE html>\n<html><head><title>Sign in</title><script>alert("fault-script")</script>'
             b"<style>body{color:red}</style></head><body><h1>Maintenance &amp; upgrades</h1>"
             b"<p>We'll be back <b>soon</b>.</p></body></html>")
HTML_TEXT = "Sign in Maintenance & upgrades We'll be back soon."
RETRY_SECONDS = 7            # the 429's Retry-After
RETRY_DATE_SECONDS = 120     # the 503's Retry-After, as an HTTP-date this far ahead


def closed_port_url() -> str:
    """``http://127.0.0.1:<port>`` of a port nothing listens on (bound, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def authorization_xml(base: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<entry xmlns="{ATOM}"><id>urn:uuid:a</id>'
            f'<link rel="self" href="{base}{RESOURCE}/Authorization/77"/><title>Authorization</title>'
            f'<content><Authorization xmlns="{ESPI}"><authorizedPeriod><duration>31536000</duration>'
            f"<start>1700000000</start></authorizedPeriod><status>1</status><expires_at>1900000000</expires_at>"
            f"<scope>FB=4_16</scope><token_type>0</token_type>"
            f"<resourceURI>{base}{RESOURCE}/Batch/Subscription/77</resourceURI>"
            f"<authorizationURI>{base}{RESOURCE}/Authorization/77</authorizationURI>"
            f"</Authorization></content></entry>").encode()


def usage_points_xml(base: str) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="{ATOM}"><id>urn:uuid:f</id>'
            f"<title>UsagePoint</title>"
            f'<entry><id>urn:uuid:u</id><link rel="self" href="{base}{RESOURCE}/Subscription/77/UsagePoint/1"/>'
            f'<title>Meter</title><content><UsagePoint xmlns="{ESPI}"><ServiceCategory><kind>0</kind>'
            f"</ServiceCategory></UsagePoint></content></entry></feed>").encode()


def json_api(path: str) -> dict | None:
    """The JSON API's answers for authorization ``77`` with meter ``1`` (UtilityAPI's shapes)."""
    meter = {"uid": "1", "authorization_uid": "77", "status": "updated", "bill_count": 0, "interval_count": 0,
             "base": {"service_identifier": "S-1", "service_tariff": "E-1", "meter_numbers": ["M-1"]}}
    if path == "/api/v2/authorizations/77":
        return {"uid": "77", "status": "updated", "is_revoked": False, "notes": [],
                "meters": {"meters": [meter], "next": None}}
    return {"/api/v2/meters": {"meters": [meter], "next": None}, "/api/v2/bills": {"bills": [], "next": None},
            "/api/v2/intervals": {"intervals": [], "next": None}}.get(path)


class QuietHandler(BaseHTTPRequestHandler):
    """A keep-alive request handler that logs nothing, with ``_send`` for a whole answer (the
    fault server's and the XML attack tests' fake custodians build on it)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)


class FaultServer:
    """The custodian; ``fail(endpoint, kind)`` makes one endpoint fail until ``heal()``."""

    oversize = 300_000        # bytes of an ``oversized`` answer (the tests cap the site at less)
    drip_every = 0.05         # seconds between the bytes of a ``drip``
    hang = 30.0               # seconds a ``timeout`` waits at most (released at close())

    def __init__(self) -> None:
        self.faults: dict[str, str] = {}
        self.tokens: list[str] = []           # every access/refresh token issued (for masking checks)
        self.hits: list[str] = []
        self.refused_url = closed_port_url()
        self._closing = threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    # -- the test's controls --------------------------------------------------------------------
    def fail(self, endpoint: str, kind: str) -> None:
        assert endpoint in ENDPOINTS and kind in KINDS, (endpoint, kind)
        self.faults = {endpoint: kind}

    def heal(self) -> None:
        self.faults = {}

    def close(self) -> None:
        self._closing.set()
        self.server.shutdown()
        self.server.server_close()

    # -- what the endpoints answer ----------------------------------------------------------------
    def base_for(self, endpoint: str) -> str:
        """The origin handed out for ``endpoint``: a closed port when it is to be refused."""
        return self.refused_url if self.faults.get(endpoint) == "refused" else self.url

    def token_json(self) -> dict:
        access, refresh = "fault-access-" + uuid.uuid4().hex, "fault-refresh-" + uuid.uuid4().hex
        self.tokens += [access, refresh]
        return {"access_token": access, "token_type": "Bearer", "expires_in": 3600, "refresh_token": refresh,
                "scope": "FB=4_16",
                "resourceURI": self.base_for("usage_points") + RESOURCE + "/Batch/Subscription/77",
                "authorizationURI": self.base_for("authorization") + RESOURCE + "/Authorization/77"}

    def _handler(self):
        server = self

        class Handler(QuietHandler):

            def _answer(self, endpoint: str, body: bytes, ctype: str) -> None:
                kind = server.faults.get(endpoint)
                try:
                    if kind is None or kind == "refused":
                        self._send(200, body, ctype, {"Cache-Control": "no-store"})
                    else:
                        self._fault(kind, body, ctype)
                except OSError:      # the site hung up (a cut-off drip, a timeout): what we want
                    self.close_connection = True

            def _fault(self, kind: str, body: bytes, ctype: str) -> None:
                if kind == "timeout":
                    server._closing.wait(server.hang)
                    self.close_connection = True
                elif kind == "500":
                    self._send(500, b"Internal Server Error: upstream database unavailable", "text/plain")
                elif kind == "503":
                    self._send(503, b"Service Unavailable", "text/plain",
                               {"Retry-After": formatdate(time.time() + RETRY_DATE_SECONDS, usegmt=True)})
                elif kind == "429":
                    self._send(429, b"Too Many Requests", "text/plain", {"Retry-After": str(RETRY_SECONDS)})
                elif kind == "html":
                    self._send(200, HTML_PAGE, "text/html; charset=utf-8")
                elif kind == "truncated":
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body) + 5000))
                    self.end_headers()
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                elif kind == "oversized":       # no Content-Length: only counting can stop it
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    chunk = b" " * 65536
                    for _ in range(server.oversize // len(chunk) + 1):
                        self.wfile.write(chunk)
                    self.wfile.write(body)
                elif kind == "slow_headers":    # each wait is short, the whole never ends
                    head = (f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nX-Padding: {'x' * 2000}\r\n"
                            f"Content-Length: {len(body)}\r\n\r\n").encode()
                    for i in range(len(head)):
                        if server._closing.is_set():
                            break
                        self.wfile.write(head[i:i + 1])
                        self.wfile.flush()
                        time.sleep(server.drip_every)
                    self.close_connection = True
                elif kind == "drip":
                    self.send_response(200)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for i in range(len(body)):
                        if server._closing.is_set():
                            break
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(server.drip_every)
                    self.close_connection = True

            def do_POST(self):  # noqa: N802 - http.server's names
                server.hits.append("POST " + self.path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.split("?", 1)[0] == "/oauth/token":
                    self._answer("token", json.dumps(server.token_json()).encode(), "application/json")
                elif self.path.split("?", 1)[0] == "/oauth/revoke":     # RFC 7009: 200, empty
                    self._answer("token", b"", "text/plain")
                else:
                    self._send(404, b'{"error": "not_found"}', "application/json")

            def do_GET(self):  # noqa: N802
                server.hits.append("GET " + self.path)
                parts = urlsplit(self.path)
                path = parts.path
                if path == "/oauth/authorize":
                    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
                    target = q["redirect_uri"] + "?" + urlencode({"code": "fault-code-" + uuid.uuid4().hex,
                                                                  "state": q["state"]})
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif path == RESOURCE + "/Authorization/77":
                    self._answer("authorization", authorization_xml(server.url), "application/atom+xml")
                elif path == RESOURCE + "/Subscription/77/UsagePoint":
                    self._answer("usage_points", usage_points_xml(server.url), "application/atom+xml")
                elif path.startswith("/api/v2/") and json_api(path) is not None:
                    self._answer("json", json.dumps(json_api(path)).encode(), "application/json")
                else:
                    self._send(404, b'{"error": "not_found"}', "application/json")

        return Handler

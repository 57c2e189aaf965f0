"""The XML attack corpus (tests/xml_attacks.py) against every place the project parses XML from
outside, directly and over HTTP (issue 6, stack-notes §3.4 and §4 item 13).

Where XML from outside is parsed (``grep -rn "lxml\\|etree\\|iterparse\\|fromstring" demo/``):

* :func:`demo.espi.parse.parse_document`, the small-document parser, and everything built on it:
  ``parse_authorization`` (the run's Authorization entry), ``parse_authorizations`` (the
  client_credentials tool's Authorization list), ``parse_usage_points`` (the run's meters),
  ``parse_local_time`` (each meter's LocalTimeParameters), ``require_content``,
  :func:`demo.site.usage.read_customer` (the meter page's RetailCustomer batch), the
  ReadServiceStatus tool (``demo/site/tools.py``) and :func:`demo.site.exchanges.pretty` (bodies
  shown on the run page; it falls back to the text as it came).
* :mod:`demo.espi.reader`, the streaming reader: ``read_usage`` / ``iter_interval_readings``
  (the meter page's interval data and bills), bytes or a file object read in pieces.
* Nothing else: the sandbox only writes XML (``demo/espi/build.py``, ``stream.py``; no request
  body it reads is XML), the decoder page takes a scope string or an authorization URL (no XML),
  the webhook receiver and the JSON API view read JSON.

For each input and each attack: a clear error naming the problem (DOCTYPE refused, too deep, too
large, undefined entity), the canary file's content nowhere (result, error, page, JSON), no hit
on the canary server, bounded time and memory. Over HTTP, a fake custodian on loopback answers
the token call and serves the attack as the Authorization, the UsagePoint feed or the meter
data: the run and meter pages explain the error (never a 500) with the exchange recorded; an
oversized body and a slow drip are cut off by ``http_max_body`` / ``http_max_seconds``.
"""
from __future__ import annotations

import io
import json
import re
import resource
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import xml_attacks
from faults import QuietHandler, authorization_xml
from lxml import etree

from demo.espi import parse as espi_parse
from demo.espi.parse import EspiError
from demo.espi.reader import iter_interval_readings, read_usage
from demo.site import client as gbc
from demo.site import exchanges, usage

from conftest import Visitor, start_servers
from flow import connect

#: generous bounds: a loaded 2-core machine must not make these flake
SECONDS = 5.0
MEGABYTES = 200

ATTACK_NAMES = [a.name for a in xml_attacks.corpus(Path("/nonexistent"), "http://127.0.0.1:9")]


# ---------------------------------------------------------------- canaries


class CanaryServer:
    """Counts every request (any method, any path) and answers with an evil DTD fragment, so a
    parser that did fetch would also get something to expand."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _any(self):
                canary.hits.append(f"{self.command} {self.path}")
                body = b'<!ENTITY % send "<!ENTITY x \'sent\'>">'
                self.send_response(200)
                self.send_header("Content-Type", "application/xml-dtd")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _any  # noqa: N815 - http.server's names

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/canary"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def canary_server():
    server = CanaryServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def canary_file(tmp_path_factory) -> tuple[Path, str]:
    secret = f"CANARY-{uuid.uuid4().hex}"
    path = tmp_path_factory.mktemp("canary") / "secret.txt"
    path.write_text(secret + "\n")
    return path, secret


@pytest.fixture(scope="module")
def attacks(canary_file, canary_server) -> dict[str, xml_attacks.Attack]:
    return {a.name: a for a in xml_attacks.corpus(canary_file[0], canary_server.url)}


@pytest.fixture(autouse=True)
def no_network(request):
    """After every test here: the canary server was never called."""
    yield
    if "canary_server" in request.fixturenames:
        server = request.getfixturevalue("canary_server")
        assert server.hits == [], f"the canary server was called: {server.hits}"


def _secret_free(secret: str, *texts: object) -> None:
    for text in texts:
        assert secret not in str(text), "the canary file's content leaked"


# ---------------------------------------------------------------- the inputs


class Pieces:
    """A binary file object that hands out ``pieces`` one per read (the way a socket does)."""

    def __init__(self, pieces: list[bytes]) -> None:
        self.pieces = [p for p in pieces if p]

    def read(self, size: int = -1) -> bytes:
        if not self.pieces:
            return b""
        piece = self.pieces[0]
        if 0 < size < len(piece):
            self.pieces[0] = piece[size:]
            return piece[:size]
        return self.pieces.pop(0)


def _tree(data: bytes) -> str:
    return etree.tostring(espi_parse.parse_document(data), encoding="unicode")


def _in_pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


INPUTS = {
    "parse_document": _tree,
    "parse_authorization": espi_parse.parse_authorization,
    "parse_authorizations": espi_parse.parse_authorizations,
    "parse_usage_points": espi_parse.parse_usage_points,
    "parse_local_time": espi_parse.parse_local_time,
    "require_content": espi_parse.require_content,
    "read_customer": lambda data: usage.read_customer(data, "1"),
    "read_usage": read_usage,
    "read_usage, file object": lambda data: read_usage(io.BytesIO(data)),
    "read_usage, 4 kB pieces": lambda data: read_usage(Pieces(_in_pieces(data, 4096))),
    "iter_interval_readings": lambda data: list(iter_interval_readings(data)),
}


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # Linux: kilobytes


@pytest.mark.parametrize("name", ATTACK_NAMES)
@pytest.mark.parametrize("entry", list(INPUTS))
def test_every_input_refuses_every_attack(entry, name, attacks, canary_file):
    attack, (_, secret) = attacks[name], canary_file
    rss = _maxrss_mb()
    start = time.monotonic()
    try:
        result, error = INPUTS[entry](attack.data), None
    except EspiError as exc:
        result, error = None, str(exc)
    elapsed = time.monotonic() - start
    if attack.problem is not None:
        assert error is not None, f"{entry} accepted {name}"
        assert re.search(attack.problem, error), error
    elif error is not None:   # inert documents may lack what the reader wants, but not because of the attack
        assert "DOCTYPE" not in error and "XInclude" not in error, error
    _secret_free(secret, result, error)
    assert elapsed < SECONDS, f"{entry} took {elapsed:.1f} s on {name}"
    assert _maxrss_mb() - rss < MEGABYTES


@pytest.mark.parametrize("name", [n for n in ATTACK_NAMES if "UTF-16" not in n])
def test_the_run_page_shows_attack_bodies_as_they_came(name, attacks, canary_file):
    """exchanges.pretty lays out a body for reading with the same safe parser: an attack is
    shown as it came, never expanded."""
    attack, (_, secret) = attacks[name], canary_file
    text = attack.data.decode("utf-8", "replace")
    start = time.monotonic()
    shown = exchanges.pretty(text, "application/atom+xml")
    assert time.monotonic() - start < SECONDS
    _secret_free(secret, shown)
    if attack.problem is not None:
        assert shown == text


DOCTYPE_ATTACKS = ["file XXE", "parameter-entity exfiltration", "billion laughs", "external DTD (SYSTEM)",
                   "DOCTYPE after a comment", "DOCTYPE after a processing instruction"]


@pytest.mark.parametrize("name", DOCTYPE_ATTACKS)
def test_a_doctype_split_across_pieces_is_still_refused(name, attacks, canary_file):
    """The streaming reader meets the DOCTYPE cut at every byte of ``<!DOCTYPE`` and in one-byte
    and seven-byte pieces: refused before the parser sees its declarations."""
    data, secret = attacks[name].data, canary_file[1]
    splits = [xml_attacks.split_doctype_pieces(data, cut) for cut in range(len("<!DOCTYPE") + 1)]
    for pieces in splits + [_in_pieces(data, 1), _in_pieces(data, 7)]:
        for read in (read_usage, lambda f: list(iter_interval_readings(f))):
            with pytest.raises(EspiError, match=xml_attacks.DOCTYPE) as info:
                read(Pieces(list(pieces)))
            _secret_free(secret, info.value)


def test_the_12_mb_text_node_stays_within_memory(attacks):
    """Measured in a fresh process, so the peak is this document's and nothing else's."""
    import subprocess
    import sys

    code = (
        "import resource, sys\n"
        "sys.path.insert(0, 'tests')\n"
        "from pathlib import Path\n"
        "import xml_attacks\n"
        "from demo.espi.parse import EspiError, parse_usage_points\n"
        "from demo.espi.reader import read_usage\n"
        "data = xml_attacks.huge_text_node(Path('/nonexistent'), 'http://127.0.0.1:9').encode()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "for read in (parse_usage_points, read_usage):\n"
        "    try:\n"
        "        read(data)\n"
        "        sys.exit('accepted')\n"
        "    except EspiError:\n"
        "        pass\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr + out.stdout
    assert int(out.stdout.strip()) < MEGABYTES


# ---------------------------------------------------------------- controls: the corpus is live


def test_control_an_unsafe_parser_would_read_the_canary(attacks, canary_file):
    """Without the project's options lxml does read the file: the canary proves something."""
    unsafe = etree.XMLParser(resolve_entities=True, load_dtd=True, no_network=True)
    root = etree.fromstring(attacks["file XXE"].data, unsafe)
    assert canary_file[1] in etree.tostring(root, encoding="unicode")


def test_control_the_canary_server_counts(canary_server):
    import requests

    assert requests.get(canary_server.url + "/control", timeout=5).status_code == 200
    assert canary_server.hits == ["GET /canary/control"]
    canary_server.hits.clear()


# ---------------------------------------------------------------- over HTTP: a fake custodian

RESOURCE = "/DataCustodian/espi/1_1/resource"
ATOM, ESPI = xml_attacks.ATOM, xml_attacks.ESPI


def _usage_points(base: str, padding: int = 0) -> bytes:
    return (f'<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="{ATOM}"><id>urn:uuid:f</id>'
            f"<title>UsagePoint</title>" + " " * padding
            + f'<entry><id>urn:uuid:u</id><link rel="self" href="{base}{RESOURCE}/Subscription/77/UsagePoint/1"/>'
            f'<title>Meter</title><content><UsagePoint xmlns="{ESPI}"><ServiceCategory><kind>0</kind>'
            f"</ServiceCategory></UsagePoint></content></entry></feed>").encode()


class FakeCustodian:
    """A data custodian on loopback: ``/oauth/authorize`` sends the browser straight back with a
    code, ``/oauth/token`` answers a normal token, and the ESPI resources are served from
    ``self.bodies`` ("authorization", "meters", "meter data") or a default, a ``"drip"`` body
    one byte every 0.1 s, an ``("unsized", bytes)`` body without Content-Length."""

    def __init__(self) -> None:
        self.bodies: dict[str, object] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(QuietHandler):

            def do_POST(self):  # noqa: N802
                fake.requests.append("POST " + self.path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                base = fake.url + RESOURCE
                token = {"access_token": "fake-access-" + uuid.uuid4().hex, "token_type": "Bearer",
                         "expires_in": 3600, "refresh_token": "fake-refresh-" + uuid.uuid4().hex,
                         "scope": "FB=4_16", "resourceURI": base + "/Batch/Subscription/77",
                         "authorizationURI": base + "/Authorization/77"}
                self._send(200, json.dumps(token).encode(), "application/json", {"Cache-Control": "no-store"})

            def do_GET(self):  # noqa: N802
                fake.requests.append("GET " + self.path)
                path = self.path.split("?", 1)[0]
                if path == "/oauth/authorize":
                    from urllib.parse import parse_qs, urlencode, urlsplit

                    q = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                    target = q["redirect_uri"] + "?" + urlencode({"code": "fake-code", "state": q["state"]})
                    self.send_response(302)
                    self.send_header("Location", target)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "/Authorization/" in path:
                    which, default = "authorization", authorization_xml(fake.url)
                elif path.endswith("/UsagePoint"):
                    which, default = "meters", _usage_points(fake.url)
                elif "/Batch/Subscription/" in path:
                    which, default = "meter data", _usage_points(fake.url)
                else:
                    self._send(404, b"", "text/plain")
                    return
                body = fake.bodies.get(which, default)
                if body == "drip":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/atom+xml")
                    self.send_header("Content-Length", "100000")
                    self.end_headers()
                    try:
                        for _ in range(100000):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                            time.sleep(0.1)
                    except OSError:   # the site hung up: what we want
                        return
                    return
                if isinstance(body, tuple):   # ("unsized", bytes): no Content-Length, close at the end
                    self.send_response(200)
                    self.send_header("Content-Type", "application/atom+xml")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    try:
                        for i in range(0, len(body[1]), 65536):
                            self.wfile.write(body[1][i:i + 65536])
                    except OSError:
                        pass
                    return
                self._send(200, body, "application/atom+xml")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def fake():
    custodian = FakeCustodian()
    yield custodian
    custodian.close()


def _servers(tmp_path_factory, fake, **caps):
    return start_servers(tmp_path_factory.mktemp("xml-attacks"), authorize_url=fake.url + "/oauth/authorize",
                         token_url=fake.url + "/oauth/token", http_timeout=5.0, **caps)


@pytest.fixture(scope="module")
def site(tmp_path_factory, fake):
    live, servers = _servers(tmp_path_factory, fake)
    yield live
    for srv in servers:
        srv.shutdown()


@pytest.fixture(scope="module")
def capped_site(tmp_path_factory, fake):
    """The same site with small caps: 200 kB a body, 1.5 s a download."""
    live, servers = _servers(tmp_path_factory, fake, http_max_body=200_000, http_max_seconds=1.5)
    yield live
    for srv in servers:
        srv.shutdown()


def _run(visitor: Visitor, live, fake, **bodies):
    fake.bodies = bodies
    try:
        page = connect(visitor, live)
    finally:
        fake.bodies = {}
    assert page.status == 200 and "/runs/" in page.url, (page.status, page.url, page.text[:300])
    return page


def _run_json(visitor: Visitor, page) -> dict:
    resp = visitor.http.get(page.url + ".json", timeout=20)
    assert resp.status_code == 200
    return resp.json()


HTTP_ATTACKS = ["file XXE", "parameter-entity exfiltration", "billion laughs", "external DTD (PUBLIC)",
                "file XXE, UTF-16LE", "300-deep nesting", "12 MB text node", "undeclared entity"]


@pytest.mark.parametrize("target", ["authorization", "meters"])
@pytest.mark.parametrize("name", HTTP_ATTACKS)
def test_an_attack_from_the_custodian_is_explained_on_the_run_page(site, fake, visitor, attacks, canary_file,
                                                                     name, target):
    attack, secret = attacks[name], canary_file[1]
    start = time.monotonic()
    page = _run(visitor, site, fake, **{target: attack.data})
    assert time.monotonic() - start < 4 * SECONDS
    status = page.text_of("status")
    assert "Something went wrong" in status and "bad_xml" in status, status
    assert re.search(attack.problem, status), status
    run = _run_json(visitor, page)
    assert run["status"] == "error" and run["error"]["error"] == "bad_xml"
    assert run["error"]["step"] == target
    failed = [x for x in run["exchanges"] if x["url"] and (
        "/Authorization/" in x["url"] if target == "authorization" else x["url"].endswith("/UsagePoint"))]
    assert failed and failed[-1]["status"] == 200, "the exchange that failed is recorded"
    assert run["error"]["exchange"] == failed[-1]["seq"]
    _secret_free(secret, page.text, json.dumps(run))


@pytest.fixture(scope="module")
def meter_run(site, fake):
    """A run whose meter list read fine; its meter page then gets the attacks."""
    v = Visitor()
    page = _run(v, site, fake)
    run = _run_json(v, page)
    assert run["status"] == "authorized" and [m["usage_point_id"] for m in run["meters"]] == ["1"], run["error"]
    yield v, page
    v.http.close()


@pytest.mark.parametrize("name", HTTP_ATTACKS)
def test_an_attack_as_meter_data_is_explained_on_the_meter_page(meter_run, fake, attacks, canary_file, name):
    visitor, run_page = meter_run
    attack, secret = attacks[name], canary_file[1]
    fake.bodies = {"meter data": attack.data}
    try:
        start = time.monotonic()
        page = visitor.get(run_page.url + "/meters/1")
        assert time.monotonic() - start < 4 * SECONDS
    finally:
        fake.bodies = {}
    assert page.status == 200
    status = page.text_of("status")
    assert "could not be read" in status and "bad_xml" in status, status
    assert re.search(attack.problem, status), status
    run = _run_json(visitor, run_page)
    assert any("/Batch/Subscription/77/UsagePoint/1" in (x["url"] or "") and x["status"] == 200
               for x in run["exchanges"]), "the meter data exchange is recorded"
    _secret_free(secret, page.text, json.dumps(run))


@pytest.mark.parametrize("how", ["with Content-Length", "without Content-Length"])
def test_an_oversized_body_is_cut_off_at_the_cap(capped_site, fake, visitor, how):
    big = _usage_points(fake.url, padding=400_000)
    page = _run(visitor, capped_site, fake, meters=big if how == "with Content-Length" else ("unsized", big))
    status = page.text_of("status")
    assert "too_large" in status and "200,000 bytes" in status and "GBC_HTTP_MAX_BODY" in status, status
    run = _run_json(visitor, page)
    assert run["error"]["error"] == "too_large" and run["error"]["step"] == "meters"
    assert any((x["url"] or "").endswith("/UsagePoint") for x in run["exchanges"])


def test_a_body_under_the_cap_still_reads(capped_site, fake, visitor):
    page = _run(visitor, capped_site, fake, meters=_usage_points(fake.url, padding=100_000))
    assert _run_json(visitor, page)["status"] == "authorized"


def test_a_slow_drip_is_cut_off_at_the_total_time(capped_site, fake, visitor):
    """One byte every 0.1 s of a 100 kB body: each wait is short (no read timeout), the whole
    would take hours; the 1.5 s cap ends it."""
    start = time.monotonic()
    page = _run(visitor, capped_site, fake, meters="drip")
    elapsed = time.monotonic() - start
    status = page.text_of("status")
    assert "timeout" in status and "1.5 s" in status and "GBC_HTTP_MAX_SECONDS" in status, status
    assert elapsed < 1.5 + 4 * SECONDS
    run = _run_json(visitor, page)
    assert run["error"]["error"] == "timeout" and run["error"]["step"] == "meters"


def test_a_slow_drip_of_meter_data_is_cut_off_too(capped_site, fake):
    v = Visitor()
    try:
        run_page = _run(v, capped_site, fake)
        fake.bodies = {"meter data": "drip"}
        start = time.monotonic()
        page = v.get(run_page.url + "/meters/1")
        elapsed = time.monotonic() - start
    finally:
        fake.bodies = {}
        v.http.close()
    assert page.status == 200 and "GBC_HTTP_MAX_SECONDS" in page.text_of("status")
    assert elapsed < 1.5 + 4 * SECONDS


# ---------------------------------------------------------------- the caps, without HTTP servers of the site


def test_limits_come_from_the_settings_and_cannot_be_switched_off():
    assert gbc.Limits.from_settings({"http_max_body": 1000, "http_max_seconds": 2}) == gbc.Limits(1000, 2.0)
    assert gbc.Limits.from_settings({"http_max_body": 0, "http_max_seconds": -1}) == gbc.Limits()
    assert gbc.Limits.from_settings({}) == gbc.Limits(gbc.MAX_BODY, gbc.MAX_SECONDS)


def test_fetch_xml_applies_explicit_limits(fake):
    fake.bodies = {"meters": "drip"}
    outcome: list = []

    def fetch() -> None:
        try:
            gbc.fetch_xml(fake.url + RESOURCE + "/Subscription/77/UsagePoint", "t", step="meters", timeout=5,
                          limits=gbc.Limits(max_body=10**6, max_seconds=0.5))
        except gbc.CustodianError as exc:
            outcome.append(exc)

    try:
        worker = threading.Thread(target=fetch, daemon=True)   # a hang fails the test instead of stalling it
        worker.start()
        worker.join(0.5 + SECONDS)
        assert not worker.is_alive(), "the slow drip was not cut off"
    finally:
        fake.bodies = {}
    (error,) = outcome
    assert error.kind == "timeout" and "within 0.5 s" in error.message
    with pytest.raises(gbc.CustodianError, match="100 bytes") as info:
        gbc.fetch_xml(fake.url + RESOURCE + "/Subscription/77/UsagePoint", "t", step="meters", timeout=5,
                      limits=gbc.Limits(max_body=100, max_seconds=5))
    assert info.value.kind == "too_large"

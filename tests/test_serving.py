"""Production serving: real gunicorn processes with config/gunicorn.conf.py (health and readiness,
JSON logs with request ids and no secrets, graceful SIGTERM), plus the pieces on their own
(demo/jsonlog.py, demo/health.py, the log_format and server settings)."""
from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from demo import jsonlog
from demo.config import ConfigError, load_config

from conftest import Page

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "config" / "gunicorn.conf.py"
SECRET_KEY = "serving-test-secret-key-0123456789"
QUERY_SECRET = "QSECRETvalue0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gunicorn:
    """One gunicorn master serving ``target`` with the repository's conf file; logs in files."""

    def __init__(self, tmp: Path, name: str, target: str, env: dict, extra: tuple[str, ...] = ()) -> None:
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        cmd = [sys.executable, "-m", "gunicorn", "-c", str(CONF), *extra, target]
        with self.out.open("wb") as out, self.err.open("wb") as err:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)

    def wait_answering(self, url: str, seconds: float = 30) -> None:
        deadline = time.monotonic() + seconds
        while True:
            try:
                requests.get(url + "/healthz", timeout=2)
                return
            except requests.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"gunicorn did not start:\n{self.err.read_text()[-3000:]}") from None
                time.sleep(0.1)

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode

    def logs(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def json_lines(self) -> list[dict]:
        """Every log line (stdout and stderr); each must be one JSON object."""
        lines = [line for line in self.logs().splitlines() if line.strip()]
        parsed = []
        for line in lines:
            try:
                parsed.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON log line: {line[:300]}") from None
        return parsed


def base_env(tmp: Path, site_port: int, sandbox_port: int, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GBC_", "GUNICORN_"))}
    env.update({
        "GBC_INSTANCE_PATH": str(tmp),
        "GBC_SECRET_KEY": SECRET_KEY,
        "GBC_SITE_PORT": str(site_port),
        "GBC_SANDBOX_PORT": str(sandbox_port),
        "GBC_LOG_FORMAT": "json",
        "GBC_WORKERS": "2",
        "GBC_THREADS": "4",
        "GBC_SANDBOX_WEBHOOK_POLL": "0.2",
        "GBC_SANDBOX_READY_DELAY": "0",
        **extra,
    })
    return env


# ---------------------------------------------------------------- both apps under gunicorn

@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("serving")
    site_port, sandbox_port = free_port(), free_port()
    env = base_env(tmp, site_port, sandbox_port)
    servers = {"site": Gunicorn(tmp, "site", "app:site", env),
               "sandbox": Gunicorn(tmp, "sandbox", "app:sandbox", env)}
    urls = {"site": f"http://127.0.0.1:{site_port}", "sandbox": f"http://127.0.0.1:{sandbox_port}"}
    try:
        for name, server in servers.items():
            server.wait_answering(urls[name])
        yield servers, urls
    finally:
        for server in servers.values():
            server.stop()


@pytest.mark.parametrize("name", ["site", "sandbox"])
def test_healthz_and_readyz(pair, name):
    _servers, urls = pair
    resp = requests.get(urls[name] + "/healthz", timeout=5)
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["Cache-Control"] == "no-store"
    resp = requests.get(urls[name] + "/readyz", timeout=5)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["status"] == "ready" and body["checks"]["database"] == "ok"
    # the sandbox rate-limits its forms, so its limiter's storage is checked too
    assert ("ratelimit_storage" in body["checks"]) == (name == "sandbox")
    assert resp.headers["Cache-Control"] == "no-store"
    assert SECRET_KEY not in resp.text and "sqlite" not in resp.text


@pytest.mark.parametrize("name", ["site", "sandbox"])
def test_health_never_rate_limited(pair, name):
    _servers, urls = pair
    with requests.Session() as http:
        statuses = {http.get(urls[name] + "/healthz", timeout=5).status_code for _ in range(150)}
    assert statuses == {200}


def test_request_id_round_trip(pair):
    _servers, urls = pair
    sent = "probe.ID-1_abc"
    resp = requests.get(urls["site"] + "/healthz", headers={"X-Request-ID": sent}, timeout=5)
    assert resp.headers["X-Request-ID"] == sent
    for forged in ("bad id!<script>", "x" * 65, "a/b", "é"):
        got = requests.get(urls["sandbox"] + "/healthz", headers={"X-Request-ID": forged.encode()}, timeout=5)
        rid = got.headers["X-Request-ID"]
        assert rid != forged and len(rid) == 32 and all(c in "0123456789abcdef" for c in rid)
    a, b = (requests.get(urls["site"] + "/healthz", timeout=5).headers["X-Request-ID"] for _ in range(2))
    assert a != b


def test_trusted_hosts_apply_to_health(pair):
    _servers, urls = pair
    resp = requests.get(urls["site"] + "/healthz", headers={"Host": "evil.example"}, timeout=5)
    assert resp.status_code == 400
    assert resp.headers.get("X-Request-ID")   # a refused request has an id too


def test_forwarded_proto_from_loopback_is_ignored(pair):
    """proxy_hops is 0: gunicorn must not take X-Forwarded-Proto from a loopback client as https."""
    _servers, urls = pair
    resp = requests.get(urls["site"] + "/healthz", headers={"X-Forwarded-Proto": "https"}, timeout=5)
    assert "Strict-Transport-Security" not in resp.headers


def test_access_logs_are_json_without_query(pair):
    servers, urls = pair
    rid = "access-log-probe-1"
    requests.get(urls["sandbox"] + f"/readyz?access_token={QUERY_SECRET}&code={QUERY_SECRET}",
                 headers={"X-Request-ID": rid}, timeout=5)
    requests.get(urls["site"] + f"/no-such-page?state={QUERY_SECRET}", timeout=5)
    time.sleep(0.3)
    for name, server in servers.items():
        lines = server.json_lines()
        assert lines, name
        for entry in lines:
            assert {"time", "level", "logger", "message"} <= entry.keys()
            assert "?" not in entry.get("path", "")
        access = [e for e in lines if e["logger"] == "gunicorn.access"]
        assert access, name
        for entry in access:
            assert entry["request_id"] and entry["method"] in ("GET", "HEAD") and entry["path"].startswith("/")
            assert isinstance(entry["status"], int) and isinstance(entry["duration_ms"], float)
        text = server.logs()
        assert QUERY_SECRET not in text and SECRET_KEY not in text
    mine = [e for e in servers["sandbox"].json_lines() if e.get("request_id") == rid]
    assert [(e["path"], e["status"]) for e in mine] == [("/readyz", 200)]
    missing = [e for e in servers["site"].json_lines() if e.get("path") == "/no-such-page"]
    assert missing and missing[0]["status"] == 404


def test_sigterm_stops_both_cleanly(pair):
    """Last in the module: SIGTERM ends both masters with status 0 and stops the webhook thread."""
    servers, _urls = pair
    for name, server in servers.items():
        started = time.monotonic()
        assert server.stop() == 0, server.logs()[-3000:]
        assert time.monotonic() - started < 15, name
    messages = [e["message"] for e in servers["sandbox"].json_lines()]
    assert sum("webhook delivery stopped" in m for m in messages) == 2   # one per worker
    assert not any("webhook delivery stopped" in e["message"] for e in servers["site"].json_lines())
    assert not any(e["level"] in ("ERROR", "CRITICAL") for s in servers.values() for e in s.json_lines())


# ---------------------------------------------------------------- readiness failing

UNREACHABLE_DB = """
import sys
sys.path.insert(0, {root!r})
from sqlalchemy import create_engine
import app as entry

# the site with a database URL in a directory that does not exist (nothing creates it)
site = entry.site
site.extensions["gbc_site"].db.engine = create_engine("sqlite:///{missing}/site.sqlite3")
"""


def test_readyz_503_when_a_store_does_not_answer(tmp_path):
    pytest.importorskip("redis")
    (tmp_path / "unreachable_db.py").write_text(UNREACHABLE_DB.format(root=str(ROOT),
                                                                      missing=str(tmp_path / "missing" / "dir")))
    site_port, sandbox_port, closed = free_port(), free_port(), free_port()
    env = base_env(tmp_path, site_port, sandbox_port, GBC_WORKERS="1")
    site = Gunicorn(tmp_path, "site", "unreachable_db:site", env, ("--pythonpath", str(tmp_path)))
    sandbox = Gunicorn(tmp_path, "sandbox", "app:sandbox",
                       {**env, "GBC_RATELIMIT_STORAGE_URL": f"redis://127.0.0.1:{closed}/0"})
    urls = (f"http://127.0.0.1:{site_port}", f"http://127.0.0.1:{sandbox_port}")
    try:
        for server, url in zip((site, sandbox), urls, strict=True):
            server.wait_answering(url)
            assert requests.get(url + "/healthz", timeout=5).status_code == 200   # alive all the same
        resp = requests.get(urls[0] + "/readyz", headers={"X-Request-ID": "ready-probe-7"}, timeout=10)
        assert resp.status_code == 503
        body = resp.json()
        assert body["status"] == "unavailable" and body["checks"]["database"].startswith("unavailable")
        assert "database" in body["reason"] and "missing" not in resp.text   # no paths or URLs
        assert resp.headers["Cache-Control"] == "no-store"

        resp = requests.get(urls[1] + "/readyz", timeout=10)
        assert resp.status_code == 503
        body = resp.json()
        assert body["checks"]["database"] == "ok"
        assert body["checks"]["ratelimit_storage"].startswith("unavailable")
        assert str(closed) not in resp.text
    finally:
        assert site.stop() == 0 and sandbox.stop() == 0
    # the warning carries the request's id (the filter on the handler), like every record of it
    warnings = [e for e in site.json_lines() if e["logger"] == "demo.health"]
    assert warnings and warnings[0]["request_id"] == "ready-probe-7" and warnings[0]["path"] == "/readyz"
    assert warnings[0]["level"] == "WARNING"


# ---------------------------------------------------------------- graceful shutdown

class SlowToken(BaseHTTPRequestHandler):
    """A custodian token endpoint that takes its time, then refuses the code."""

    delay = 3.0
    arrived = threading.Event()

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        SlowToken.arrived.set()
        time.sleep(self.delay)
        body = b'{"error": "invalid_grant", "error_description": "slow test custodian"}'
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_sigterm_lets_a_slow_request_finish(tmp_path):
    slow = ThreadingHTTPServer(("127.0.0.1", 0), SlowToken)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    site_port = free_port()
    env = base_env(tmp_path, site_port, free_port(), GBC_WORKERS="1", GBC_LOG_LEVEL="DEBUG",
                   GBC_TOKEN_URL=f"http://127.0.0.1:{slow.server_port}/oauth/token",
                   GBC_HTTP_TIMEOUT="8", GBC_GRACEFUL_TIMEOUT="12")
    site = Gunicorn(tmp_path, "site", "app:site", env)
    url = f"http://127.0.0.1:{site_port}"
    code = "CODE" + QUERY_SECRET
    try:
        site.wait_answering(url)
        http = requests.Session()
        home = Page(http.get(url + "/", timeout=10))
        form = home.form("/connect")
        start = http.post(url + "/connect", data=form.fields, allow_redirects=False, timeout=10)
        assert start.status_code == 303, start.text[:500]
        state = parse_qs(urlsplit(start.headers["Location"]).query)["state"][0]

        result: dict = {}

        def callback():
            began = time.monotonic()
            try:
                resp = http.get(url + "/callback", params={"code": code, "state": state},
                                allow_redirects=False, timeout=30)
                result["status"] = resp.status_code
            except requests.RequestException as exc:   # a cut connection: the test fails below
                result["error"] = repr(exc)
            result["seconds"] = time.monotonic() - began

        SlowToken.arrived.clear()
        caller = threading.Thread(target=callback)
        caller.start()
        assert SlowToken.arrived.wait(10), "the site never called the token endpoint"
        stopping = time.monotonic()
        site.proc.send_signal(signal.SIGTERM)
        caller.join(20)
        assert result.get("status") == 303, result      # answered, then off to the run page
        assert result["seconds"] >= SlowToken.delay - 0.5
        assert site.proc.wait(15) == 0
        took = time.monotonic() - stopping
        assert SlowToken.delay - 1 <= took < 12, took    # waited for it, within graceful_timeout
    finally:
        site.stop()
        slow.shutdown()
    text = site.logs()
    assert code not in text and state not in text and SECRET_KEY not in text
    callbacks = [e for e in site.json_lines() if e.get("path") == "/callback" and e["logger"] == "gunicorn.access"]
    assert callbacks and callbacks[0]["status"] == 303


# ---------------------------------------------------------------- the pieces on their own

def test_request_id_accepts_only_sane_tokens():
    assert jsonlog.request_id("abc-DEF_1.2") == "abc-DEF_1.2"
    assert jsonlog.request_id("x" * 64) == "x" * 64
    for bad in (None, "", "x" * 65, "a b", "a\nb", "ü", "id;drop", "<x>"):
        rid = jsonlog.request_id(bad)
        assert rid != bad and len(rid) == 32
    assert jsonlog.request_id(None) != jsonlog.request_id(None)


def _capture(log_format: str):
    stream = io.StringIO()
    logger = logging.getLogger("serving-test.outside-logsafe")   # no SecretFilter on this one
    logger.handlers[:] = [jsonlog.handler(log_format, stream)]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, stream


def test_json_formatter_fields_request_and_secrets():
    logger, stream = _capture("json")
    jsonlog.bind("rid-1", "POST", "/callback?code=abc")
    try:
        logger.info("token response %s", {"access_token": "AT-secret-value-0001", "token_type": "Bearer"})
        try:
            raise ValueError("refresh_token=RT-secret-value-0002 rejected")
        except ValueError:
            logger.exception("failed with Authorization: Bearer BEARERsecret0003")
    finally:
        jsonlog.unbind()
    logger.info("after the request")
    first, second, third = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["request_id"] == "rid-1" and first["method"] == "POST" and first["path"] == "/callback"
    assert first["level"] == "INFO" and first["logger"] == "serving-test.outside-logsafe"
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert "AT-secret-value-0001" not in first["message"] and "0001" in first["message"]
    assert "RT-secret-value-0002" not in second["exception"] and "ValueError" in second["exception"]
    assert "BEARERsecret0003" not in second["message"]
    assert "request_id" not in third and "path" not in third


def test_json_formatter_reads_gunicorn_access_atoms():
    atoms = {"m": "GET", "U": "/callback", "q": f"code={QUERY_SECRET}", "r": f"GET /callback?code={QUERY_SECRET}",
             "s": "303", "D": 12345, "h": "127.0.0.1", "{x-request-id}o": "rid-9"}
    fields = jsonlog.access_fields(atoms)
    assert fields == {"method": "GET", "path": "/callback", "status": 303, "duration_ms": 12.345,
                      "request_id": "rid-9", "remote_addr": "127.0.0.1"}
    logger, stream = _capture("json")
    logger.info("%(m)s %(U)s %(s)s", atoms, extra=fields)
    entry = json.loads(stream.getvalue())
    assert entry == {**entry, **fields, "message": "GET /callback 303"}
    assert QUERY_SECRET not in stream.getvalue()


def test_text_formatter_masks_too():
    logger, stream = _capture("text")
    logger.warning("client_secret=SECRETvalue00042 sent")
    assert "SECRETvalue00042" not in stream.getvalue() and "0042" in stream.getvalue()


def test_server_settings_are_checked():
    settings = load_config(env={"GBC_LOG_FORMAT": "json", "GBC_WORKERS": "3", "GBC_THREADS": "16",
                                "GBC_BIND": "0.0.0.0:8000", "GBC_GRACEFUL_TIMEOUT": "30"})
    assert (settings["log_format"], settings["workers"], settings["threads"], settings["bind"],
            settings["graceful_timeout"]) == ("json", 3, 16, "0.0.0.0:8000", 30.0)
    assert load_config(env={})["log_format"] == "text"
    for env in ({"GBC_LOG_FORMAT": "xml"}, {"GBC_WORKERS": "0"}, {"GBC_THREADS": "1000"},
                {"GBC_GRACEFUL_TIMEOUT": "-1"}):
        with pytest.raises(ConfigError):
            load_config(env=env)


def test_gunicorn_conf_derives_timeouts(monkeypatch):
    import runpy

    monkeypatch.setattr(sys, "argv", ["gunicorn", "-c", str(CONF), "app:sandbox"])
    for key in [k for k in os.environ if k.startswith("GBC_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("GBC_HTTP_TIMEOUT", "7")
    monkeypatch.setenv("GBC_HTTP_MAX_SECONDS", "40")
    monkeypatch.setenv("GBC_SANDBOX_PORT", "5111")
    conf = runpy.run_path(str(CONF))
    assert conf["bind"] == ["127.0.0.1:5111"] and conf["worker_class"] == "gthread"
    assert conf["timeout"] == 2 * 7 + 40 + 10 and conf["graceful_timeout"] == 2 * 7 + 40 + 5
    assert "%(U)s" in conf["access_log_format"] and "%(r)s" not in conf["access_log_format"]
    assert "%(q)s" not in conf["access_log_format"]
    assert conf["forwarded_allow_ips"] == "" and conf["secure_scheme_headers"] == {}


def test_compose_file_wires_the_services():
    yaml = pytest.importorskip("yaml")
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"site", "sandbox", "postgres", "redis"} <= services.keys()
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    for name, target in (("site", "app:site"), ("sandbox", "app:sandbox")):
        svc = services[name]
        assert svc["command"][-1] == target and "config/gunicorn.conf.py" in svc["command"]
        env = svc["environment"]
        assert env["GBC_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["GBC_SANDBOX_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["GBC_RATELIMIT_STORAGE_URL"].startswith("redis://")
        assert env["GBC_SECRET_KEY"].startswith("${GBC_SECRET_KEY:?")   # from .env, never in the file
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert ".env" in ignored and (ROOT / ".env.example").exists()
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile and "\nUSER " in dockerfile and "HEALTHCHECK" in dockerfile
    assert "/healthz" in dockerfile

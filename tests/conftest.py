"""Shared fixtures: both applications served over real HTTP on loopback, each on
its own port (two origins), and a small cookie-keeping 'browser' that fills in
and submits the HTML forms it is given."""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

import lxml.html
import pytest
import requests

from demo.cli import serve
from demo.config import load_config

FIXTURES = Path(os.environ.get("GBC_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))

# Storage backends. GBC_TEST_POSTGRES_URL (postgresql+psycopg://user:password@127.0.0.1/db, a database the
# tests may fill: each use gets its own schema, dropped at the end) and GBC_TEST_REDIS_URL (redis://127.0.0.1:6379/0:
# the tests delete the rate-limit keys of the apps there) name them; tests needing one skip without it, and
# fail with GBC_REQUIRE_BACKENDS=1 (CI). GBC_TEST_LIVE_BACKENDS=1 also puts every app start_servers starts on
# them (.ci/run's second run of the flow tests).
POSTGRES_URL = os.environ.get("GBC_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("GBC_TEST_REDIS_URL", "")
LIVE_BACKENDS = os.environ.get("GBC_TEST_LIVE_BACKENDS") == "1"
_SCHEMAS: list[str] = []


def backend_unavailable(reason: str):
    if os.environ.get("GBC_REQUIRE_BACKENDS") == "1":
        pytest.fail(f"GBC_REQUIRE_BACKENDS=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def fresh_postgres(label: str = "t") -> str:
    """The URL of a new, empty schema in the test database (its search_path), dropped after the session."""
    import secrets

    import sqlalchemy as sa

    if not POSTGRES_URL:
        backend_unavailable("GBC_TEST_POSTGRES_URL is not set (a PostgreSQL database for the tests)")
    name = f"gbc_{label}_{secrets.token_hex(4)}"
    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    finally:
        engine.dispose()
    _SCHEMAS.append(name)
    url = sa.make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={name}"})
    return url.render_as_string(hide_password=False)


def fresh_redis() -> str:
    """GBC_TEST_REDIS_URL with the apps' rate-limit counters deleted (the apps' key prefixes are fixed)."""
    if not REDIS_URL:
        backend_unavailable("GBC_TEST_REDIS_URL is not set (a Redis for the tests)")
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match="LIMITS*gbc-*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture(scope="session", autouse=True)
def _drop_test_schemas():
    """Drop the PostgreSQL schemas fresh_postgres made (nothing to do without GBC_TEST_POSTGRES_URL)."""
    yield
    if not _SCHEMAS:
        return
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_URL)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("SET LOCAL lock_timeout = '10s'"))
            for name in _SCHEMAS:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    finally:
        engine.dispose()


class _Slot:
    """A WSGI app filled in after the server knows its port."""

    app = None

    def __call__(self, environ, start_response):
        return self.app(environ, start_response)


@dataclass
class LiveServers:
    settings: dict
    site_url: str
    sandbox_url: str
    site_app: object
    sandbox_app: object


def start_servers(tmp: Path, **overrides) -> tuple[LiveServers, list]:
    from demo.sandbox import create_app as create_sandbox
    from demo.site import create_app as create_site

    if LIVE_BACKENDS:   # both apps on PostgreSQL and Redis (unless the test chose its own)
        overrides = {"database_url": fresh_postgres("site"), "sandbox_database_url": fresh_postgres("sandbox"),
                     "ratelimit_storage_url": fresh_redis(), **overrides}
    slots = (_Slot(), _Slot())
    servers = [serve("127.0.0.1", 0, slot) for slot in slots]
    site_port, sandbox_port = (srv.server_port for srv in servers)
    settings = load_config({
        "instance_path": str(tmp),
        "site_port": site_port,
        "sandbox_port": sandbox_port,
        "secret_key": "test-secret-key",
        "sandbox_ready_delay": 0,
        "sandbox_webhook_retry_base": 1,
        "sandbox_webhook_poll": 0.2,
        **overrides,
    }, env={})
    site_app, sandbox_app = create_site(settings), create_sandbox(settings)
    slots[0].app, slots[1].app = site_app, sandbox_app
    for srv in servers:
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    live = LiveServers(settings, settings["site_url"], settings["sandbox_url"], site_app, sandbox_app)
    return live, servers + [_StopDispatcher(sandbox_app), _CloseDatabases(site_app, sandbox_app)]


class _CloseDatabases:
    """Closes both apps' database connections with the servers (PostgreSQL counts them)."""

    def __init__(self, *apps) -> None:
        self.apps = apps

    def shutdown(self) -> None:
        for app in self.apps:
            for name in ("gbc_site", "gbc_sandbox"):
                context = app.extensions.get(name)
                if context is not None:
                    context.db.dispose()


class _StopDispatcher:
    """Stops the sandbox's webhook delivery thread with the servers (``srv.shutdown()``)."""

    def __init__(self, app) -> None:
        self.app = app

    def shutdown(self) -> None:
        dispatcher = self.app.extensions.get("gbc_webhooks")
        if dispatcher is not None:
            dispatcher.stop()


@pytest.fixture(scope="session")
def live(tmp_path_factory):
    live, servers = start_servers(tmp_path_factory.mktemp("instance"))
    yield live
    for srv in servers:
        srv.shutdown()


class Page:
    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self.url = response.url
        self.status = response.status_code
        self.text = response.text
        ctype = response.headers.get("Content-Type", "")
        self.doc = lxml.html.fromstring(response.content) if "html" in ctype and response.content else None

    def text_of(self, selector_id: str) -> str | None:
        found = self.doc.get_element_by_id(selector_id, None) if self.doc is not None else None
        return None if found is None else " ".join(found.text_content().split())

    @property
    def body_text(self) -> str:
        return " ".join(self.doc.text_content().split()) if self.doc is not None else self.text

    def form(self, action_contains: str) -> Form:
        for form in self.doc.forms:
            if action_contains in (form.get("action") or ""):
                return Form(self, form)
        raise AssertionError(f"no form with action containing {action_contains!r} on {self.url}")


class Form:
    def __init__(self, page: Page, form) -> None:
        self.page = page
        self.form = form
        self.fields: list[tuple[str, str]] = []
        for el in form.inputs:
            name = el.get("name")
            if not name or el.get("disabled") is not None:
                continue
            kind = (el.get("type") or "").lower() if el.tag == "input" else el.tag
            if kind in ("submit", "button", "image"):
                continue
            if kind in ("checkbox", "radio"):
                if el.checked:
                    self.fields.append((name, el.get("value", "on")))
            elif el.tag == "select":
                selected = [o.get("value", o.text) for o in el.findall(".//option") if o.get("selected") is not None]
                if not selected and el.findall(".//option") and el.get("multiple") is None:
                    first = el.findall(".//option")[0]
                    selected = [first.get("value", first.text)]
                self.fields.extend((name, v) for v in selected)
            else:
                self.fields.append((name, el.value or ""))

    def set(self, name: str, *values: str) -> Form:
        self.fields = [(k, v) for k, v in self.fields if k != name] + [(name, str(v)) for v in values]
        return self

    def submit(self, visitor: Visitor, button: str | None = None) -> Page:
        data = list(self.fields)
        if button:
            data.append((button, button))
        action = urljoin(self.page.url, self.form.get("action") or self.page.url)
        method = (self.form.get("method") or "get").lower()
        if method == "post":
            return visitor.request("POST", action, data=data)
        return visitor.request("GET", action, params=data)


class Visitor:
    """A person's browser: keeps cookies for both origins and follows redirects."""

    def __init__(self) -> None:
        self.http = requests.Session()
        self.history: list[str] = []

    def request(self, method: str, url: str, **kwargs) -> Page:
        resp = self.http.request(method, url, timeout=20, **kwargs)
        self.history.extend(r.headers.get("Location", "") for r in resp.history)
        return Page(resp)

    def get(self, url: str, **kwargs) -> Page:
        return self.request("GET", url, **kwargs)


@pytest.fixture
def visitor():
    v = Visitor()
    yield v
    v.http.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium through Playwright, once per test module (see tests/browsing.py)."""
    from browsing import CHROMIUM, LAUNCH_ARGS, unavailable

    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:  # pragma: no cover - depends on the venv
        unavailable(f"playwright is not installed: {exc}")
    with sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        except Exception as exc:
            unavailable(f"could not launch {CHROMIUM}: {exc}")
        yield browser
        browser.close()

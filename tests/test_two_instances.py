"""Two instances of the demo site on different ports sharing one database (PostgreSQL with
GBC_TEST_POSTGRES_URL, and a SQLite file) and the secret key, as behind a load balancer: a flow
started on one completes on the other. The visitor's session cookie is signed with the shared key
and the run (its hashed state, encrypted PKCE verifier) is in the shared database."""
from __future__ import annotations

import threading
from urllib.parse import urlsplit

import pytest

from demo.cli import serve
from demo.config import load_config
from demo.site import create_app as create_site

from conftest import Visitor, _Slot, fresh_postgres, start_servers
from flow import TEST_IDS, connect, enter_otp


def another_site(tmp, live, **overrides):
    """One more demo site on its own port, configured like ``live``'s (same sandbox, same key)."""
    slot = _Slot()
    srv = serve("127.0.0.1", 0, slot)
    settings = load_config({
        "instance_path": str(tmp),
        "site_port": srv.server_port,
        "sandbox_port": live.settings["sandbox_port"],
        "secret_key": live.settings["secret_key"],
        "database_url": live.settings["database_url"],
        "sandbox_database_url": live.settings["sandbox_database_url"],
        **overrides,
    }, env={})
    slot.app = create_site(settings)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return settings["site_url"], srv, slot.app


@pytest.fixture(params=["sqlite", "postgres"])
def shared(request, tmp_path):
    """Instance A (site + sandbox) and instance B (a second site) on one shared database."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shared-site.sqlite3'}"
    else:
        url = fresh_postgres("two")
    live, servers = start_servers(tmp_path / "a", database_url=url, sandbox_webhooks=False)
    b_url, b_srv, b_app = another_site(tmp_path / "b", live)
    yield live, b_url
    b_srv.shutdown()
    b_app.extensions["gbc_site"].db.dispose()
    for srv in servers:
        srv.shutdown()


def consent_redirect(visitor: Visitor, page) -> str:
    """Authorize on the consent page and return where the sandbox sends the browser (not followed)."""
    form = page.form("/authorize/consent")
    action = page.url.split("/authorize/")[0] + form.form.get("action")
    resp = visitor.http.post(action, data=[*form.fields, ("authorize", "authorize")], allow_redirects=False,
                             timeout=20)
    assert resp.status_code in (302, 303), resp.text[:500]
    return resp.headers["Location"]


def on(origin: str, location: str) -> str:
    parts = urlsplit(location)
    return f"{origin}{parts.path}?{parts.query}"


def test_a_flow_started_on_one_instance_completes_on_the_other(shared, tmp_path):
    live, b_url = shared
    a_url = live.site_url
    assert urlsplit(a_url).port != urlsplit(b_url).port
    visitor = Visitor()
    page = enter_otp(visitor, connect(visitor, live, "phone", TEST_IDS["residential"]["phone"]))
    callback = consent_redirect(visitor, page)
    assert callback.startswith(a_url + "/callback?"), callback   # redirect_uri names instance A

    # an instance with its own database knows nothing of the run: the callback is refused there
    c_url, c_srv, c_app = another_site(tmp_path / "c", live, database_url=f"sqlite:///{tmp_path / 'c.sqlite3'}")
    try:
        assert visitor.get(on(c_url, callback)).status == 400
    finally:
        c_srv.shutdown()
        c_app.extensions["gbc_site"].db.dispose()

    # instance B shares the database and the key: it takes the callback, exchanges the code, reads the meters
    done = visitor.get(on(b_url, callback))
    assert done.status == 200, done.text[:1000]
    assert done.url.startswith(b_url + "/runs/"), done.url
    run_path = urlsplit(done.url).path
    from_b = visitor.get(b_url + run_path + ".json").response.json()
    assert from_b["status"] == "authorized"
    assert len(from_b["meters"]) == 1
    # and instance A shows the same run, finished
    from_a = visitor.get(a_url + run_path + ".json").response.json()
    assert from_a["status"] == "authorized"
    assert from_a["meters"] == from_b["meters"]
    # the callback is single-use across instances too
    assert visitor.get(on(a_url, callback)).status == 400

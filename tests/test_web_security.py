"""Web hardening shared by both apps (demo/web.py): trusted hosts, proxies (ProxyFix with
proxy_hops), and the security headers and cookie flags on every route of both apps.

tests/test_site_settings.py::test_security_headers checks the home page over real HTTP; here every
GET route of both apps is visited through Flask's test client, over http and https, with and
without embedding."""
from __future__ import annotations

import pytest
from flask import request, url_for
from werkzeug.routing import FloatConverter, IntegerConverter, UUIDConverter

from demo.config import ConfigError, load_config
from demo.sandbox import create_app as create_sandbox
from demo.site import create_app as create_site
from demo.web import host_is_trusted, trusted_hosts

CREATE = {"site": create_site, "sandbox": create_sandbox}


def settings_for(tmp_path, **overrides) -> dict:
    return load_config({"instance_path": str(tmp_path), "secret_key": "test-secret-key",
                        "sandbox_webhooks": False, **overrides}, env={})


# ---- trusted hosts ------------------------------------------------------------------------------

def test_default_trusted_hosts_are_the_public_urls_and_loopback():
    hosts = trusted_hosts({"site_url": "https://Demo.Example.com", "sandbox_url": "https://[2001:db8::1]:8443",
                           "trusted_hosts": []})
    assert hosts == ["demo.example.com", "2001:db8::1", "localhost", "127.0.0.1", "::1"]
    assert trusted_hosts({"site_url": "https://a.example", "sandbox_url": "",
                          "trusted_hosts": ["B.example", ".c.example", "[::1]"]}) == ["b.example", ".c.example", "::1"]


@pytest.mark.parametrize(("host", "trusted"), [
    ("demo.example.com", True),
    ("demo.example.com:8443", True),
    ("DEMO.example.com", True),              # browsers lower-case it; curl may not
    ("demo.example.com.", True),             # the absolute form of the same name
    ("127.0.0.1:5000", True),
    ("[::1]:5000", True),                    # Werkzeug 3.1's own check never matches IPv6
    ("[0:0:0:0:0:0:0:1]", True),
    ("x.sub.example.org", True),             # ".sub.example.org" covers subdomains
    ("sub.example.org", True),
    ("evil.example", False),
    ("demo.example.com.evil.example", False),
    ("evilsub.example.org", False),
    ("demo.example.com:0", False),
    ("demo.example.com:99999", False),
    ("demo.example.com:80:80", False),
    ("demo.example.com@evil.example", False),
    ("demo.example.com/x", False),
    ("demo_example.com", False),
    ("[::2]", False),
    ("[nonsense]", False),
    ("", False),
])
def test_host_is_trusted(host, trusted):
    hosts = trusted_hosts({"trusted_hosts": ["demo.example.com", "127.0.0.1", "::1", ".sub.example.org"]})
    assert host_is_trusted(host, hosts) is trusted


@pytest.mark.parametrize("role", ["site", "sandbox"])
def test_a_forged_host_gets_a_clear_400(tmp_path, role):
    client = CREATE[role](settings_for(tmp_path)).test_client()
    assert client.get("/", headers={"Host": "127.0.0.1:5000"}).status_code == 200
    assert client.get("/", headers={"Host": "[::1]:5000"}).status_code == 200
    page = client.get("/", headers={"Host": "evil.example"})
    assert page.status_code == 400
    assert "does not answer to the host name" in page.get_data(as_text=True)
    assert "evil.example" not in page.get_data(as_text=True)
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    # before the CSRF check: a POST says the same, not "this form has expired"
    post = client.post("/", headers={"Host": "evil.example"})
    assert post.status_code == 400 and "does not answer to the host name" in post.get_data(as_text=True)
    # API paths answer in JSON
    api = client.get("/oauth/token" if role == "sandbox" else "/runs/x.json", headers={"Host": "evil.example:80"})
    assert api.status_code == 400 and "host name" in api.get_json()["error_description"]
    # host names werkzeug can't route at all (a label over 63 characters): still a 400, not a 500
    for host in ("x" * 5000, "x" * 64 + ".com"):
        odd = client.get("/", headers={"Host": host})
        assert odd.status_code == 400 and "does not answer to the host name" in odd.get_data(as_text=True)
        assert host not in odd.get_data(as_text=True)


def test_a_client_sent_forwarded_prefix_is_never_read(tmp_path):
    client = create_site(settings_for(tmp_path, proxy_hops=1)).test_client()
    page = client.get("/", headers={"X-Forwarded-Prefix": "//evil.example"})   # links are built with url_for
    assert page.status_code == 200 and 'href="/static/' in page.get_data(as_text=True)
    assert "evil.example" not in page.get_data(as_text=True)


def test_configured_trusted_hosts_replace_the_defaults(tmp_path):
    client = create_site(settings_for(tmp_path, trusted_hosts=["demo.example.com"])).test_client()
    assert client.get("/", headers={"Host": "demo.example.com"}).status_code == 200
    assert client.get("/", headers={"Host": "127.0.0.1:5000"}).status_code == 400


@pytest.mark.parametrize(("value", "problem"), [
    (["https://demo.example.com"], "without scheme or port"),
    (["demo.example.com:443"], "without scheme or port"),
    (["demo example"], "without scheme or port"),
    (5, "must be a list"),
])
def test_bad_trusted_hosts_are_refused_at_start(value, problem):
    with pytest.raises(ConfigError, match=problem):
        load_config({"trusted_hosts": value}, env={})


def test_trusted_hosts_and_proxy_hops_from_the_environment():
    settings = load_config(env={"GBC_TRUSTED_HOSTS": "demo.example.com, .example.org ::1", "GBC_PROXY_HOPS": "2"})
    assert settings["trusted_hosts"] == ["demo.example.com", ".example.org", "::1"]
    assert settings["proxy_hops"] == 2


@pytest.mark.parametrize("value", [-1, 11, True, "1", 1.5])
def test_bad_proxy_hops_are_refused_at_start(value):
    with pytest.raises(ConfigError, match="proxy_hops"):
        load_config({"proxy_hops": value}, env={})


# ---- behind proxies -----------------------------------------------------------------------------

FORWARDED = {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
             "X-Forwarded-Host": "demo.example.com", "X-Forwarded-Port": "443"}


def probe_client(tmp_path, **overrides):
    app = create_site(settings_for(tmp_path, site_url="https://demo.example.com", **overrides))
    app.add_url_rule("/_probe", "probe", lambda: {"addr": request.remote_addr, "secure": request.is_secure,
                                                  "host": request.host})
    return app.test_client()


def test_forwarded_headers_are_ignored_without_proxy_hops(tmp_path):
    client = probe_client(tmp_path)
    resp = client.get("/_probe", headers=FORWARDED)
    assert resp.get_json() == {"addr": "127.0.0.1", "secure": False, "host": "localhost"}
    assert "Strict-Transport-Security" not in resp.headers
    # a forged X-Forwarded-Host can't get past the host check either: Host is what counts
    assert client.get("/_probe", headers={**FORWARDED, "X-Forwarded-Host": "evil.example"}).status_code == 200


def test_forwarded_headers_of_one_proxy_are_read_with_proxy_hops_1(tmp_path):
    client = probe_client(tmp_path, proxy_hops=1)
    resp = client.get("/_probe", headers=FORWARDED)
    assert resp.get_json() == {"addr": "203.0.113.9", "secure": True, "host": "demo.example.com"}
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
    # the client's own X-Forwarded-For comes first; the proxy appends the address it saw, which wins
    chained = client.get("/_probe", headers={**FORWARDED, "X-Forwarded-For": "10.6.6.6, 203.0.113.9"})
    assert chained.get_json()["addr"] == "203.0.113.9"
    # the forwarded host is checked like Host
    forged = client.get("/_probe", headers={**FORWARDED, "X-Forwarded-Host": "evil.example"})
    assert forged.status_code == 400


def test_hsts_only_over_https(tmp_path):
    client = probe_client(tmp_path)
    assert "Strict-Transport-Security" not in client.get("/").headers
    assert client.get("/", base_url="https://localhost").headers["Strict-Transport-Security"] == "max-age=31536000"
    behind = probe_client(tmp_path / "proxied", proxy_hops=1)
    assert "Strict-Transport-Security" not in behind.get("/", headers={"X-Forwarded-Proto": "http"}).headers
    assert "Strict-Transport-Security" in behind.get("/", headers={"X-Forwarded-Proto": "https"}).headers


def lookups_until_limited(client, forwarded_for: list[str]) -> list[int]:
    """POST the My authorizations lookup once per X-Forwarded-For value; the status codes."""
    return [client.post("/my-authorizations", data={"lookup_type": "phone", "lookup_value": "999-999-9999"},
                        headers={"X-Forwarded-For": ip}).status_code for ip in forwarded_for]


@pytest.mark.parametrize(("hops", "limited"), [(0, True), (1, False)])
def test_rate_limits_key_on_the_real_client_behind_a_proxy(tmp_path, hops, limited):
    app = create_sandbox(settings_for(tmp_path, proxy_hops=hops, ratelimit_lookup="2 per minute"))
    app.config["WTF_CSRF_ENABLED"] = False
    client = app.test_client()
    codes = lookups_until_limited(client, ["198.51.100.1", "198.51.100.2", "198.51.100.3"])
    # without hops a forged X-Forwarded-For is ignored: every POST is 127.0.0.1's, the third refused.
    # with one proxy hop each address has its own allowance
    assert (codes[2] == 429) is limited, codes
    assert all(c != 429 for c in codes[:2]), codes
    if not limited:
        again = lookups_until_limited(client, ["198.51.100.1", "198.51.100.1"])
        assert again[-1] == 429, again


# ---- headers on every route ---------------------------------------------------------------------

SAMPLE_ARGS = {IntegerConverter: 1, FloatConverter: 1.0, UUIDConverter: "00000000-0000-0000-0000-000000000000"}


def get_urls(app) -> list[tuple[str, str]]:
    """(endpoint, URL) for every rule answering GET, with harmless sample arguments."""
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in (rule.methods or ()):
            continue
        if rule.endpoint == "static":
            urls.append((rule.endpoint, "/static/css/tokens.css"))
            continue
        args = {}
        for name in rule.arguments:
            converter = rule._converters.get(name)
            args[name] = next((v for cls, v in SAMPLE_ARGS.items() if isinstance(converter, cls)), "x")
        with app.test_request_context():
            urls.append((rule.endpoint, url_for(rule.endpoint, **args)))
    return urls


def csp_directives(value: str) -> dict[str, str]:
    out = {}
    for part in value.split(";"):
        words = part.split()
        if words:
            out[words[0]] = " ".join(words[1:])
    return out


def session_cookie_attributes(resp, role) -> list[str] | None:
    for header in resp.headers.getlist("Set-Cookie"):
        if header.startswith(f"gbc_{role}_session="):
            return [a.strip().lower() for a in header.split(";")[1:]]
    return None


@pytest.mark.parametrize("role", ["site", "sandbox"])
@pytest.mark.parametrize("scheme", ["http", "https"])
@pytest.mark.parametrize("embed", [False, True])
def test_security_headers_on_every_route(tmp_path, role, scheme, embed):
    origins = ["https://sales.example.com"] if embed else []
    public = f"{scheme}://demo.example.com"
    app = CREATE[role](settings_for(tmp_path, site_url=public, sandbox_url=public + ":8443", embed_origins=origins))
    client = app.test_client()
    urls = get_urls(app)
    assert len(urls) > (15 if role == "site" else 25), urls
    cookies_seen = 0
    for endpoint, url in urls:
        resp = client.get(url, base_url=public)
        where = f"{role} GET {url} ({endpoint}): {resp.status_code}"
        assert resp.status_code < 500, where
        csp = csp_directives(resp.headers.get("Content-Security-Policy", ""))
        assert "form-action" in csp and "frame-ancestors" in csp, where
        assert csp["frame-ancestors"] == ("https://sales.example.com" if embed else "'none'"), where
        assert "'unsafe-inline'" not in resp.headers["Content-Security-Policy"], where
        assert resp.headers["X-Content-Type-Options"] == "nosniff", where
        assert resp.headers["Referrer-Policy"] == "no-referrer", where
        assert resp.headers.get("X-Frame-Options") == (None if embed else "DENY"), where
        assert ("Strict-Transport-Security" in resp.headers) is (scheme == "https"), where
        if endpoint != "static":
            assert resp.headers["Cache-Control"] == "no-store", where
        attrs = session_cookie_attributes(resp, role)
        if attrs is not None:
            cookies_seen += 1
            assert "httponly" in attrs, where
            assert ("secure" in attrs) is (scheme == "https" or embed), where
            assert f"samesite={'none' if embed else 'lax'}" in attrs, where
            assert ("partitioned" in attrs) is embed, where
    assert cookies_seen, f"no {role} session cookie set on any page"

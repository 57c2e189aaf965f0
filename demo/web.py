"""Flask pieces both applications share: the app skeleton, CSRF, trusted hosts, proxies,
security headers and error pages. Views stay thin; protocol logic lives elsewhere."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import re
from datetime import timedelta
from urllib.parse import urlsplit

from flask import Flask, Response, g, render_template, request
from flask.globals import request_ctx
from flask_limiter import RateLimitExceeded
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import BadRequest, HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from . import jsonlog, keys, ratelimit
from .paths import STATIC, TEMPLATES

csrf = CSRFProtect()


def origin(url: str) -> str | None:
    """``scheme://host[:port]`` of a URL, or None when it has none."""
    parts = urlsplit(url or "")
    if parts.scheme in ("http", "https") and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return None


def allow_form_action(*urls: str) -> None:
    """Let this response's forms (and their redirects) go to the origins of ``urls``.

    Chromium applies CSP ``form-action`` to the redirect after a form POST, so
    the page that sends the visitor to another origin must name it.
    """
    extra = g.setdefault("form_action", [])
    for url in urls:
        o = origin(url)
        if o and o not in extra:
            extra.append(o)


def embedding(settings: dict) -> bool:
    """Whether other sites may frame the apps (``embed_origins`` is set)."""
    return bool(settings.get("embed_origins"))


def frame_ancestors(settings: dict) -> str:
    """The CSP ``frame-ancestors`` source list: the allowed origins, or ``'none'``."""
    return " ".join(settings.get("embed_origins") or []) or "'none'"


def insecure_embedding(settings: dict) -> list[str]:
    """With embedding on, the public URLs whose Secure cookies browsers will drop: plain http
    on a host that is not loopback (http://127.0.0.1 and http://localhost are trusted)."""
    if not embedding(settings):
        return []
    urls = [settings["site_url"]] + ([settings["sandbox_url"]] if settings.get("sandbox") else [])
    return [u for u in urls if urlsplit(u).scheme == "http" and not _loopback(urlsplit(u).hostname or "")]


def _loopback(host: str) -> bool:
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: host names every instance answers to, besides those of site_url and sandbox_url
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")

#: a Host header: a name or IPv4 address, or an [IPv6] address, then an optional port
_HOST = re.compile(r"(?:\[(?P<v6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9.-]+))(?::(?P<port>[0-9]{1,5}))?", re.IGNORECASE)


class UntrustedHost(BadRequest):
    description = ("This server does not answer to the host name in your request. Open the demo at the "
                   "address its operator gave you.")


def _host_key(name: str) -> str | None:
    """A host name or IP address as compared: lower case, no trailing dot, IPv6 without brackets
    and in its short form; None when it is not one."""
    name = name.strip().lower()
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if ":" in name:
        try:
            return str(ipaddress.IPv6Address(name))
        except ValueError:
            return None
    name = name.rstrip(".")
    return name or None


def trusted_hosts(settings: dict) -> list[str]:
    """The host names the apps answer to: ``trusted_hosts`` when set, else the hosts of site_url and
    sandbox_url and loopback. An entry starting with a dot also covers every subdomain."""
    configured = settings.get("trusted_hosts") or []
    if configured:
        names = list(configured)
    else:
        names = [urlsplit(settings.get(key) or "").hostname or "" for key in ("site_url", "sandbox_url")]
        names += LOOPBACK_HOSTS
    out: list[str] = []
    for name in names:
        suffix = name.startswith(".")
        key = _host_key(name[1:] if suffix else name)
        if key and ("." + key if suffix else key) not in out:
            out.append("." + key if suffix else key)
    return out


def host_is_trusted(host: str, trusted: list[str]) -> bool:
    """Whether a ``Host`` header value (``name[:port]``, ``[v6][:port]``) names one of ``trusted``
    (as :func:`trusted_hosts` returns them). The port does not matter.

    Werkzeug's own check (Flask's ``TRUSTED_HOSTS``) is not used: in Werkzeug 3.1 it never matches an
    IPv6 address (it cuts each entry at its first colon), so ``::1`` could not be trusted, and it
    compares names case-sensitively.
    """
    m = _HOST.fullmatch(host or "")
    if m is None or (m.group("port") and not 1 <= int(m.group("port")) <= 65535):
        return False
    key = _host_key(m.group("v6") or m.group("name"))
    if key is None:
        return False
    for entry in trusted:
        if key == entry or (entry.startswith(".") and (key == entry[1:] or key.endswith(entry))):
            return True
    return False


def behind_proxies(wsgi_app, hops: int):
    """``wsgi_app`` reading the client's address, scheme, host and port from the ``X-Forwarded-*``
    headers set by ``hops`` proxies in front (0: the headers are ignored). The proxy must set or
    overwrite each of them. ``X-Forwarded-Prefix`` is never read: the apps are served at the root,
    and a client-sent prefix (``//evil.example``) would otherwise reach every redirect."""
    if not hops:
        return wsgi_app
    return ProxyFix(wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops, x_prefix=0)


def session_cookie_config(settings: dict, public_url: str) -> dict:
    """Session cookie attributes.

    Default: ``SameSite=Lax`` (the OAuth callback is a cross-site top-level GET; Strict would
    break it), ``Secure`` over https. With embedding on, the page that frames the app is usually
    another site, so the cookie is third-party there: Lax cookies are not sent, ``SameSite=None``
    without Secure is refused, and Debian's Chromium 156 (tests/test_embed.py) kept no
    unpartitioned third-party cookie either, as browsers blocking third-party cookies do. What
    works is ``SameSite=None; Secure; Partitioned`` (CHIPS): one cookie per top-level site, so
    the framed flow (site, sandbox and back, all in the frame) keeps its own session. Browsers
    accept Secure cookies from https and from loopback over plain http (http://127.0.0.1,
    http://localhost), not from other http hosts.
    """
    if embedding(settings):
        return {"SESSION_COOKIE_SAMESITE": "None", "SESSION_COOKIE_SECURE": True,
                "SESSION_COOKIE_PARTITIONED": True}
    return {"SESSION_COOKIE_SAMESITE": "Lax", "SESSION_COOKIE_SECURE": public_url.startswith("https://"),
            "SESSION_COOKIE_PARTITIONED": False}


def role_key(master: str, role: str) -> str:
    """The Flask ``SECRET_KEY`` of one application (``site`` or ``sandbox``), derived from the
    configured secret key so that the two apps never accept each other's cookies."""
    return hmac.new(master.encode(), role.encode(), hashlib.sha256).hexdigest()


def make_app(import_name: str, settings: dict, *, role: str, error_template: str,
             too_many_template: str | None = None) -> Flask:
    app = Flask(
        import_name,
        template_folder=str(TEMPLATES),
        static_folder=str(STATIC),
        instance_path=settings["instance_path"],
    )
    master = keys.current_secret(settings)
    fallbacks = [role_key(old, role) for old in keys.fallback_secrets(settings)]
    public_url = settings["site_url"] if role == "site" else settings["sandbox_url"]
    app.config.update(
        GBC=settings,
        SECRET_KEY=role_key(master, role),
        # sessions and CSRF tokens signed with a previous secret_key stay valid while it is listed
        SECRET_KEY_FALLBACKS=fallbacks,
        # Flask-WTF 1.3 ignores SECRET_KEY_FALLBACKS; a list here (newest last) keeps forms opened
        # before a key rotation working (tests/test_keys.py)
        WTF_CSRF_SECRET_KEY=keys.signing_keys(role_key(master, role), fallbacks),
        # Both origins may share a host name (127.0.0.1:5000 and :5001): cookies
        # ignore ports, so each application needs its own cookie name.
        SESSION_COOKIE_NAME=f"gbc_{role}_session",
        SESSION_COOKIE_HTTPONLY=True,
        **session_cookie_config(settings, public_url),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        MAX_CONTENT_LENGTH=1024 * 1024,
        WTF_CSRF_TIME_LIMIT=3600,
        # Flask-WTF's extra https check wants a same-origin Referer, which Referrer-Policy: no-referrer
        # (below) stops browsers from sending, even to the same origin: every POST over https failed
        # (tests/test_embed.py). Origin cannot stand in: under no-referrer a form POST sends "null".
        # What stops cross-site POSTs is the token check, which stays on for every POST: the token is
        # bound to the session, in an HttpOnly cookie that is Secure over https.
        WTF_CSRF_SSL_STRICT=False,
        TEMPLATES_AUTO_RELOAD=False,
    )
    # Behind a reverse proxy, the client's address (per-IP rate limits), https (HSTS, the CSRF
    # check, Secure cookies) and the public host come from the proxy's X-Forwarded-* headers, read
    # only for the configured number of proxies: a client can add its own, never remove the proxy's.
    app.wsgi_app = behind_proxies(app.wsgi_app, int(settings.get("proxy_hops") or 0))
    hosts = trusted_hosts(settings)

    @app.before_request
    def request_id():
        # first, so every answer (a refused Host too) has an id: the caller's X-Request-ID when it is
        # a sane token, else a new one; on every log record of this request (demo/jsonlog.py)
        g.request_id = jsonlog.request_id(request.headers.get("X-Request-ID"))
        jsonlog.bind(g.request_id, request.method, request.path)

    @app.after_request
    def echo_request_id(response):
        if "request_id" in g:
            response.headers["X-Request-ID"] = g.request_id
        return response

    @app.teardown_request
    def end_request_id(_exc=None):
        jsonlog.unbind()

    @app.before_request
    def check_host():
        # registered before CSRF and rate limits, so a forged Host gets this answer first. Links built
        # from the Host header (url_for(_external=True), the redirect-uri warning) can't be poisoned.
        if not host_is_trusted(request.host, hosts):
            if request.url_rule is None and getattr(request_ctx, "url_adapter", None) is None:
                # a Host werkzeug can't even route (a label over 63 characters): no page can be built
                # for it (links need a URL adapter), so a plain answer
                return Response(UntrustedHost.description, 400, mimetype="text/plain")
            raise UntrustedHost()

    csrf.init_app(app)
    # readable JSON in <pre> blocks (autoescaped as text; unlike tojson it keeps "••••" readable)
    app.jinja_env.filters["pretty_json"] = lambda value: json.dumps(value, indent=2, ensure_ascii=False)
    # Authlib logs issued tokens and PKCE verifiers at DEBUG: never below INFO.
    authlib_log = logging.getLogger("authlib")
    if authlib_log.level < logging.INFO:   # NOTSET (0) would inherit DEBUG from the root
        authlib_log.setLevel(logging.INFO)

    ancestors = frame_ancestors(settings)
    embeddable = embedding(settings)

    @app.after_request
    def security_headers(response):
        form_action = " ".join(["'self'", *g.get("form_action", [])])
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            f"connect-src 'self'; form-action {form_action}; frame-ancestors {ancestors}; "
            "base-uri 'none'; object-src 'none'",
        )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        if not embeddable:
            # X-Frame-Options has no allow-list (ALLOW-FROM is gone): with embedding on it would
            # refuse every frame, so frame-ancestors alone decides then
            response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
        if request.endpoint != "static":
            # pages carry codes, tokens or customer data: never cache them
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(exc):
        if embeddable and request.headers.get("Sec-Fetch-Dest") == "iframe" \
                and app.config["SESSION_COOKIE_NAME"] not in request.cookies:
            # framed, and the browser sent no session cookie: it blocks this site's cookies here
            return render_template(
                error_template, code=400, title="Your browser blocked this demo's cookie in the frame",
                message="This page is shown inside another site, and your browser does not keep cookies for "
                        "framed sites (Safari, and any browser set to block third-party cookies). Open the "
                        f"demo in its own tab instead: {public_url}"), 400
        return render_template(error_template, code=400, title="This form has expired",
                               message="The form was missing its security token or it had expired. "
                                       "Go back, reload the page and try again."), 400

    def api_path() -> bool:
        return request.path.startswith(("/DataCustodian/", "/oauth/token")) or request.path.endswith(".json")

    @app.errorhandler(RateLimitExceeded)
    def too_many(exc):
        # a per-IP limit of demo/ratelimit.py: raised before the view ran, so nothing stored changed
        seconds = ratelimit.retry_after()
        wait = ratelimit.wait_text(seconds)
        headers = {"Retry-After": str(seconds)}
        message = f"Too many attempts from your network. Try again in {wait}."
        if api_path():
            return {"error": "too_many_requests", "error_description": message}, 429, headers
        return render_template(too_many_template or error_template, code=429, title="Too many attempts",
                               message=message, wait=wait), 429, headers

    @app.errorhandler(HTTPException)
    def http_error(exc):
        if api_path():
            return {"error": exc.name.lower().replace(" ", "_"), "error_description": exc.description}, exc.code
        return render_template(error_template, code=exc.code, title=exc.name,
                               message=exc.description), exc.code

    @app.errorhandler(Exception)
    def server_error(exc):  # pragma: no cover - a bug; shown politely, logged in full
        app.logger.exception("unhandled error on %s %s", request.method, request.path)
        return render_template(error_template, code=500, title="Something went wrong",
                               message="The server hit an unexpected error. It has been logged."), 500

    return app

"""Rate limits per client IP (Flask-Limiter) on the sandbox's customer and dashboard forms, and
on authorization requests that look a customer up.

These caps sit on top of the rules :mod:`demo.sandbox.portal` keeps per pending authorization
(``sandbox_otp_max_attempts`` wrong passcodes end it, passcodes expire, resends wait and are
capped, compared in constant time by :func:`demo.tokens.same`). Those stop guessing one
customer's passcode; these stop one network from working through many customers.

Views only mark themselves (``@ratelimit.limited(ratelimit.PASSCODE)``); :func:`init_app` gives
each app its own :class:`~flask_limiter.Limiter` and wraps the marked views. One Limiter per app,
not one per module: a Limiter keeps the storage and the on/off switch of the last app it was
initialised with, and one process may run several apps (the tests do).

Only POSTs count, except for prefilled authorization requests (a GET that looks a customer up).
Each rule is one bucket shared by both flows (the authorize flow and My
authorizations), so switching forms does not double the allowance. Rules with ``failures_only``
count only responses that say no (4xx), so a customer's own success never locks them out.

Storage: ``memory://`` (the default) counts per process. With several workers or machines, point
``ratelimit_storage_url`` at a shared store, e.g. ``redis://host:6379/0``, and ``pip install redis``.

The key is the connecting address (IPv6: its /64, what one subscriber usually gets). Behind a
reverse proxy every visitor has the proxy's address: set ``proxy_hops`` (``GBC_PROXY_HOPS``, ProxyFix in
demo/web.py) to the exact number of proxies, or everyone shares one allowance.
"""
from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, current_app, request
from flask_limiter import Limiter
from limits import parse_many
from limits.errors import ConfigurationError
from werkzeug.wrappers import Response

from .config import ConfigError
from .scope import ScopeError, parse_scope

EXTENSION = "gbc_limiter"
MARK = "gbc_rate_limit"


def prefilled_lookup() -> bool:
    """An ``/oauth/authorize`` request whose scope names a customer (``AdditionalScope=auth-<type>-<value>``):
    the sandbox looks that customer up at once and may send a passcode."""
    try:
        return parse_scope(request.args.get("scope") or "").lookup is not None
    except ScopeError:
        return False   # refused with invalid_scope before any lookup


@dataclass(frozen=True)
class Rule:
    setting: str          # the configuration key holding the limit, e.g. "10 per 10 minutes"
    scope: str            # the shared bucket: every view with this rule counts together
    failures_only: bool   # count only refusals (4xx), never a success
    methods: tuple[str, ...] = ("POST",)          # the requests that count
    counts: Callable[[], bool] | None = None      # and of those only the ones this says yes to


#: passcode attempts (authorize flow and My authorizations); a right passcode does not count
PASSCODE = Rule("ratelimit_otp", "passcode-attempts", failures_only=True)
#: account lookups and passcode resends (both flows): each may send a text or an email, so all count
SEND = Rule("ratelimit_lookup", "passcode-sends", failures_only=False)
#: dashboard sign-ins; a good sign-in does not count
SIGN_IN = Rule("ratelimit_signin", "dashboard-sign-in", failures_only=True)
#: authorization requests with a prefilled customer (GET /oauth/authorize): each is a lookup, like a
#: lookup form; HEAD runs the view too
AUTHORIZE_LOOKUP = Rule("ratelimit_authorize", "authorize-lookups", failures_only=False, methods=("GET", "HEAD"),
                        counts=prefilled_lookup)

RULES = (PASSCODE, SEND, SIGN_IN, AUTHORIZE_LOOKUP)


def limited(rule: Rule) -> Callable:
    """Mark a view for ``rule`` (put it under ``@bp.route``); :func:`init_app` applies it."""
    def mark(view):
        setattr(view, MARK, rule)
        return view
    return mark


def client_key() -> str:
    """Whose allowance a request uses: its IPv4 address, or the /64 of its IPv6 address."""
    addr = request.remote_addr or ""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return addr or "unknown"   # never empty: Flask-Limiter skips a limit with an empty key
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def refused(response: Response) -> bool:
    """A response that counts for a failures-only rule: a 4xx, but not the 429 of the limit itself
    (a visitor who keeps reloading the 429 page must not push their wait further out)."""
    return 400 <= response.status_code < 500 and response.status_code != 429


def limit_value(settings: dict, rule: Rule) -> str:
    """The rule's limit from the settings, checked; "" when the rule is switched off."""
    value = settings.get(rule.setting)
    if value is None or (isinstance(value, str) and not value.strip()):
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{rule.setting} must be a string like \"10 per 10 minutes\", got {value!r}")
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{rule.setting} must be like \"10 per 10 minutes\" (several separated by \";\"), "
                          f"got {value!r}") from None
    return value.strip()


def init_app(app: Flask, settings: dict, *, prefix: str) -> Limiter:
    """Give ``app`` its own Limiter and apply the rules to its marked views.

    Call it after the blueprints are registered. Bad limits or an unusable storage URL raise
    :class:`~demo.config.ConfigError` at start-up rather than failing on the first request.
    """
    values = {rule: limit_value(settings, rule) for rule in RULES}
    url = settings.get("ratelimit_storage_url") or "memory://"
    limiter = Limiter(
        key_func=client_key,
        storage_uri=url,
        strategy="moving-window",          # no double allowance across a window's edge
        key_prefix=prefix,                 # apps sharing one Redis keep apart
        enabled=bool(settings.get("ratelimit_enabled", True)),
        headers_enabled=False,             # Retry-After is set on the 429 page (demo/web.py)
        in_memory_fallback_enabled=True,   # shared storage down: count in this process meanwhile
        swallow_errors=True,               # and never turn a storage error into a 500
    )
    try:
        limiter.init_app(app)
    except ConfigurationError as exc:
        hint = " (pip install redis)" if url.startswith(("redis", "rediss")) else ""
        raise ConfigError(f"ratelimit_storage_url {url.split('@')[-1]!r} can't be used{hint}: {exc}") from None
    for endpoint, view in list(app.view_functions.items()):
        rule = getattr(view, MARK, None)
        if rule is None or not values[rule]:
            continue
        counts = rule.counts
        app.view_functions[endpoint] = limiter.shared_limit(
            values[rule], scope=rule.scope, methods=list(rule.methods),
            deduct_when=refused if rule.failures_only else None,
            exempt_when=(lambda counts=counts: not counts()) if counts is not None else None,
        )(view)
    app.extensions[EXTENSION] = limiter
    return limiter


def retry_after(default: int = 60) -> int:
    """Seconds until the limit this request broke lets the client in again (at least 1)."""
    limiter = current_app.extensions.get(EXTENSION)
    current = limiter.current_limit if limiter is not None else None
    if current is None:
        return default
    try:
        return max(1, math.ceil(current.window[0] - time.time()))   # window[0]: when a try frees up
    except Exception:   # storage trouble while reading the window: a sensible wait still
        return default


def wait_text(seconds: int) -> str:
    """``1 minute``, ``7 minutes``: the wait, rounded up to whole minutes."""
    minutes = max(1, math.ceil(seconds / 60))
    return f"{minutes} minute{'s' if minutes != 1 else ''}"

"""Layered configuration (no Flask).

Layers, later wins:

1. built-in defaults (:data:`DEFAULTS`),
2. the preset file ``config/<preset>.toml`` (``GBC_PRESET``, default ``pce``),
3. the git-ignored instance file ``instance/gbc.toml``,
4. environment variables ``GBC_<KEY>`` (``GBC_CLIENT_ID`` sets ``client_id``),
5. programmatic overrides (tests, the command line).

A fifth, per-visitor layer for the demo site's OAuth client lives in the site's
database (see :mod:`demo.site.settings`), never in the cookie.

String values may refer to other keys as ``{site_url}`` or ``{sandbox_url}``;
they are resolved after all layers are merged, so changing a port moves every
URL that depends on it.
"""
from __future__ import annotations

import os
import re
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .paths import CONFIG, INSTANCE

ENV_PREFIX = "GBC_"

#: Every setting, its default and (through its type) how an environment value is read.
DEFAULTS: dict[str, Any] = {
    "preset": "pce",
    # the utility and the third party's OAuth client (the per-visitor layer can change these)
    "utility": "PCE",
    "utility_name": "Peninsula Clean Energy",
    "company_name": "Test Company",
    "client_id": "",
    "client_secret": "",
    "redirect_uri": "{site_url}/callback",
    "authorize_url": "{sandbox_url}/oauth/authorize",
    "token_url": "{sandbox_url}/oauth/token",
    "scope": "FB=4_16_51",
    "pkce": True,
    "token_auth_method": "client_secret_basic",
    "http_timeout": 10.0,
    # the utility's JSON API (UtilityAPI v2) and webhooks, for the run page's integrator view
    "api_url": "{sandbox_url}/api/v2",
    "api_token": "",                 # secret: a JSON API token from the utility's dashboard
    "webhook_secret": "",            # secret: signs the webhooks the site receives
    # where the two applications listen
    "site_host": "127.0.0.1",
    "site_port": 5000,
    "site_url": "http://{site_host}:{site_port}",
    "sandbox": True,
    "sandbox_host": "127.0.0.1",
    "sandbox_port": 5001,
    "sandbox_url": "http://{sandbox_host}:{sandbox_port}",
    # storage and secrets
    "instance_path": str(INSTANCE),
    # any SQLAlchemy URL: "postgresql+psycopg://user:password@host/db" after pip install "gbc-demo[postgres]"
    "database_url": "sqlite:///{instance_path}/site.sqlite3",
    "sandbox_database_url": "sqlite:///{instance_path}/sandbox.sqlite3",
    "secret_key": "",
    "secret_key_fallbacks": [],              # older secret keys: still decrypt and verify until rotated out
    "log_level": "INFO",
    "log_format": "text",                   # or "json": one JSON object per line (demo/jsonlog.py)
    # gunicorn (config/gunicorn.conf.py): processes, threads each, address; graceful_timeout 0 means
    # "longer than the slowest custodian call" (2 * http_timeout + http_max_seconds + 5)
    "workers": 2,
    "threads": 8,
    "bind": "",                              # empty: site_host:site_port or sandbox_host:sandbox_port
    "graceful_timeout": 0.0,
    # the sandbox custodian
    "sandbox_customers_file": "pce-customers.toml",
    "sandbox_clients": [],
    "sandbox_otp_ttl": 600,
    "sandbox_otp_max_attempts": 5,
    "sandbox_code_ttl": 600,
    "sandbox_access_token_ttl": 3600,
    "sandbox_show_test_otp": True,
    # seconds from authorization until the data is collected: batch endpoints answer
    # 202 + Retry-After before that (the real platform takes minutes)
    "sandbox_ready_delay": 5,
    "sandbox_refresh_rotation": True,        # refresh_token grant issues a new refresh token
    "sandbox_refresh_token_ttl": 0,          # seconds; 0 = as long as the authorization
    "sandbox_api_token_years": 10,           # JSON API tokens expire 10 years after creation
    "sandbox_webhook_timeout": 5.0,          # seconds per delivery attempt
    "sandbox_webhook_retry_base": 60,        # first retry after this many seconds, doubling ...
    "sandbox_webhook_retry_max": 3600,       # ... up to hourly ...
    "sandbox_webhook_retry_window": 259200,  # ... for 72 hours
    "sandbox_webhook_poll": 1.0,             # how often the delivery thread looks for due events
    "sandbox_webhooks": True,                # run the delivery thread
    # one-time passcode delivery for TEST_<scenario>_<contact> lookups (empty host / SID: recorded only)
    "sandbox_smtp_host": "",
    "sandbox_smtp_port": 587,
    "sandbox_smtp_security": "starttls",     # "starttls", "tls" (implicit, port 465) or "none"
    "sandbox_smtp_user": "",
    "sandbox_smtp_password": "",             # secret
    "sandbox_smtp_from": "",                 # e.g. "Peninsula Clean Energy <no-reply@example.com>"
    "sandbox_smtp_ca_file": "",              # an extra CA bundle (PEM) to trust, e.g. a local test server's
    "sandbox_twilio_account_sid": "",
    "sandbox_twilio_auth_token": "",         # secret
    "sandbox_twilio_from": "",               # an E.164 number (+15551234567) or a Messaging Service SID
    "sandbox_twilio_api_url": "https://api.twilio.com",   # tests point this at a local endpoint
    "sandbox_delivery_timeout": 10.0,        # seconds per SMTP or Twilio attempt
    "sandbox_resend_interval": 30,           # seconds a customer waits before asking for another passcode
    "sandbox_resend_max": 5,                 # passcodes per pending authorization per hour
    "sandbox_recipient_max": 10,             # passcodes one phone or address may receive per hour (0: no cap)
    # sales demos: presenter mode, branding, embedding, shareable preset links
    "presenter": False,                      # presenter mode for every visitor (each may switch it)
    "brand_logo": "",                        # an image file (relative to config/ or absolute)
    "brand_accent": "",                      # "#rrggbb"
    "brand_welcome": "",                     # a paragraph on the home page in presenter mode
    "embed_origins": [],                     # origins that may frame both apps (frame-ancestors)
    "preset_link_ttl": 604800,               # seconds a shared preset link stays valid (7 days)
    # rate limits per client IP on the sandbox's forms (demo/ratelimit.py); limits as "N per <period>",
    # several separated by ";", empty for none. Per pending authorization, sandbox_otp_max_attempts still holds.
    "ratelimit_enabled": True,
    "ratelimit_storage_url": "memory://",    # one process; "redis://host:6379/0" (gbc-demo[redis]) for several
    "ratelimit_otp": "30 per 10 minutes",    # wrong passcodes (both flows together); right ones don't count
    "ratelimit_lookup": "60 per 10 minutes",  # account lookups and passcode resends (each may send a passcode)
    "ratelimit_signin": "10 per minute;50 per hour",  # failed dashboard sign-ins
    # caps on each download from the custodian (ESPI XML): http_timeout bounds each wait, these the whole
    "http_max_body": 33554432,               # bytes (32 MB, after gzip decoding); more is cut off
    "http_max_seconds": 60.0,                # seconds from the answer's headers to its last byte
    # mix-up protection (RFC 9207): the custodian's issuer identifier as sent in "iss"; empty: the
    # authorize_url's origin. With require_iss, a callback without "iss" is refused.
    "issuer": "",
    "require_iss": False,
    "sandbox_iss_parameter": False,          # the sandbox adds "iss" to its authorization responses
    "ratelimit_authorize": "120 per 10 minutes",  # prefilled lookups by GET /oauth/authorize (auth-* in scope)
    # serving behind proxies: Host values accepted (empty: the hosts of site_url, sandbox_url and
    # loopback) and how many proxies in front set X-Forwarded-* (0: none, the headers are ignored)
    "trusted_hosts": [],
    "proxy_hops": 0,
}

#: Settings a visitor may change on the demo site's settings page.
VISITOR_KEYS = (
    "utility",
    "client_id",
    "client_secret",
    "redirect_uri",
    "authorize_url",
    "token_url",
    "issuer",
    "require_iss",
    "scope",
    "pkce",
    "token_auth_method",
    "api_url",
    "api_token",
    "webhook_secret",
)

#: Visitor settings that are secrets: stored encrypted, shown masked, never put in a cookie.
SECRET_VISITOR_KEYS = ("client_secret", "api_token", "webhook_secret")

TOKEN_AUTH_METHODS = ("client_secret_basic", "client_secret_post")
SMTP_SECURITY = ("starttls", "tls", "none")
LOG_FORMATS = ("text", "json")
#: an origin for embed_origins: scheme, host (name or [IPv6]) and optional port, nothing else
_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class ConfigError(ValueError):
    """A configuration value that cannot be used, with the layer it came from."""


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def _coerce(key: str, raw: str) -> Any:
    default = DEFAULTS.get(key)
    if isinstance(default, bool):
        value = raw.strip().lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{ENV_PREFIX}{key.upper()} must be true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{key.upper()} must be a whole number, got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{ENV_PREFIX}{key.upper()} must be a number, got {raw!r}") from None
    return raw


def env_layer(env: Mapping[str, str]) -> dict[str, Any]:
    """The ``GBC_*`` variables as settings (``GBC_SANDBOX_PORT`` -> ``sandbox_port``)."""
    layer = {}
    for name, raw in env.items():
        if name.startswith(ENV_PREFIX) and len(name) > len(ENV_PREFIX):
            key = name[len(ENV_PREFIX):].lower()
            if key in ("sandbox_clients",):
                continue  # structured; only files can set it
            if isinstance(DEFAULTS.get(key), list):
                layer[key] = [item for item in re.split(r"[\s,]+", raw) if item]
                continue
            layer[key] = _coerce(key, raw)
    return layer


def resolve(settings: dict[str, Any]) -> dict[str, Any]:
    """Fill ``{key}`` placeholders in string values (and in lists of strings)."""

    def sub(value: Any, depth: int = 0) -> Any:
        if isinstance(value, str):
            if depth > 8:
                raise ConfigError(f"placeholder loop in {value!r}")

            def repl(m: re.Match) -> str:
                key = m.group(1)
                if key not in settings:
                    return m.group(0)
                return str(sub(settings[key], depth + 1))

            return _PLACEHOLDER.sub(repl, value)
        if isinstance(value, list):
            return [sub(v, depth) for v in value]
        if isinstance(value, dict):
            return {k: sub(v, depth) for k, v in value.items()}
        return value

    return {key: sub(value) for key, value in settings.items()}


def load_config(
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_dir: Path = CONFIG,
) -> dict[str, Any]:
    """Merge every layer and return the resolved settings as a plain dict."""
    env = os.environ if env is None else env
    overrides = dict(overrides or {})
    env_values = env_layer(env)

    preset = overrides.get("preset") or env_values.get("preset") or DEFAULTS["preset"]
    if not re.fullmatch(r"[A-Za-z0-9_-]+", str(preset)):
        raise ConfigError(f"preset name {preset!r} is not a plain file name")
    preset_values = _read_toml(config_dir / f"{preset}.toml")
    if not preset_values and preset != DEFAULTS["preset"]:
        raise ConfigError(f"no preset file {config_dir / f'{preset}.toml'}")

    merged: dict[str, Any] = dict(DEFAULTS)
    merged.update(preset_values)
    instance_path = overrides.get("instance_path") or env_values.get("instance_path") or merged["instance_path"]
    merged.update(_read_toml(Path(instance_path) / "gbc.toml"))
    merged.update(env_values)
    merged.update(overrides)
    settings = resolve(merged)
    settings["config_dir"] = str(config_dir)
    _validate(settings)
    return settings


def _validate(settings: dict[str, Any]) -> None:
    if settings["token_auth_method"] not in TOKEN_AUTH_METHODS:
        raise ConfigError(
            f"token_auth_method must be one of {', '.join(TOKEN_AUTH_METHODS)}, "
            f"got {settings['token_auth_method']!r}"
        )
    if settings["sandbox_smtp_security"] not in SMTP_SECURITY:
        raise ConfigError(f"sandbox_smtp_security must be one of {', '.join(SMTP_SECURITY)}, "
                          f"got {settings['sandbox_smtp_security']!r}")
    accent = settings["brand_accent"]
    if accent and not (isinstance(accent, str) and re.fullmatch(r"#[0-9A-Fa-f]{6}", accent)):
        raise ConfigError(f"brand_accent must be a colour like #0f6b6b, got {accent!r}")
    origins = settings["embed_origins"]
    if isinstance(origins, str):
        origins = settings["embed_origins"] = [o for o in re.split(r"[\s,]+", origins) if o]
    if not isinstance(origins, list):
        raise ConfigError(f"embed_origins must be a list of origins like [\"https://www.example.com\"], "
                          f"got {origins!r}")
    for value in origins:
        if not (isinstance(value, str) and _ORIGIN.fullmatch(value)):
            raise ConfigError(f"embed_origins takes origins like https://www.example.com (scheme, host and "
                              f"optional port, no path), got {value!r}")
    fallbacks = settings["secret_key_fallbacks"]
    if not isinstance(fallbacks, list) or not all(isinstance(k, str) and k.strip() for k in fallbacks):
        shown = ("a list with an empty or non-text key" if isinstance(fallbacks, list)
                 else f"a {type(fallbacks).__name__}")
        raise ConfigError(f"secret_key_fallbacks must be a list of older secret keys (non-empty strings), "
                          f"got {shown}")   # never the keys themselves: they are secrets
    ttl = settings["preset_link_ttl"]
    if isinstance(ttl, bool) or not isinstance(ttl, int):   # out of range: the share page offers 7 days
        raise ConfigError(f"preset_link_ttl must be a whole number of seconds, got {ttl!r}")
    for key in ("site_port", "sandbox_port"):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
            raise ConfigError(f"{key} must be a TCP port number, got {value!r}")
    hosts = settings["trusted_hosts"]
    if isinstance(hosts, str):
        hosts = settings["trusted_hosts"] = [h for h in re.split(r"[\s,]+", hosts) if h]
    if not isinstance(hosts, list):
        raise ConfigError(f"trusted_hosts must be a list of host names like [\"demo.example.com\"], got {hosts!r}")
    host_name = re.compile(r"\.?[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.?")   # ".example.com": every subdomain

    def ip_address(value: str) -> bool:
        import ipaddress
        try:
            return bool(ipaddress.ip_address(value.removeprefix("[").removesuffix("]")))
        except ValueError:
            return False

    for value in hosts:
        if not (isinstance(value, str) and (host_name.fullmatch(value) or ip_address(value))):
            raise ConfigError(f"trusted_hosts takes host names or IP addresses like demo.example.com, "
                              f".example.com (every subdomain) or ::1, without scheme or port, got {value!r}")
    for key, top in (("workers", 64), ("threads", 256)):
        value = settings[key]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= top:
            raise ConfigError(f"{key} must be a whole number from 1 to {top}, got {value!r}")
    grace = settings["graceful_timeout"]
    if isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0:
        raise ConfigError(f"graceful_timeout must be a number of seconds (0: derived from http_timeout and "
                          f"http_max_seconds), got {grace!r}")
    if not isinstance(settings["bind"], str):
        raise ConfigError(f"bind must be an address like 0.0.0.0:5000 or unix:/run/gbc.sock, got {settings['bind']!r}")
    if settings["log_format"] not in LOG_FORMATS:
        raise ConfigError(f"log_format must be one of {', '.join(LOG_FORMATS)}, got {settings['log_format']!r}")
    hops = settings["proxy_hops"]
    if isinstance(hops, bool) or not isinstance(hops, int) or not 0 <= hops <= 10:
        raise ConfigError(f"proxy_hops must be the number of proxies in front that set X-Forwarded-* "
                          f"(0 for none), got {hops!r}")


def normalized_origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lower-cased, without a default port or a path; "" when
    it has none. The one form of an issuer both apps use (the sandbox's ``iss``, the site's check)."""
    parts = urlsplit(str(url or ""))
    try:
        host, port = parts.hostname or "", parts.port
    except ValueError:
        return ""
    if ":" in host:
        host = f"[{host}]"
    scheme = parts.scheme.lower()
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "") if scheme and host else ""


def config_file(settings: dict[str, Any], key: str) -> Path:
    """A file setting, resolved against the configuration folder when relative."""
    path = Path(settings[key])
    return path if path.is_absolute() else Path(settings["config_dir"]) / path


def ensure_secret_key(settings: dict[str, Any], name: str = "secret_key") -> str:
    """The configured secret key, or one generated once into the instance folder."""
    if settings.get("secret_key"):
        return settings["secret_key"]
    folder = Path(settings["instance_path"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if not path.exists():
        # several workers may start at once: write aside, then link into place atomically
        tmp = folder / f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another worker won; use its key
        finally:
            tmp.unlink()
    return path.read_text().strip()

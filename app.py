"""WSGI entry points: ``site`` (the demo third party) and ``sandbox`` (the
embedded PCE custodian), e.g. ``gunicorn -c config/gunicorn.conf.py app:site``.

Both are built from the same layered configuration (see README), each on first use:
a server that serves only the site never opens the sandbox's database or starts its
webhook delivery thread."""
from __future__ import annotations

import threading

from demo.config import load_config

_lock = threading.Lock()
_built: dict = {}


def settings() -> dict:
    with _lock:
        if "settings" not in _built:
            _built["settings"] = load_config()
        return _built["settings"]


def _build(name: str):
    from demo.sandbox import create_app as create_sandbox
    from demo.site import create_app as create_site

    config = settings()
    with _lock:
        if name not in _built:
            _built[name] = (create_site if name == "site" else create_sandbox)(config)
        return _built[name]


def loaded() -> list:
    """The apps built so far (gunicorn's worker_exit hook stops what they run)."""
    with _lock:
        return [_built[name] for name in ("site", "sandbox") if name in _built]


def __getattr__(name: str):
    if name in ("site", "sandbox"):
        return _build(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

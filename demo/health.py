"""Liveness and readiness endpoints, the same on both apps.

- ``GET /healthz``: the process answers. No I/O at all, so it is also the cheapest request a
  server can answer (the "hello world" ceiling of the load benchmark).
- ``GET /readyz``: the database answers a ``SELECT 1`` and the rate-limit storage (when the app
  has one) answers its ping. 503 with the failing check named otherwise, so that a load balancer
  sends no visitor to an instance that can't serve them.

Both answer JSON with ``Cache-Control: no-store`` and show no configuration: a failure is named by
its exception class, never its message (a driver's message may quote a URL with a password). The
message goes to the log, through demo/logsafe.py. Trusted hosts apply as to any route; rate limits
and CSRF don't (only marked views are limited, and these are GETs).
"""
from __future__ import annotations

import logging

from flask import Blueprint, current_app
from sqlalchemy import text

from .ratelimit import EXTENSION as LIMITER
from .storage import Database

log = logging.getLogger(__name__)


def _json(body: dict, status: int = 200):
    return body, status, {"Cache-Control": "no-store"}


def check_database(db: Database) -> str | None:
    """None when the database answers ``SELECT 1``, else the exception's class name."""
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1")).scalar()
    except Exception as exc:
        log.warning("readiness: the database does not answer: %s: %s", type(exc).__name__, exc)
        return type(exc).__name__
    return None


def check_limiter(limiter) -> str | None:
    """None when the rate-limit storage answers (or limits are off), else why not."""
    if limiter is None or not limiter.enabled:
        return None
    try:
        if limiter.storage.check():
            return None
        reason = "no answer"
    except Exception as exc:
        reason = type(exc).__name__
    log.warning("readiness: the rate-limit storage does not answer (%s)", reason)
    return reason


def blueprint(db: Database) -> Blueprint:
    """The ``/healthz`` and ``/readyz`` views of an app whose database is ``db``."""
    bp = Blueprint("health", __name__)

    @bp.get("/healthz")
    def healthz():
        return _json({"status": "ok"})

    @bp.get("/readyz")
    def readyz():
        checks: dict[str, str] = {}
        failed: list[str] = []
        problem = check_database(db)
        checks["database"] = "ok" if problem is None else f"unavailable ({problem})"
        if problem is not None:
            failed.append("database")
        limiter = current_app.extensions.get(LIMITER)
        if limiter is not None:
            problem = check_limiter(limiter)
            checks["ratelimit_storage"] = "ok" if problem is None else f"unavailable ({problem})"
            if problem is not None:
                failed.append("ratelimit_storage")
        if failed:
            return _json({"status": "unavailable", "reason": f"{' and '.join(failed)} not answering",
                          "checks": checks}, 503)
        return _json({"status": "ready", "checks": checks})

    return bp

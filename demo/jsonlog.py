"""Log lines as JSON, and a request id on every record of a request (no Flask).

``log_format = "json"`` makes both servers (``gbc-demo`` and gunicorn with
``config/gunicorn.conf.py``) write one JSON object per line::

    {"time": "2025-01-31T17:02:03.123Z", "level": "INFO", "logger": "demo.site.views",
     "message": "...", "request_id": "3f2a...", "method": "GET", "path": "/runs"}

Keys: ``time`` (UTC), ``level``, ``logger``, ``message``, then when known ``request_id``,
``method``, ``path`` (never the query string), ``status``, ``duration_ms``, ``remote_addr``
(gunicorn's access lines) and ``exception`` (the traceback). Absent values are left out.

The web layer (demo/web.py) calls :func:`bind` when a request starts and :func:`unbind` when it
ends; :class:`RequestFilter`, on the handler, copies those values onto every record logged in
between, by any logger. gunicorn's access lines carry their own values (:func:`access_fields`,
from its "atoms"); their request id is the ``X-Request-ID`` response header.

Secrets: :mod:`demo.logsafe` masks them on the loggers requests pass through. The formatters
here mask the message and the traceback again (:func:`demo.logsafe.scrub`), so that a record
from any other logger is masked too.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar
from typing import Any

from .logsafe import scrub

#: an incoming X-Request-ID we keep: a plain token, at most 64 characters
_SANE_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

#: the request being handled by this thread: {"request_id", "method", "path"}, or None
_REQUEST: ContextVar[dict[str, str] | None] = ContextVar("gbc_request", default=None)

#: the text format of ``gbc-demo`` (unchanged by request ids: those are in the JSON lines)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: gunicorn's text format: its own, plus the logger name and the request id
GUNICORN_TEXT_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s [%(request_id)s]: %(message)s"


def request_id(incoming: str | None) -> str:
    """The id of a request: the client's (or proxy's) ``X-Request-ID`` when it is a sane token
    (``[A-Za-z0-9._-]``, 1 to 64 characters), else a new random one (32 hex characters)."""
    if incoming and _SANE_ID.fullmatch(incoming):
        return incoming
    return secrets.token_hex(16)


def bind(rid: str, method: str, path: str) -> None:
    """Attach a request's id, method and path (without query) to the records logged from now on
    in this thread (or task), until :func:`unbind`."""
    _REQUEST.set({"request_id": rid, "method": method, "path": path.split("?", 1)[0]})


def unbind() -> None:
    _REQUEST.set(None)


def current() -> dict[str, str] | None:
    """What :func:`bind` attached, or None outside a request."""
    return _REQUEST.get()


class RequestFilter(logging.Filter):
    """Adds ``request_id``, ``method`` and ``path`` of the current request to each record (``-``
    and None outside a request). Put it on a handler: a handler's filters see every record it
    writes, whichever logger it came from."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _REQUEST.get()
        if bound is not None:
            for key, value in bound.items():
                if getattr(record, key, None) in (None, "-"):
                    setattr(record, key, value)
        elif not hasattr(record, "request_id"):
            record.request_id = "-"
        return True


def _time(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


def access_fields(args: dict) -> dict[str, Any]:
    """The fields of a gunicorn access line, from its atoms (never ``r`` or ``q``: they hold the
    query string). config/gunicorn.conf.py passes them as the record's ``extra``: demo/logsafe.py
    flattens every record's arguments into its message when the record is made."""
    fields: dict[str, Any] = {}
    rid = args.get("{x-request-id}o")
    if rid:
        fields["request_id"] = str(rid)
    if args.get("m"):
        fields["method"] = str(args["m"])
    if args.get("U") is not None:
        fields["path"] = str(args["U"])
    try:
        fields["status"] = int(str(args.get("s")).split()[0])
    except (TypeError, ValueError, IndexError):
        pass
    micros = args.get("D")
    if isinstance(micros, int):
        fields["duration_ms"] = round(micros / 1000, 3)
    if args.get("h"):
        fields["remote_addr"] = str(args["h"])
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (see the module's docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:   # a broken format string: keep what was given
            message = f"{record.msg!r} {record.args!r}"
        entry: dict[str, Any] = {
            "time": _time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(message),
        }
        for key in ("request_id", "method", "path", "status", "duration_ms", "remote_addr"):
            value = getattr(record, key, None)
            if value not in (None, "-"):
                entry[key] = value
        if "path" in entry:
            entry["path"] = str(entry["path"]).split("?", 1)[0]
        text = record.exc_text
        if record.exc_info and not text:
            text = self.formatException(record.exc_info)
        if text:
            entry["exception"] = scrub(text)
        if record.stack_info:
            entry["stack"] = scrub(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The usual one-line text format, with the message and traceback masked like
    :class:`JsonFormatter`'s (for loggers demo/logsafe.py does not watch)."""

    def format(self, record: logging.LogRecord) -> str:
        if not hasattr(record, "request_id"):
            record.request_id = "-"
        return scrub(super().format(record))


def handler(log_format: str, stream=None) -> logging.Handler:
    """A stream handler (stderr by default) writing ``log_format`` ("text" or "json") lines,
    with the request filter on."""
    out = logging.StreamHandler(stream or sys.stderr)
    out.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter(TEXT_FORMAT))
    out.addFilter(RequestFilter())
    return out


def configure(log_format: str, level: str | int) -> None:
    """Set up the root logger for ``gbc-demo`` (replaces ``logging.basicConfig``)."""
    logging.basicConfig(level=level, handlers=[handler(log_format)])


def gunicorn_config(log_format: str, level: str) -> dict:
    """A ``logging.config.dictConfig`` dictionary for gunicorn's ``logconfig_dict``: the apps'
    records and gunicorn's error log on stderr, access lines on stdout, all in ``log_format``."""
    if log_format == "json":
        formatter = {"()": "demo.jsonlog.JsonFormatter"}
    else:
        formatter = {"()": "demo.jsonlog.TextFormatter", "fmt": GUNICORN_TEXT_FORMAT,
                     "datefmt": "[%Y-%m-%d %H:%M:%S %z]"}
    access = formatter if log_format == "json" else {"()": "demo.jsonlog.TextFormatter", "fmt": "%(message)s"}
    stream = {"class": "logging.StreamHandler", "filters": ["request"]}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": "demo.jsonlog.RequestFilter"}},
        "formatters": {"main": formatter, "access": access},
        "handlers": {
            "console": {**stream, "formatter": "main", "stream": "ext://sys.stderr"},
            "access": {**stream, "formatter": "access", "stream": "ext://sys.stdout"},
        },
        "root": {"level": level, "handlers": ["console"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["console"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
        },
    }

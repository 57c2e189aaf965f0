"""Log records without secrets, whatever the log level (no Flask).

Libraries log secrets when set to DEBUG: Authlib logs every token it issues
("Issue token {...}") and the PKCE verifier it sends, SQLAlchemy logs the
parameters of every statement and, at DEBUG, every row it reads (the sandbox's
pending authorizations hold the client's ``state``), urllib3 and werkzeug log
request lines that may carry ``?code=`` or ``?access_token=``. Capping those
loggers at INFO (demo/web.py does it for Authlib) holds only until someone
sets them to DEBUG again. :class:`SecretFilter` holds at every level: each app
installs it when it is made (:func:`install`) as part of the logging module's
record factory, so every record of every logger of the process passes through
it when it is made, whenever that logger was created (Flask's ``app.logger``,
gunicorn's access log, a library imported later). It

- masks the values of secret-named fields (``access_token``, ``refresh_token``,
  ``code``, ``code_verifier``, ``state``, ``client_secret``, ``token``, …) in
  dict reprs, JSON, query strings and form bodies, and ``Bearer``/``Basic``
  credentials, in the message and in a logged traceback;
- replaces SQLAlchemy's row and parameter lines with a note (stored values are
  opaque to a filter, so none is shown).

What it cannot see is a secret with no name next to it (a bare value in an
exception's text): the code never logs one that way.

Masked values keep their last 4 characters (:func:`demo.tokens.mask`), enough
to tell two tokens apart in a log.
"""
from __future__ import annotations

import logging
import re

from .tokens import mask

#: field names whose values are secrets wherever they appear in a log line
SECRET_FIELDS = ("access_token", "refresh_token", "id_token", "client_access_token", "registration_access_token",
                 "code", "code_verifier", "state", "client_secret", "token", "secret", "password", "api_token",
                 "webhook_secret", "assertion")
_NAMES = "|".join(sorted(SECRET_FIELDS, key=len, reverse=True))

_I = re.IGNORECASE
#: 'name': 'value' and ('name', 'value') (dict and tuple reprs, JSON), the value maybe bytes (b'...')
_QUOTED = re.compile(rf"""(?P<key>(?P<q>['"])(?:{_NAMES})(?P=q)\s*[:,]\s*b?)(?P<vq>['"])(?P<value>[^'"]*)(?P=vq)""", _I)
#: name=value, name = value, name%3Dvalue (query strings, forms, reprs)
_PAIR = re.compile(rf"(?P<key>(?:(?<![A-Za-z0-9_])|(?<=%[0-9A-Fa-f]{{2}}))(?:{_NAMES})\s*(?:=|%3D)\s*b?['\"]?)"
                   rf"(?P<value>[^&\s'\"<>;,)]+)", _I)
#: name: 'value' (8 characters or more), or name: value unquoted when it looks like a token (16 or more:
#: "state: authorized" is a sentence, not a secret)
_LABEL = re.compile(rf"(?P<key>(?<![A-Za-z0-9_])(?:{_NAMES})\s*:\s*(?:b?['\"](?=[A-Za-z0-9._~+/=%-]{{8}})|"
                    rf"(?=[A-Za-z0-9._~+/=%-]{{16}})))(?P<value>[A-Za-z0-9._~+/=%-]+)", _I)
_CREDENTIALS = re.compile(r"(?P<key>\b(?:Bearer|Basic)\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})", _I)

#: the loggers an app's requests pass through; each gets the filter (children too, see install)
LOGGERS = ("authlib", "urllib3", "requests", "werkzeug", "sqlalchemy.engine", "demo", "gunicorn")

_SQL_PARAMETERS = "[%s] %r"
_SQL_ROW = "Row %r"


def scrub(text: str) -> str:
    """``text`` with the value of every secret-named field and credential masked."""
    text = _QUOTED.sub(lambda m: f"{m['key']}{m['vq']}{_masked(m['value'])}{m['vq']}", text)
    text = _PAIR.sub(lambda m: m["key"] + _masked(m["value"]), text)
    text = _LABEL.sub(lambda m: m["key"] + _masked(m["value"]), text)
    return _CREDENTIALS.sub(lambda m: m["key"] + mask(m["value"]), text)


def _masked(value: str) -> str:
    return value if "••••" in value else mask(value)   # already masked by an earlier pattern


class SecretFilter(logging.Filter):
    """Masks secrets in each record of the logger it is on (see the module's docstring)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("sqlalchemy"):
            if record.msg == _SQL_ROW:
                return False
            if record.msg == _SQL_PARAMETERS and record.args:
                record.msg, record.args = "[%s] [SQL parameters not logged: they may hold secrets]", record.args[:1]
                return True
        try:
            message = record.getMessage()
        except Exception:   # a broken format string: keep what was given, masked
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = scrub(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = scrub(self._formatter.formatException(record.exc_info))
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


_FILTER = SecretFilter()
_DROPPED = "[%s not logged: it may hold secrets]"


def _scrubbing(factory):
    def make_record(*args, **kwargs) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        if not _FILTER.filter(record):        # a line that must not be written at all
            record.msg, record.args, record.exc_info, record.exc_text = _DROPPED, ("a database row",), None, None
        return record

    make_record.gbc_scrubbing = True
    return make_record


def install(extra: tuple[str, ...] = ()) -> None:
    """Scrub every log record of the process when it is made: the logging module's record factory
    is wrapped once (a second call changes nothing). A filter on a logger would only see records
    of that very logger, not of its children nor of loggers made later (Flask's ``app.logger``,
    gunicorn's access log); the factory sees them all. The filter also goes on the loggers of
    :data:`LOGGERS` (and ``extra``), for handlers that build records themselves."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "gbc_scrubbing", False):
        logging.setLogRecordFactory(_scrubbing(factory))
    prefixes = LOGGERS + tuple(extra)
    names = set(prefixes)
    names.update(name for name, logger in logging.Logger.manager.loggerDict.items()
                 if isinstance(logger, logging.Logger) and name.startswith(tuple(p + "." for p in prefixes)))
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)

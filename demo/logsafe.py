"""Log records without secrets, whatever the log level (no Flask).

Libraries log secrets when set to DEBUG: Authlib logs every token it issues
("Issue token {...}") and the PKCE verifier it sends, SQLAlchemy logs the
parameters of every statement and, at DEBUG, every row it reads (the sandbox's
pending authorizations hold the client's ``state``), urllib3 and werkzeug log
request lines that may carry ``?code=`` or ``?access_token=``. Capping those
loggers at INFO (demo/web.py does it for Authlib) holds only until someone
sets them to DEBUG again. :class:`SecretFilter` holds at every level: each app
installs it on those loggers when it is made (:func:`install`), and it

- masks the values of secret-named fields (``access_token``, ``refresh_token``,
  ``code``, ``code_verifier``, ``state``, ``client_secret``, ``token``, …) in
  dict reprs, JSON, query strings and form bodies, and ``Bearer``/``Basic``
  credentials, in the message and in a logged traceback;
- drops SQLAlchemy's row lines and replaces its parameter lines with a note
  (stored values are opaque to a filter, so none is shown).

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

_QUOTED = re.compile(rf"""(?P<key>(?P<q>['"])(?:{_NAMES})(?P=q)\s*:\s*)(?P<vq>['"])(?P<value>[^'"]*)(?P=vq)""")
_PAIR = re.compile(rf"(?P<key>(?<![A-Za-z0-9_])(?:{_NAMES})=)(?P<value>[^&\s'\"<>;,)]+)")
_LABEL = re.compile(rf"(?P<key>(?<![A-Za-z0-9_])(?:{_NAMES})\s*:\s*)(?P<vq>['\"])(?P<value>[A-Za-z0-9._~+/=-]{{8,}})")
_CREDENTIALS = re.compile(r"(?P<key>\b(?:Bearer|Basic)\s+)(?P<value>[A-Za-z0-9._~+/=-]{8,})")

#: the loggers an app's requests pass through; each gets the filter (children too, see install)
LOGGERS = ("authlib", "urllib3", "requests", "werkzeug", "sqlalchemy.engine", "demo", "flask.app")

_SQL_PARAMETERS = "[%s] %r"
_SQL_ROW = "Row %r"


def scrub(text: str) -> str:
    """``text`` with the value of every secret-named field and credential masked."""
    text = _QUOTED.sub(lambda m: f"{m['key']}{m['vq']}{mask(m['value'])}{m['vq']}", text)
    text = _PAIR.sub(lambda m: m["key"] + mask(m["value"]), text)
    text = _LABEL.sub(lambda m: m["key"] + m["vq"] + mask(m["value"]), text)
    return _CREDENTIALS.sub(lambda m: m["key"] + mask(m["value"]), text)


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


def install(extra: tuple[str, ...] = ()) -> None:
    """Put the filter on the loggers named in :data:`LOGGERS` (and ``extra``) and on every
    existing logger below them. A logger's filters see only records logged on that very logger,
    not its children's, so each child gets it too: call this after the libraries are imported
    (the apps do at the end of ``create_app``)."""
    prefixes = LOGGERS + tuple(extra)
    names = set(prefixes)
    names.update(name for name, logger in logging.Logger.manager.loggerDict.items()
                 if isinstance(logger, logging.Logger) and name.startswith(tuple(p + "." for p in prefixes)))
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)

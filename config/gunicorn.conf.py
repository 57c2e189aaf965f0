"""gunicorn settings for both apps (production serving):

    .venv/bin/gunicorn -c config/gunicorn.conf.py app:site
    .venv/bin/gunicorn -c config/gunicorn.conf.py app:sandbox

Everything comes from the same layered configuration as the apps (``GBC_*``, instance/gbc.toml):

- ``workers`` x ``threads`` (GBC_WORKERS, GBC_THREADS; 2 x 8): gthread workers, because the site
  waits on the custodian (token calls, feed downloads) and a sync worker would sit idle meanwhile;
- ``bind`` (GBC_BIND): by default ``site_host:site_port`` for ``app:site`` and
  ``sandbox_host:sandbox_port`` for ``app:sandbox``;
- ``timeout`` and ``graceful_timeout``: longer than the slowest request, which waits for a token
  call (``http_timeout``) and then one download (``http_timeout`` for its headers,
  ``http_max_seconds`` for its body). GBC_GRACEFUL_TIMEOUT overrides the second. On SIGTERM a
  worker stops accepting, finishes its requests in flight within ``graceful_timeout``, stops the
  sandbox's webhook delivery thread and closes its database connections (``worker_exit``);
- logs (``log_format``, ``log_level``): the apps' records and gunicorn's own on stderr, access lines
  on stdout, as text or JSON lines (demo/jsonlog.py), with the request id and never a query string
  or a secret.

Options given on the command line win over this file (``--workers 4``, ``--timeout 120``).
"""
import os
import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:   # the repository's demo/ (its templates and config/ sit beside it)
    sys.path.insert(0, _ROOT)

from gunicorn.glogging import Logger  # noqa: E402

from demo import jsonlog  # noqa: E402
from demo.config import load_config  # noqa: E402

_settings = load_config()
#: the app this server runs, from its command line (app:site or app:sandbox)
_role = "sandbox" if any(arg.endswith(":sandbox") for arg in sys.argv[1:]) else "site"

wsgi_app = f"app:{_role}"
chdir = _ROOT
proc_name = f"gbc-{_role}"
bind = [_settings["bind"] or f"{_settings[_role + '_host']}:{_settings[_role + '_port']}"]
worker_class = "gthread"
workers = int(_settings["workers"])
threads = int(_settings["threads"])

#: the slowest request: a token call, then a download (its headers, then its body)
slowest_request = 2 * float(_settings["http_timeout"]) + float(_settings["http_max_seconds"])
# gthread: the timeout bounds a worker that stops answering the master, not one request; it is still
# kept above the slowest request so that a worker stuck in one is never taken for dead
timeout = int(slowest_request) + 10
graceful_timeout = int(-(-float(_settings["graceful_timeout"]) // 1)) or int(slowest_request) + 5   # whole seconds
keepalive = 5
# no runtime control socket (gunicornc): the site and the sandbox would share its default path
control_socket_disable = True

# X-Forwarded-* are read by the apps only, for exactly proxy_hops proxies (werkzeug ProxyFix in
# demo/web.py). gunicorn would otherwise take X-Forwarded-Proto from any loopback client as https.
forwarded_allow_ips = ""
secure_scheme_headers = {}

# logs: never the request line (%(r)s) or the query (%(q)s); %(U)s is the path alone
loglevel = str(_settings["log_level"]).lower()
errorlog = "-"
accesslog = "-"
access_log_format = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms %({x-request-id}o)s'


class AccessFieldsLogger(Logger):
    """gunicorn's logger, whose access lines also carry their fields (method, path without query,
    status, duration, request id) as record attributes, for the JSON lines."""

    def access(self, resp, req, environ, request_time):
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        try:
            self.access_log.info(self.cfg.access_log_format, self.atoms_wrapper_class(atoms),
                                 extra=jsonlog.access_fields(atoms))
        except Exception:
            self.exception("access log line failed")


logger_class = AccessFieldsLogger
logconfig_dict = jsonlog.gunicorn_config(_settings["log_format"], str(_settings["log_level"]).upper())

# the workers' heartbeat files in memory: a container's disk may stall them (gunicorn makes them with mkstemp)
_SHM = "/dev/shm"  # nosec B108 - a fixed system folder, files private to gunicorn
if os.path.isdir(_SHM):
    worker_tmp_dir = _SHM


def on_starting(server):
    """In the master, before any worker: build the app once, so that its database is created (or
    migrated) and the sandbox's registrations written by one process. Workers starting together on
    a fresh database otherwise race to do it, and the loser fails to boot. Nothing built here is
    kept: the webhook thread is stopped and the connections closed before the workers fork."""
    from demo.sandbox import create_app as create_sandbox
    from demo.site import create_app as create_site

    flask_app = (create_sandbox if _role == "sandbox" else create_site)(_settings)
    dispatcher = flask_app.extensions.get("gbc_webhooks")
    if dispatcher is not None:
        dispatcher.stop()
    for name in ("gbc_site", "gbc_sandbox"):
        ctx = flask_app.extensions.get(name)
        if ctx is not None:
            ctx.db.dispose()


def when_ready(server):
    server.log.info("gbc %s: %d workers x %d threads on %s, timeout %ss, graceful %ss, %s logs",
                    _role, workers, threads, ", ".join(bind), timeout, graceful_timeout, _settings["log_format"])


def worker_exit(server, worker):
    """In the worker, after its last request: stop the webhook delivery thread (after the attempt
    in flight) and close pooled database connections."""
    entry = sys.modules.get("app")
    apps = list(entry.loaded()) if entry is not None and hasattr(entry, "loaded") else []
    wsgi = getattr(worker, "wsgi", None)
    if wsgi is not None and hasattr(wsgi, "extensions") and wsgi not in apps:
        apps.append(wsgi)
    for flask_app in apps:
        dispatcher = flask_app.extensions.get("gbc_webhooks")
        if dispatcher is not None:
            dispatcher.stop(timeout=float(_settings["sandbox_webhook_timeout"]) + 2)
            server.log.info("webhook delivery stopped (worker %s)", worker.pid)
        for name in ("gbc_site", "gbc_sandbox"):
            ctx = flask_app.extensions.get(name)
            if ctx is not None:
                ctx.db.dispose()

"""``gbc-demo``: start the demo site and, unless ``GBC_SANDBOX=false``, the
embedded PCE sandbox custodian, each on its own origin.

``gbc-demo rotate-keys`` re-encrypts the secrets both databases keep under the current
secret key (see :mod:`demo.keys`)."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from werkzeug.serving import WSGIRequestHandler, make_server

from . import jsonlog
from .config import ConfigError, load_config
from .storage import SchemaOutdated
from .web import insecure_embedding


class PathOnlyRequestHandler(WSGIRequestHandler):
    """Access log lines without the query string: callbacks carry codes and states."""

    def log_request(self, code="-", size="-"):
        path = self.path.split("?", 1)[0]
        self.log("info", '"%s %s %s" %s %s', self.command, path, self.request_version, code, size)


def serve(host: str, port: int, app):
    return make_server(host, port, app, threaded=True, request_handler=PathOnlyRequestHandler)


def build_servers(settings: dict):
    from .sandbox import create_app as create_sandbox
    from .site import create_app as create_site

    servers = [("Demo third-party site", settings["site_url"],
                serve(settings["site_host"], int(settings["site_port"]), create_site(settings)))]
    if settings["sandbox"]:
        servers.append(("PCE sandbox custodian", settings["sandbox_url"],
                         serve(settings["sandbox_host"], int(settings["sandbox_port"]),
                               create_sandbox(settings))))
    return servers


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def startup_warnings(settings: dict) -> list[str]:
    """What to tell the operator before serving: settings that cannot work as configured."""
    return [f"warning: GBC_EMBED_ORIGINS is set, so the session cookies are Secure (SameSite=None; Partitioned, "
            f"for the frame), but {url} is plain http on a host that is not loopback: browsers will drop "
            f"those cookies and every form will fail. Serve it over https." for url in insecure_embedding(settings)]


ROTATE_HELP = """Re-encrypt every secret both databases keep (client secrets, tokens, PKCE verifiers, API
tokens, webhook secrets) under the current secret key, in batches, one transaction each. Values
that only an old key in secret_key_fallbacks opens are re-encrypted; values no key opens are
reported and left alone. Run it once the servers run with the new secret_key and the old one in
secret_key_fallbacks (or use --new-key). Safe to run again, and while the servers run: a value a
server changes meanwhile is left as the server wrote it. Exit status 1 when some value is unreadable."""


def rotate_keys(settings: dict, args) -> int:
    from . import keys

    try:
        if args.new_key:
            keys.new_instance_key(settings)
            print(f"New secret key written to {Path(settings['instance_path']) / keys.KEY_FILE}; the previous "
                  f"one is kept in {keys.fallback_file(settings)} until --drop-old.", flush=True)
        if args.drop_old:
            report, dropped = keys.drop_fallback_file(settings, batch=args.batch)
        else:
            report, dropped = keys.rotate(settings, batch=args.batch, dry_run=args.dry_run), False
    except keys.RotationError as exc:
        print(f"gbc-demo rotate-keys: {exc}", file=sys.stderr)
        return 2
    for line in report.lines():
        print(line, flush=True)
    if args.new_key:
        print("Start (or restart) the servers now: running ones still use the previous key. Sessions, forms, "
              "preset links and receipt links made before keep working until gbc-demo rotate-keys --drop-old.")
    elif dropped:
        print(f"Removed {keys.fallback_file(settings)}: the previous key is gone. Restart the servers.")
    elif args.drop_old:
        print(f"No {keys.fallback_file(settings)} to remove.")
    elif not args.dry_run and settings["secret_key_fallbacks"] and not report.total("changed"):
        print("Every readable value is under the current key: secret_key_fallbacks may be emptied (then restart; "
              "sessions, preset links and receipt links made under an old key stop working).")
    if report.total("unreadable"):
        print(f"warning: {report.total('unreadable')} value(s) open with no configured key; they were left as "
              "they are. Add the key they were written with to secret_key_fallbacks and run this again.",
              file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gbc-demo", description=__doc__)
    parser.add_argument("--site-port", type=int, help="port of the demo site (GBC_SITE_PORT, default 5000)")
    parser.add_argument("--sandbox-port", type=int, help="port of the sandbox (GBC_SANDBOX_PORT, default 5001)")
    parser.add_argument("--no-sandbox", action="store_true", help="do not start the embedded custodian")
    commands = parser.add_subparsers(dest="command", metavar="{rotate-keys}",
                                     help="without a command, gbc-demo starts the servers")
    rotate = commands.add_parser("rotate-keys", help="re-encrypt stored secrets under the current secret key",
                                 description=ROTATE_HELP)
    step = rotate.add_mutually_exclusive_group()
    step.add_argument("--new-key", action="store_true",
                      help="with the servers stopped: replace instance/secret_key with a new random key (the "
                           "old one kept in instance/secret_key.old, still accepted), then re-encrypt")
    step.add_argument("--drop-old", action="store_true",
                      help="after restarting: re-encrypt, then delete instance/secret_key.old when nothing "
                           "needs it any more")
    step.add_argument("--dry-run", action="store_true", help="count only; change nothing")
    rotate.add_argument("--batch", type=_positive, default=200, help="rows per transaction (default 200)")
    args = parser.parse_args(argv)
    overrides = {}
    if args.site_port is not None:
        overrides["site_port"] = args.site_port
    if args.sandbox_port is not None:
        overrides["sandbox_port"] = args.sandbox_port
    if args.no_sandbox:
        overrides["sandbox"] = False
    try:
        settings = load_config(overrides)
    except ConfigError as exc:
        print(f"gbc-demo: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "rotate-keys":
        return rotate_keys(settings, args)
    # text or JSON lines (log_format), a request id on each record of a request, secrets masked
    jsonlog.configure(settings["log_format"], settings["log_level"])
    try:
        servers = build_servers(settings)
    except OSError as exc:
        print(f"gbc-demo: cannot listen: {exc}", file=sys.stderr)
        return 2
    except SchemaOutdated as exc:
        print(f"gbc-demo: {exc}", file=sys.stderr)
        return 2
    for name, url, _server in servers:
        print(f"{name}: {url}", flush=True)
    if settings["embed_origins"]:
        print(f"Pages that may frame both apps: {', '.join(settings['embed_origins'])}", flush=True)
    for warning in startup_warnings(settings):
        print(warning, file=sys.stderr, flush=True)
    if not settings["sandbox"]:
        print(f"(sandbox not started; authorize URL is {settings['authorize_url']})", flush=True)
    print("Press Ctrl+C to stop.", flush=True)

    threads = [threading.Thread(target=srv.serve_forever, daemon=True) for _n, _u, srv in servers]
    for t in threads:
        t.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    for _n, _u, srv in servers:
        srv.shutdown()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

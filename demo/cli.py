"""``gbc-demo``: start the demo site and, unless ``GBC_SANDBOX=false``, the
embedded PCE sandbox custodian, each on its own origin."""
from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from werkzeug.serving import WSGIRequestHandler, make_server

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


def startup_warnings(settings: dict) -> list[str]:
    """What to tell the operator before serving: settings that cannot work as configured."""
    return [f"warning: GBC_EMBED_ORIGINS is set, so the session cookies are Secure (SameSite=None; Partitioned, "
            f"for the frame), but {url} is plain http on a host that is not loopback: browsers will drop "
            f"those cookies and every form will fail. Serve it over https." for url in insecure_embedding(settings)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gbc-demo", description=__doc__)
    parser.add_argument("--site-port", type=int, help="port of the demo site (GBC_SITE_PORT, default 5000)")
    parser.add_argument("--sandbox-port", type=int, help="port of the sandbox (GBC_SANDBOX_PORT, default 5001)")
    parser.add_argument("--no-sandbox", action="store_true", help="do not start the embedded custodian")
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
    logging.basicConfig(level=settings["log_level"], format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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

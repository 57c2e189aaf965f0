"""The embedded PCE sandbox data custodian (the utility side), as a Flask app."""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

from flask import Flask
from sqlalchemy.exc import IntegrityError

from .. import health, logsafe, ratelimit
from ..config import config_file, load_config
from ..lookup import CustomerDirectory
from ..storage import Database
from ..web import make_app
from . import registrations
from .models import Base, ClientRow


@dataclass
class SandboxContext:
    settings: dict
    db: Database
    directory: CustomerDirectory


def create_app(settings: dict | None = None) -> Flask:
    settings = settings if settings is not None else load_config()
    app = make_app(__name__, settings, role="sandbox", error_template="sandbox/error.html",
                   too_many_template="sandbox/too_many.html")
    ctx = SandboxContext(settings, Database(settings["sandbox_database_url"], Base.metadata),
                         CustomerDirectory.from_file(config_file(settings, "sandbox_customers_file")))
    app.extensions["gbc_sandbox"] = ctx
    register_clients(ctx)

    from ..web import csrf
    from . import api_v2, dashboard, espi_api, oauth, views, webhooks

    app.extensions["gbc_oauth_server"] = oauth.create_server(app)
    app.register_blueprint(views.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(espi_api.bp)
    app.register_blueprint(api_v2.bp)
    csrf.exempt(api_v2.bp)
    app.register_blueprint(oauth.bp)
    app.register_blueprint(health.blueprint(ctx.db))   # /healthz, /readyz
    # per-IP caps on the customer's lookup and passcode forms and the dashboard sign-in
    ratelimit.init_app(app, settings, prefix="gbc-sandbox")
    if settings.get("sandbox_webhooks"):
        dispatcher = webhooks.Dispatcher(ctx.db, settings).start()
        app.extensions["gbc_webhooks"] = dispatcher
        # a server that forks after loading the app (gunicorn --preload) gets a
        # delivery thread in every worker; claims keep them from double-sending
        ref = weakref.ref(dispatcher)
        os.register_at_fork(after_in_child=lambda: _restart_in_child(ref))

    @app.context_processor
    def portal_globals():
        return {"utility_name": settings["utility_name"], "utility": settings["utility"]}

    logsafe.install()   # no secret in any log line, whatever the level (demo/logsafe.py)
    return app


def _restart_in_child(ref) -> None:
    dispatcher = ref()
    if dispatcher is not None and not dispatcher.stopped:
        dispatcher.db.engine.dispose(close=False)   # never share the parent's pooled connections
        dispatcher.start()


def register_clients(ctx: SandboxContext) -> None:
    """Register (or update) the third parties named in the configuration.

    A new registration takes everything from the configuration. An existing one follows
    the configuration too, except its secret and redirect URIs once the third party
    changed them on the dashboard (``dashboard_managed``): a restart must not undo that.
    Names, scope of use and sandbox/live mode always come from the configuration.
    """
    for attempt in range(3):
        try:
            with ctx.db.session() as s:
                for client in ctx.settings.get("sandbox_clients", []):
                    row = s.get(ClientRow, client["client_id"])
                    if row is None:
                        row = ClientRow(client_id=client["client_id"], dashboard_managed=False)
                        s.add(row)
                    registrations.apply_config(row, client, credentials=not row.dashboard_managed)
            return
        except IntegrityError:
            # another worker or machine, starting at the same moment, registered one first: its row
            # is there now, so the next attempt updates it instead of adding it
            if attempt == 2:
                raise

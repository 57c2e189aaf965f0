"""The embedded PCE sandbox data custodian (the utility side), as a Flask app."""
from __future__ import annotations

from dataclasses import dataclass

from flask import Flask

from ..config import config_file, load_config
from ..lookup import CustomerDirectory
from ..storage import Database
from ..tokens import digest
from ..web import make_app
from .models import Base, ClientRow


@dataclass
class SandboxContext:
    settings: dict
    db: Database
    directory: CustomerDirectory


def create_app(settings: dict | None = None) -> Flask:
    settings = settings if settings is not None else load_config()
    app = make_app(__name__, settings, role="sandbox", error_template="sandbox/error.html")
    ctx = SandboxContext(settings, Database(settings["sandbox_database_url"], Base.metadata),
                         CustomerDirectory.from_file(config_file(settings, "sandbox_customers_file")))
    app.extensions["gbc_sandbox"] = ctx
    register_clients(ctx)

    from . import espi_api, oauth, views

    app.extensions["gbc_oauth_server"] = oauth.create_server(app)
    app.extensions["gbc_resource_protector"] = oauth.create_protector()
    app.register_blueprint(views.bp)
    app.register_blueprint(espi_api.bp)
    app.register_blueprint(oauth.bp)

    @app.context_processor
    def portal_globals():
        return {"utility_name": settings["utility_name"], "utility": settings["utility"]}

    return app


def register_clients(ctx: SandboxContext) -> None:
    """Register (or update) the third parties named in the configuration."""
    with ctx.db.session() as s:
        for client in ctx.settings.get("sandbox_clients", []):
            row = s.get(ClientRow, client["client_id"]) or ClientRow(client_id=client["client_id"])
            row.secret_hash = digest(client["client_secret"])
            row.company_name = client.get("company_name", client["client_id"])
            row.company_website = client.get("company_website", "")
            row.scope_of_use = client.get("scope_of_use", "")
            row.redirect_uris = list(dict.fromkeys(client.get("redirect_uris", [])))
            s.merge(row)

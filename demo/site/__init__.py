"""The demo third-party website, as a Flask app."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

from flask import Flask, url_for

from .. import health, logsafe
from ..config import config_file, load_config
from ..lookup import CustomerDirectory
from ..scope import describe_function_block
from ..storage import Database, Vault
from ..web import make_app
from . import (
    client,
    integrator,  # noqa: F401 - its tables join Base.metadata before the database opens
)
from .models import Base


@dataclass
class SiteContext:
    settings: dict
    db: Database
    vault: Vault
    test_customers: list  # the utility's published test identifiers (PCE's page)


def create_app(settings: dict | None = None) -> Flask:
    settings = settings if settings is not None else load_config()
    app = make_app(__name__, settings, role="site", error_template="site/error.html")
    path = config_file(settings, "sandbox_customers_file")
    customers = CustomerDirectory.from_file(path).test_customers if path.exists() else []
    app.extensions["gbc_site"] = SiteContext(
        settings=settings,
        db=Database(settings["database_url"], Base.metadata),
        vault=Vault.from_settings(settings),
        test_customers=customers,
    )
    from . import views

    app.register_blueprint(views.bp)
    from . import decoder_views, integrator_views

    app.register_blueprint(decoder_views.bp)
    app.register_blueprint(integrator_views.bp)
    from .tool_views import bp as tools_bp  # token tools, readiness poll, exchange bodies
    app.register_blueprint(tools_bp)
    from .meter_views import bp as meter_bp  # the meter page (one usage point of a run)
    app.register_blueprint(meter_bp)
    from . import otp_views, presenter_views, share_views  # sales demos and manual OTP testing
    app.register_blueprint(presenter_views.bp)
    app.register_blueprint(share_views.bp)
    app.register_blueprint(otp_views.bp)
    app.register_blueprint(health.blueprint(app.extensions["gbc_site"].db))   # /healthz, /readyz

    limits = client.Limits.from_settings(settings)

    @app.before_request
    def download_limits() -> None:
        """Every request fetches custodian XML within the configured caps (``http_max_body``,
        ``http_max_seconds``): see :func:`.client.fetch_xml`."""
        client.use_limits(limits)

    app.jinja_env.globals.update(describe_fb=describe_function_block, ts=format_ts, period=format_period)
    app.jinja_env.filters["urlencode_all"] = lambda value: quote(str(value), safe="")

    @app.context_processor
    def site_globals():
        on = presenter_views.presenter_on(settings)
        brand = {"company_name": settings["company_name"]}
        if on:   # branding belongs to presenter mode; the normal mode stays plain
            brand.update(accent=settings["brand_accent"] or None, welcome=settings["brand_welcome"] or "",
                         logo_url=url_for("presenter.logo") if presenter_views.current_logo() else None)
        return {
            "brand": brand,
            "sandbox_url": settings["sandbox_url"] if settings["sandbox"] else None,
            # presenter mode (templates/site/base.html): on, technical panels shown, the utility's short name
            "presenter": {"on": on, "technical": presenter_views.technical_shown(settings),
                          "utility": settings["utility"]},
        }

    logsafe.install()   # no secret in any log line, whatever the level (demo/logsafe.py)
    return app


def format_ts(epoch: int | None) -> str:
    """An epoch timestamp as a date for people ("—" when absent)."""
    if not epoch:
        return "—"
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_period(period: dict | None) -> str:
    if not period:
        return "—"
    start, duration = period.get("start"), period.get("duration")
    if not duration:
        return f"from {format_ts(start)}, until revoked"
    return f"{format_ts(start)} → {format_ts(int(start) + int(duration))}"

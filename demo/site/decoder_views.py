"""The /decode page (thin: the work is in :mod:`.scope_view` and :mod:`demo.scope`), and the
template helpers that explain and compare scopes on the run page.

GET ``/decode?input=…`` decodes a shared link; the page's own form POSTs (with its CSRF token)
so that pasted codes and states stay out of URLs, browser history and access logs.
"""
from __future__ import annotations

from flask import Blueprint, render_template, request

from ..scope import Difference, Explanation, Scope, compare, explain
from .scope_view import MAX_INPUT, DecodeError, decode
from .views import ctx, current_settings

bp = Blueprint("decoder", __name__)

EXAMPLES = (
    ("PCE scope with a phone prefill", "FB=4_16_51;AdditionalScope=auth-phone-1111111111"),
    ("Percent-encoded scope", "FB%3D4_16_51%3BHistoryLength%3D34128000%3BAdditionalScope%3D"
                              "auth-email-uapi-test-residential%2540example.com"),
    ("Granted scope", "FB=1_3_4_5_13_16_51;IntervalDuration=900;BlockDuration=daily;HistoryLength=63072000;"
                      "AccountCollection=4"),
    ("A scope with a mistake", "FB=4_16_51;HistoryLength=2y;AdditionalScope=auth-fax-5551234"),
)


@bp.route("/decode", methods=["GET", "POST"])
def decode_page():
    raw = request.form.get("input") if request.method == "POST" else request.args.get("input")
    if raw is None:
        return render_template("site/decode.html", raw="", decoded=None, error=None, examples=EXAMPLES,
                               max_input=MAX_INPUT, nav_active="decode")
    with ctx().db.session() as s:
        eff = current_settings(s)
    try:
        decoded = decode(raw, client_id=eff["client_id"], redirect_uri=eff["redirect_uri"])
    except DecodeError as exc:
        return render_template("site/decode.html", raw=raw[:MAX_INPUT], decoded=None, error=str(exc),
                               examples=EXAMPLES, max_input=MAX_INPUT, nav_active="decode"), 400
    # echo the input with secrets replaced: a pasted live code or state is not sent back
    shown = decoded.share_input if decoded.sensitive else decoded.input
    return render_template("site/decode.html", raw=shown, decoded=decoded, error=None, examples=EXAMPLES,
                           max_input=MAX_INPUT, nav_active="decode"), 200 if decoded.ok else 422


@bp.app_template_global("explain_scope")
def explain_scope(scope: Scope | None) -> list[Explanation]:
    """:func:`demo.scope.explain` for templates (None: nothing to explain)."""
    return explain(scope) if scope is not None else []


@bp.app_template_global("compare_scopes")
def compare_scopes(requested: dict | None, granted: dict | None,
                   authorization: dict | None = None) -> list[Difference]:
    """Requested vs granted for the run page, from :func:`.runs.scope_view` dicts (``{"raw",
    "scope"}`` or ``{"raw", "error"}``) and the ESPI Authorization (its authorizedPeriod gives
    the granted end)."""
    asked = (requested or {}).get("scope")
    got = (granted or {}).get("scope")
    period = (authorization or {}).get("authorized_period") if isinstance(authorization, dict) else None
    return compare(asked, got, authorized_period=period)

"""Shareable preset links and the embed snippet (issue 5). Being written."""
from __future__ import annotations

from flask import Blueprint, abort

bp = Blueprint("share", __name__)


@bp.route("/share", methods=["GET", "POST"])
def share_page():
    abort(501)


@bp.get("/p/<token>")
def open_preset(token: str):
    abort(501)

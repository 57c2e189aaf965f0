"""Presenter mode, branding and the visitor's reset (issue 5). Being written."""
from __future__ import annotations

from flask import Blueprint, abort

bp = Blueprint("presenter", __name__)


@bp.post("/presenter")
def toggle():
    abort(501)


@bp.post("/reset")
def reset():
    abort(501)

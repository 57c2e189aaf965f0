"""The TEST_<scenario>_<contact> lookup builder for manual passcode testing (issue 5). Being written."""
from __future__ import annotations

from flask import Blueprint, abort

bp = Blueprint("otp_test", __name__)


@bp.route("/otp-test", methods=["GET", "POST"])
def builder():
    abort(501)

"""Steps of the whole flow as a visitor clicks them (used by the flow tests)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

TEST_IDS = {
    "residential": {"account": "111111111-1", "phone": "111-111-1111",
                    "email": "uapi-test-residential@example.com",
                    "address": "333 W EL CAMINO REAL STE 600, SUNNYVALE CA 94087"},
    "commercial": {"account": "222222222-2", "phone": "222-222-2222",
                   "email": "uapi-test-commercial@example.com",
                   "address": "333 W EL CAMINO REAL STE 700, SUNNYVALE CA 94087"},
    "badlogin": {"account": "333333333-3", "phone": "333-333-3333",
                 "email": "uapi-test-badlogin@example.com",
                 "address": "333 W EL CAMINO REAL STE 800, SUNNYVALE CA 94087"},
}
METERS = {"residential": 1, "commercial": 4}
NOT_FOUND = "We couldn't find that customer"


def connect(visitor, live, lookup_type="none", value="", blocks=(4, 16, 51), **fields):
    home = visitor.get(live.site_url + "/")
    assert home.status == 200, home.text
    form = home.form("/connect").set("lookup_type", lookup_type).set("lookup_value", value)
    form.set("function_blocks", *blocks)
    for name, val in fields.items():
        form.set(name, val)
    return form.submit(visitor)


def lookup(visitor, page, lookup_type, value):
    assert page.url.endswith("/authorize/lookup"), page.url
    return page.form("/authorize/lookup").set("method", lookup_type).set("value", value).submit(visitor)


def enter_otp(visitor, page, code=None):
    assert page.url.endswith("/authorize/verify"), page.url
    code = code if code is not None else page.text_of("test-passcode")
    assert code, "no test passcode shown"
    return page.form("/authorize/verify").set("code", code).submit(visitor)


def decide(visitor, page, decline=False, **fields):
    assert page.url.endswith("/authorize/consent"), page.url
    form = page.form("/authorize/consent")
    for name, val in fields.items():
        if isinstance(val, (list, tuple)):
            form.set(name, *val)
        else:
            form.set(name, val)
    return form.submit(visitor, button="decline" if decline else "authorize")


def full_flow(visitor, live, scenario, lookup_type, prefill=True, **connect_fields):
    value = TEST_IDS[scenario][lookup_type]
    if prefill:
        page = connect(visitor, live, lookup_type, value, **connect_fields)
    else:
        page = lookup(visitor, connect(visitor, live, **connect_fields), lookup_type, value)
    page = enter_otp(visitor, page)
    return decide(visitor, page)


def callback_params(visitor) -> dict:
    """The query of the last redirect to the site's /callback."""
    for location in reversed(visitor.history):
        if "/callback?" in location:
            return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    raise AssertionError("no callback redirect seen")


def authorize_params(visitor) -> dict:
    for location in visitor.history:
        if "/oauth/authorize?" in location:
            return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
    raise AssertionError("no authorize redirect seen")


def token_of(live, page) -> dict:
    """The token response the site stored for the run ``page`` shows (decrypted)."""
    import json

    from demo.site.models import Run

    ctx = live.site_app.extensions["gbc_site"]
    with ctx.db.session() as s:
        return json.loads(ctx.vault.decrypt(s.get(Run, page.url.rsplit("/", 1)[1]).token_enc))

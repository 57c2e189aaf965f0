"""Recording exchanges: masking rules (units), curl / requests snippets, and the recorder over
real HTTP on loopback (streamed and truncated bodies, failures, Authlib's session)."""
from __future__ import annotations

import base64
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from demo.site import client as gbc
from demo.site import exchanges as ex
from demo.site.models import Base
from demo.storage import Database

SECRET = "s3cr3t-client-secret-value"
ACCESS = "a" * 60 + "ACC1"
REFRESH = "r" * 60 + "REF1"


# ---------------------------------------------------------------- masking units


def test_mask_bearer_and_basic_headers():
    m = ex.Masker()
    basic = "Basic " + base64.b64encode(f"PCE_client:{SECRET}".encode()).decode()
    assert m.header("Authorization", basic) == "Basic PCE_client:••••alue"
    assert m.header("Authorization", f"Bearer {ACCESS}") == "Bearer ••••ACC1"
    assert m.header("Cookie", "session=abcdefghijkl1234; Path=/") == "session=••••1234; Path=/"
    assert m.header("Accept", "application/json") == "application/json"
    # what the structured pass saw is now masked wherever it turns up
    assert m.literals(f"x {SECRET} y {ACCESS}") == "x ••••alue y ••••ACC1"


def test_basic_auth_percent_encoded_secret_is_decoded_then_masked():
    m = ex.Masker()
    raw = base64.b64encode(b"client:a%2Bb%3Dc-long-secret").decode()
    assert m.header("Authorization", f"Basic {raw}") == "Basic client:••••cret"
    assert "a+b=c-long-secret" in m.secrets


@pytest.mark.parametrize("field", sorted(ex.SECRET_FORM_FIELDS))
def test_form_fields_are_masked(field):
    m = ex.Masker()
    body = f"grant_type=x&{field}=value-of-{field}-1234&redirect_uri=http%3A%2F%2Fh%2Fcb"
    out = m.form(body)
    assert f"value-of-{field}" not in out
    assert f"{field}=••••1234" in out and "redirect_uri=http%3A%2F%2Fh%2Fcb" in out


@pytest.mark.parametrize("param", sorted(ex.SECRET_QUERY_PARAMS))
def test_url_query_params_are_masked(param):
    out = ex.Masker().url(f"https://h/p?a=1&{param}=the-{param}-value-9876#frag")
    assert f"the-{param}-value" not in out and f"{param}=••••9876" in out and out.startswith("https://h/p?a=1&")


def test_json_fields_are_masked_nested_and_learnt():
    m = ex.Masker()
    body = json.dumps({"access_token": ACCESS, "refresh_token": REFRESH, "scope": "FB=4",
                       "nested": [{"client_secret": SECRET, "id_token": "i" * 30 + "IDT1"}]})
    out = m.body(body, "application/json")
    data = json.loads(out)
    assert data["access_token"] == "••••ACC1" and data["refresh_token"] == "••••REF1"
    assert data["nested"][0] == {"client_secret": "••••alue", "id_token": "••••IDT1"}
    assert data["scope"] == "FB=4"
    assert m.literals(f"later: {REFRESH}") == "later: ••••REF1"


def test_cut_json_is_masked_by_pattern():
    out = ex.Masker().body('{"token_type": "Bearer", "access_token": "' + ACCESS + '", "refresh_token": "rrrrrrrrrr12',
                           "application/json")
    assert ACCESS not in out and "rrrrrrrrrr12" not in out and "••••ACC1" in out


def test_xml_token_elements_and_literals():
    m = ex.Masker([SECRET])
    xml = f"<entry><espi:access_token>{ACCESS}</espi:access_token><x>{SECRET}</x></entry>"
    out = m.body(xml, "application/atom+xml")
    assert ACCESS not in out and SECRET not in out and "••••ACC1" in out and "••••alue" in out


def test_literal_secrets_are_masked_also_when_percent_encoded():
    secret = "abc def/ghi=jkl"
    m = ex.Masker([secret])
    assert m.literals("x=abc%20def%2Fghi%3Djkl y=abc+def%2Fghi%3Djkl z=abc def/ghi=jkl") == \
        "x=••••=jkl y=••••=jkl z=••••=jkl"


def test_short_secrets_are_masked_whole():
    m = ex.Masker()
    assert m.header("Authorization", "Bearer short") == "Bearer ••••"
    assert "short" not in m.secrets   # too short to mask as a literal (it would hide ordinary words)


# ---------------------------------------------------------------- snippets


def _token_exchange() -> dict:
    m = ex.Masker()
    basic = "Basic " + base64.b64encode(f"PCE_client:{SECRET}".encode()).decode()
    return {"kind": "token", "method": "POST", "url": "http://127.0.0.1:5001/oauth/token",
            "request_headers": m.headers({"User-Agent": "python-requests", "Accept": "application/json",
                                          "Content-Type": "application/x-www-form-urlencoded",
                                          "Authorization": basic}),
            "request_body": m.form("grant_type=authorization_code&code=the-code-1234&"
                                   "redirect_uri=http%3A%2F%2F127.0.0.1%3A5000%2Fcallback&code_verifier=" + "v" * 50)}


def test_curl_snippet_uses_placeholders():
    snip = ex.snippets(_token_exchange())
    assert "-u PCE_client:\"$CLIENT_SECRET\"" in snip.curl
    assert '--data-urlencode code="$CODE"' in snip.curl
    assert '--data-urlencode code_verifier="$CODE_VERIFIER"' in snip.curl
    assert "--data-urlencode redirect_uri=http://127.0.0.1:5000/callback" in snip.curl
    assert "curl -sS -X POST http://127.0.0.1:5001/oauth/token" in snip.curl
    assert "••••" not in snip.curl and SECRET not in snip.curl and "User-Agent" not in snip.curl


def test_python_snippet_uses_environment_and_compiles():
    snip = ex.snippets(_token_exchange())
    assert "auth=('PCE_client', os.environ['CLIENT_SECRET'])" in snip.python
    assert "'code': os.environ['CODE']" in snip.python
    assert "••••" not in snip.python
    compile(snip.python, "<snippet>", "exec")


def test_bearer_get_snippets_and_json_api_token():
    m = ex.Masker()
    x = {"kind": "espi", "method": "GET",
         "url": m.url("http://h/DataCustodian/espi/1_1/resource/Authorization?published-min=2024-01-01T00:00:00Z"),
         "request_headers": m.headers({"Authorization": f"Bearer {ACCESS}", "Accept": "application/atom+xml"})}
    snip = ex.snippets(x)
    assert "-H 'Authorization: Bearer '\"$ACCESS_TOKEN\"" in snip.curl
    assert "curl -sS 'http://h/DataCustodian/espi/1_1/resource/Authorization?published-min=2024-01-01T00%3A00%3A00Z'" \
        in snip.curl
    assert "'Authorization': 'Bearer ' + os.environ['ACCESS_TOKEN']" in snip.python
    assert "params={'published-min': '2024-01-01T00:00:00Z'}" in snip.python
    compile(snip.python, "<snippet>", "exec")
    json_x = {**x, "kind": "json", "url": m.url(f"http://h/api/v2/meters?access_token={ACCESS}")}
    snip = ex.snippets(json_x)
    # the JSON API takes an API token, as Bearer or as ?access_token=
    assert "'http://h/api/v2/meters?access_token='\"$API_TOKEN\"" in snip.curl
    assert "-H 'Authorization: Bearer '\"$API_TOKEN\"" in snip.curl and "ACCESS_TOKEN" not in snip.curl


def test_no_snippets_for_browser_steps():
    assert ex.snippets({"kind": "authorize", "method": "GET", "url": "http://h/oauth/authorize?x=1"}) is None


def test_shell_quoting_is_safe():
    word = ex._Shell().text("a b'c$(x)").var("TOKEN").render()
    assert word == "'a b'\"'\"'c$(x)'\"$TOKEN\""


# ---------------------------------------------------------------- the recorder over HTTP


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def _send(self, status, body: bytes, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 - http.server's name
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.path == "/oauth/token":
            self._send(200, json.dumps({"access_token": ACCESS, "refresh_token": REFRESH, "token_type": "Bearer",
                                        "expires_in": 3600, "echo": f"your token is {ACCESS}"}).encode())
        else:
            self._send(400, b'{"error": "invalid_grant", "error_description": "used"}')

    def do_GET(self):  # noqa: N802
        if self.path.startswith("/big"):
            body = (b"<feed>" + b"<entry>" + b"x" * 1000 + b"</entry>" * 1) * 400 + b"</feed>"
            self._send(200, body, "application/atom+xml")
        elif self.path.startswith("/slow"):
            time.sleep(1.0)
            try:
                self._send(200, b"<ok/>", "application/atom+xml")
            except BrokenPipeError:   # the client gave up, as intended
                pass
        elif self.path.startswith("/html"):
            self._send(200, b"<html><body>login</body></html>", "text/html")
        else:
            self._send(200, f"<feed><t>{ACCESS}</t></feed>".encode(), "application/atom+xml")


@pytest.fixture(scope="module")
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.fixture
def db(tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'site.sqlite3'}", Base.metadata)
    yield database
    database.dispose()


def _rows(db, run_id="run1") -> list[dict]:
    with db.session() as s:
        return [ex.exchange_dict(x) for x in ex.exchanges_for(s, run_id)]


def test_token_request_through_authlib_is_recorded_and_masked(server, db):
    rec = ex.Recorder(db, "run1", [SECRET])
    cfg = gbc.ClientConfig("PCE_client", SECRET, server + "/oauth/authorize", server + "/oauth/token",
                           "http://127.0.0.1:5000/callback")
    token = gbc.exchange_code(cfg, "the-authorization-code", "v" * 64, http=rec.session())
    assert token["access_token"] == ACCESS
    (row,) = _rows(db)
    assert row["kind"] == "token" and row["status"] == 200 and row["title"] == "Token request (authorization_code)"
    dump = json.dumps(row, ensure_ascii=False)
    for secret in (SECRET, ACCESS, REFRESH, "the-authorization-code", "v" * 64):
        assert secret not in dump
    assert ["Authorization", "Basic PCE_client:••••alue"] in row["request_headers"]
    assert "your token is ••••ACC1" in row["response_body"]
    # learnt from the token response: masked in later exchanges of this recorder too
    gbc.fetch_xml(server + "/feed", ACCESS, step="x", http=rec.session())
    later = _rows(db)[1]
    assert ACCESS not in json.dumps(later) and "<t>••••ACC1</t>" in later["response_body"]
    assert later["kind"] == "http" and later["seq"] == 2


def test_streamed_body_is_kept_up_to_the_limit(server, db, monkeypatch):
    monkeypatch.setattr(ex, "STORE_LIMIT", 100_000)
    rec = ex.Recorder(db, "run1")
    body = gbc.fetch_xml(server + "/big", "t" * 20, step="x", http=rec.session())
    (row,) = _rows(db)
    assert row["response_size"] == len(body) > 100_000
    assert row["response_truncated"] is True and len(row["response_body"]) == 100_000
    view = ex.exchange_view(_row_obj(db))
    assert view["response_cut"] and len(view["response_pretty"]) == ex.PAGE_LIMIT


def _row_obj(db, run_id="run1"):
    with db.session() as s:
        return ex.exchanges_for(s, run_id)[-1]


def test_timeout_and_connection_failures_are_recorded(server, db):
    rec = ex.Recorder(db, "run1")
    with pytest.raises(gbc.CustodianError) as err:
        gbc.fetch_xml(server + "/slow", "t" * 20, step="x", timeout=0.2, http=rec.session())
    assert err.value.kind == "timeout"
    with pytest.raises(gbc.CustodianError):
        gbc.fetch_xml("http://127.0.0.1:9/nothing", "t" * 20, step="x", timeout=1, http=rec.session())
    slow, refused = _rows(db)
    assert slow["error"]["kind"] == "timeout" and slow["status"] is None
    assert refused["error"]["kind"] == "connection"
    assert ex.exchange_view(_row_obj(db))["explanation"].code == "connection"


def test_html_instead_of_xml_is_explained(server, db):
    rec = ex.Recorder(db, "run1")
    rec.session(kind="espi").get(server + "/html", timeout=5)
    found = ex.exchange_view(_row_obj(db))["explanation"]
    assert found is not None and found.code == "not_xml"


def test_notes_mask_params(db):
    rec = ex.Recorder(db, "run1")
    rec.note("callback", "Callback", url="http://h/cb?code=the-code-5678&state=the-state-abcd",
             params={"code": "the-code-5678", "state": "the-state-abcd", "x": "1"})
    (row,) = _rows(db)
    assert row["url"] == "http://h/cb?code=••••5678&state=••••abcd"
    assert row["fields"]["params"] == {"code": "••••5678", "state": "••••abcd", "x": "1"}


def test_recording_failure_never_breaks_the_call(server, tmp_path):
    database = Database(f"sqlite:///{tmp_path / 'x.sqlite3'}", Base.metadata)
    rec = ex.Recorder(database, "run1")
    with database.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE exchanges")
    assert requests.Session.get(rec.session(), server + "/feed", timeout=5).status_code == 200
    database.dispose()

"""Passcode delivery: email to a real SMTP server started here (aiosmtpd on loopback: no
TLS, STARTTLS with AUTH and implicit TLS, with a certificate made here) and SMS to a local
endpoint that checks each request is exactly what Twilio's Messages API documents
(POST /2010-04-01/Accounts/{AccountSid}/Messages.json, HTTP Basic AccountSid:AuthToken,
form-encoded To, From or MessagingServiceSid, Body; 201 with the Message JSON). Then the
same over HTTP on the sandbox: the code that arrives is accepted on the passcode page, and
failures (server down, auth rejected, Twilio errors, a Twilio that never answers) are shown
on the passcode page and in the outbox."""
from __future__ import annotations

import base64
import email
import email.policy
import ipaddress
import json
import logging
import re
import socket
import ssl
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sandbox_steps import REAL_COMMERCIAL_EMAIL, authorize, ctx, decide, lookup, outbox_rows, servers

from demo.sandbox import delivery
from demo.sandbox.delivery import Message
from demo.sandbox.models import OutboxMessage

from conftest import Visitor

SMTP_USER = "sandbox-mailer"
SMTP_PASSWORD = "smtp-pass-Zq81x"
TWILIO_SID = "AC" + "0123456789abcdef" * 2
TWILIO_TOKEN = "twilio-token-9f8e7d6c5b4a"
TWILIO_FROM = "+15005550006"
MESSAGING_SERVICE = "MG" + "fedcba9876543210" * 2
FROM = "Peninsula Clean Energy <no-reply@sandbox.example>"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- an SMTP server on loopback -------------------------------------------------------------

@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1 (PEM files: certificate, key)."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                    x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class Inbox:
    """aiosmtpd handler: keeps every message with how it came (TLS, authenticated user)."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.arrived = threading.Condition()

    async def handle_DATA(self, server, session, envelope):
        with self.arrived:
            self.messages.append({
                "mail_from": envelope.mail_from, "rcpt_tos": list(envelope.rcpt_tos),
                "message": email.message_from_bytes(envelope.original_content, policy=email.policy.default),
                "tls": session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None,
                "login": getattr(session, "gbc_user", None),
                "authenticated": session.authenticated,
            })
            self.arrived.notify_all()
        return "250 OK message accepted"

    def wait_for(self, to: str, timeout: float = 5.0) -> email.message.EmailMessage:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while True:
                for item in reversed(self.messages):
                    if to in item["rcpt_tos"]:
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no message for {to} arrived")
                self.arrived.wait(left)


def _check_password(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword) and auth_data.login == SMTP_USER.encode()
          and auth_data.password == SMTP_PASSWORD.encode())
    if ok:
        session.gbc_user = auth_data.login.decode()
    return AuthResult(success=ok, handled=False)


@contextmanager
def smtp_server(security: str, cert: tuple[str, str] | None = None, auth: bool = False):
    """A real SMTP server on 127.0.0.1: ``none``, ``starttls`` (required; AUTH required when
    ``auth``) or ``tls`` (implicit). Yields (port, inbox)."""
    inbox = Inbox()
    kwargs: dict = {}
    if cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*cert)
        if security == "starttls":
            kwargs.update(tls_context=context, require_starttls=True)
        elif security == "tls":
            kwargs.update(ssl_context=context)
    if auth:
        kwargs.update(authenticator=_check_password, auth_required=True)
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def smtp_settings(port: int, security: str, **more) -> dict:
    return {"utility_name": "Peninsula Clean Energy", "sandbox_smtp_host": "127.0.0.1", "sandbox_smtp_port": port,
            "sandbox_smtp_security": security, "sandbox_smtp_user": "", "sandbox_smtp_password": "",
            "sandbox_smtp_from": FROM, "sandbox_delivery_timeout": 5.0, **more}


def a_message(to: str = "qa@example.com", code: str = "482913") -> Message:
    text = delivery.email_text("Peninsula Clean Energy", code, 10, "Test Company")
    return Message("email", to, text, delivery.email_subject("Peninsula Clean Energy"))


# ---- a Twilio Messages API on loopback ------------------------------------------------------

class FakeTwilio:
    """Answers like Twilio's Create Message and refuses any request that is not exactly
    what Twilio documents. ``mode``: ok | error (400, 21211) | echo (400 quoting the body) |
    unauthorized | hang."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[dict] = []
        self.problems: list[str] = []
        self.release = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self._answer(405, {"code": 20004, "message": "Method not allowed", "more_info": "", "status": 405})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode("utf-8")
                record = {"method": "POST", "path": self.path, "headers": dict(self.headers.items()),
                          "fields": parse_qsl(body, keep_blank_values=True, strict_parsing=True)}
                fake.requests.append(record)
                problem = fake.check(record)
                if problem:
                    fake.problems.append(problem)
                    self._answer(400, {"code": 21601, "message": problem, "more_info": "", "status": 400})
                    return
                if fake.mode == "hang":
                    fake.release.wait(30)
                    return
                if fake.mode == "unauthorized":
                    self._answer(401, {"code": 20003, "message": "Authenticate",
                                       "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401})
                    return
                fields = dict(record["fields"])
                if fake.mode == "echo":      # an error that quotes the message back
                    self._answer(400, {"code": 30007, "message": f"Message filtered: {fields['Body']}",
                                       "more_info": "", "status": 400})
                    return
                if fake.mode == "error":
                    self._answer(400, {"code": 21211, "message": f"The 'To' number {fields['To']} is not a valid "
                                       "phone number.", "more_info": "https://www.twilio.com/docs/errors/21211",
                                       "status": 400})
                    return
                sid = "SM" + "%032x" % len(fake.requests)
                self._answer(201, {
                    "account_sid": TWILIO_SID, "api_version": "2010-04-01", "body": fields["Body"],
                    "date_created": "Thu, 24 Aug 2023 05:01:45 +0000", "date_sent": None,
                    "direction": "outbound-api", "error_code": None, "error_message": None,
                    "from": fields.get("From"), "messaging_service_sid": fields.get("MessagingServiceSid"),
                    "num_media": "0", "num_segments": "1", "price": None, "price_unit": None, "sid": sid,
                    "status": "queued" if "From" in fields else "accepted", "to": fields["To"],
                    "uri": f"/2010-04-01/Accounts/{TWILIO_SID}/Messages/{sid}.json"})

            def _answer(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def check(record: dict) -> str | None:
        """Why this is not the documented request (None when it is)."""
        expected_path = f"/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
        if record["path"] != expected_path:
            return f"path {record['path']}"
        basic = "Basic " + base64.b64encode(f"{TWILIO_SID}:{TWILIO_TOKEN}".encode()).decode()
        if record["headers"].get("Authorization") != basic:
            return "authorization"
        if record["headers"].get("Content-Type") != "application/x-www-form-urlencoded":
            return f"content type {record['headers'].get('Content-Type')}"
        names = [name for name, _ in record["fields"]]
        if sorted(names) not in (sorted(["To", "From", "Body"]), sorted(["To", "MessagingServiceSid", "Body"])):
            return f"fields {names}"
        fields = dict(record["fields"])
        if not re.fullmatch(r"\+1[2-9]\d{9}", fields["To"]):
            return f"To {fields['To']!r} is not E.164"
        if not fields["Body"] or len(fields["Body"]) > 1600:
            return "Body"
        return None

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def twilio():
    fake = FakeTwilio()
    yield fake
    fake.close()


@pytest.fixture
def fresh_twilio(twilio):
    twilio.mode, twilio.requests[:], twilio.problems[:] = "ok", [], []
    twilio.release.clear()
    yield twilio
    twilio.release.set()
    twilio.mode = "ok"


def twilio_settings(url: str, **more) -> dict:
    return {"utility_name": "Peninsula Clean Energy", "sandbox_twilio_account_sid": TWILIO_SID,
            "sandbox_twilio_auth_token": TWILIO_TOKEN, "sandbox_twilio_from": TWILIO_FROM,
            "sandbox_twilio_api_url": url, "sandbox_delivery_timeout": 5.0, **more}


def an_sms(to: str = "6505550123", code: str = "482913") -> Message:
    return Message("sms", to, delivery.sms_text("Peninsula Clean Energy", code, 10, "Test Company"))


# ---- the texts ------------------------------------------------------------------------------

def test_sms_text_is_one_segment_with_the_code_and_expiry():
    text = delivery.sms_text("Peninsula Clean Energy", "482913", 10, "Test Company")
    assert text.startswith("Peninsula Clean Energy: 482913 is your passcode to share your energy data with "
                           "Test Company.")
    assert "10 minutes" in text and delivery.sms_fits(text) and len(text) <= 160
    mine = delivery.sms_text("Peninsula Clean Energy", "482913", 10, None)
    assert "see and manage who you share your energy data with" in mine and delivery.sms_fits(mine)
    long_company = "Very Long Energy Analytics Company Name Incorporated Worldwide Holdings LLC"
    short = delivery.sms_text("Peninsula Clean Energy", "482913", 10, long_company)
    assert delivery.sms_fits(short) and "482913" in short and "10 min" in short
    # a curly apostrophe would make the SMS UCS-2 (70 characters a segment): it becomes a plain one
    curly = delivery.sms_text("Peninsula Clean Energy", "482913", 10, "O’Brien Solar")
    assert "with O'Brien Solar." in curly and delivery.gsm7(curly) and delivery.sms_fits(curly)
    assert not delivery.sms_fits("Ω€" + "x" * 69) and delivery.sms_fits("x" * 160) and not delivery.sms_fits("x" * 161)


def test_email_text_names_the_utility_code_expiry_and_purpose():
    text = delivery.email_text("Peninsula Clean Energy", "482913", 10, "Test Company")
    assert text.startswith("482913 is your Peninsula Clean Energy passcode.")
    assert "Test Company asked to see your energy data" in text and "expires in 10 minutes" in text
    assert "to see and manage who you share" in delivery.email_text("PCE", "111111", 5, None)
    assert delivery.email_subject("Peninsula Clean Energy") == "Your Peninsula Clean Energy passcode"


@pytest.mark.parametrize("given, expected", [
    ("6505550123", "+16505550123"), ("650-555-0123", "+16505550123"), ("(650) 555-0123", "+16505550123"),
    ("16505550123", "+16505550123"), ("+1 650 555 0123", "+16505550123"), ("+44 20 7946 0958", "+442079460958"),
])
def test_e164(given, expected):
    assert delivery.e164(given) == expected


def test_e164_refuses_what_is_not_a_us_number():
    with pytest.raises(ValueError):
        delivery.e164("555-0123")


# ---- email ----------------------------------------------------------------------------------

def test_without_an_smtp_host_the_message_is_recorded_only():
    result = delivery.deliver({"sandbox_smtp_host": ""}, a_message())
    assert (result.status, result.detail) == (delivery.RECORDED, "recorded only (no SMTP server configured)")
    result = delivery.deliver({"sandbox_twilio_account_sid": ""}, an_sms())
    assert (result.status, result.detail) == (delivery.RECORDED, "recorded only (no Twilio account configured)")


def test_email_without_tls_arrives_with_proper_headers():
    with smtp_server("none") as (port, inbox):
        result = delivery.deliver(smtp_settings(port, "none"), a_message("qa@example.com", "604211"))
        assert result.ok and result.detail == f"accepted by 127.0.0.1:{port}", result
        item = inbox.wait_for("qa@example.com")
    mail = item["message"]
    assert item["mail_from"] == "no-reply@sandbox.example" and not item["tls"]
    assert mail["From"] == FROM and mail["To"] == "qa@example.com"
    assert mail["Subject"] == "Your Peninsula Clean Energy passcode"
    assert email.utils.parsedate_to_datetime(mail["Date"]).tzinfo is not None
    assert re.fullmatch(r"<[^@>]+@sandbox\.example>", mail["Message-ID"])
    body = mail.get_content()
    assert "604211 is your Peninsula Clean Energy passcode" in body and "expires in 10 minutes" in body


def test_email_with_starttls_and_auth(cert):
    with smtp_server("starttls", cert, auth=True) as (port, inbox):
        settings = smtp_settings(port, "starttls", sandbox_smtp_user=SMTP_USER, sandbox_smtp_password=SMTP_PASSWORD,
                                 sandbox_smtp_ca_file=cert[0])
        result = delivery.deliver(settings, a_message("tls@example.com", "771204"))
        assert result.ok, result
        item = inbox.wait_for("tls@example.com")
    assert item["tls"] and item["authenticated"] and item["login"] == SMTP_USER
    assert "771204" in item["message"].get_content()


def test_email_with_implicit_tls(cert):
    with smtp_server("tls", cert) as (port, inbox):
        result = delivery.deliver(smtp_settings(port, "tls", sandbox_smtp_ca_file=cert[0]), a_message("i@example.com"))
        assert result.ok, result
        assert inbox.wait_for("i@example.com")["tls"]


def test_starttls_refuses_a_certificate_it_does_not_trust(cert):
    with smtp_server("starttls", cert) as (port, inbox):
        result = delivery.deliver(smtp_settings(port, "starttls"), a_message())
        assert result.status == delivery.FAILED and "certificate" in result.detail and "not trusted" in result.detail
        assert not inbox.messages


def test_rejected_smtp_auth_is_a_readable_failure_without_the_password(cert, caplog):
    caplog.set_level(logging.DEBUG)
    with smtp_server("starttls", cert, auth=True) as (port, inbox):
        settings = smtp_settings(port, "starttls", sandbox_smtp_user=SMTP_USER,
                                 sandbox_smtp_password="wrong-password-123", sandbox_smtp_ca_file=cert[0])
        result = delivery.deliver(settings, a_message())
    assert result.status == delivery.FAILED and result.detail.startswith("auth failed"), result
    assert "535" in result.detail and not inbox.messages
    assert "wrong-password-123" not in result.detail + caplog.text


@pytest.mark.parametrize("to", ["a,evil@example.com", "Eve <eve@example.com>", "eve@example.com\r\nBcc: x@y.z"])
def test_email_goes_to_exactly_one_plain_address(to):
    with smtp_server("none") as (port, inbox):
        result = delivery.deliver(smtp_settings(port, "none"), a_message(to))
    assert (result.status, result.detail) == (delivery.FAILED, "not a single plain email address")
    assert not inbox.messages


def test_smtp_server_down_is_connection_refused():
    port = free_port()
    result = delivery.deliver(smtp_settings(port, "none"), a_message())
    assert (result.status, result.detail) == (delivery.FAILED, f"connection refused by 127.0.0.1:{port}")


def test_smtp_password_is_never_sent_in_clear():
    with smtp_server("none") as (port, inbox):
        result = delivery.deliver(smtp_settings(port, "none", sandbox_smtp_user="u", sandbox_smtp_password="p4ss"),
                                  a_message())
    assert result.status == delivery.FAILED and "without TLS" in result.detail and not inbox.messages


def test_smtp_that_never_answers_is_bounded_by_the_timeout():
    with socket.socket() as listener:        # accepts connections, never says a word
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        start = time.monotonic()
        result = delivery.deliver(smtp_settings(listener.getsockname()[1], "none", sandbox_delivery_timeout=0.5),
                                  a_message())
    assert time.monotonic() - start < 3
    assert result.status == delivery.FAILED and result.detail.startswith("timed out after 0.5 s"), result


# ---- SMS through Twilio's Messages API ------------------------------------------------------

def test_sms_is_exactly_the_documented_request(fresh_twilio):
    result = delivery.deliver(twilio_settings(fresh_twilio.url), an_sms("650-555-0123", "913370"))
    assert result.ok and result.detail == f"accepted by Twilio as SM{1:032x} (queued)", result
    assert not fresh_twilio.problems
    [request] = fresh_twilio.requests
    assert request["path"] == f"/2010-04-01/Accounts/{quote(TWILIO_SID)}/Messages.json"
    assert request["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    fields = dict(request["fields"])
    assert [name for name, _ in request["fields"]] == ["To", "From", "Body"]
    assert fields["To"] == "+16505550123" and fields["From"] == TWILIO_FROM
    assert fields["Body"].startswith("Peninsula Clean Energy: 913370 is your passcode")


def test_sms_through_a_messaging_service(fresh_twilio):
    result = delivery.deliver(twilio_settings(fresh_twilio.url, sandbox_twilio_from=MESSAGING_SERVICE), an_sms())
    assert result.ok and "(accepted)" in result.detail, result
    assert [name for name, _ in fresh_twilio.requests[0]["fields"]] == ["To", "MessagingServiceSid", "Body"]
    assert dict(fresh_twilio.requests[0]["fields"])["MessagingServiceSid"] == MESSAGING_SERVICE


def test_twilio_error_json_becomes_a_readable_failure(fresh_twilio):
    fresh_twilio.mode = "error"
    result = delivery.deliver(twilio_settings(fresh_twilio.url), an_sms("6505550123"))
    assert result.status == delivery.FAILED
    assert result.detail == "Twilio error 21211: The 'To' number +16505550123 is not a valid phone number."


def test_twilio_rejecting_the_credentials_is_auth_failed_without_the_token(fresh_twilio, caplog):
    caplog.set_level(logging.DEBUG)
    fresh_twilio.mode = "unauthorized"
    result = delivery.deliver(twilio_settings(fresh_twilio.url), an_sms())
    assert result.detail == "auth failed: Twilio error 20003: Authenticate"
    assert TWILIO_TOKEN not in result.detail + caplog.text


def test_a_secret_echoed_by_a_server_is_scrubbed(fresh_twilio):
    # the fake reports what it disliked; a wrong path that contains the token comes back masked
    settings = twilio_settings(fresh_twilio.url, sandbox_twilio_api_url=fresh_twilio.url + "/" + TWILIO_TOKEN)
    result = delivery.deliver(settings, an_sms())
    assert result.status == delivery.FAILED and "Twilio error 21601" in result.detail
    assert TWILIO_TOKEN not in result.detail and "••••" in result.detail


def test_a_passcode_echoed_by_a_server_is_scrubbed(fresh_twilio, caplog):
    # the detail is shown on the passcode page and logged: the code must only be in the outbox text
    caplog.set_level(logging.DEBUG)
    fresh_twilio.mode = "echo"
    result = delivery.deliver(twilio_settings(fresh_twilio.url), an_sms(code="913370"))
    assert result.status == delivery.FAILED and result.detail.startswith("Twilio error 30007: Message filtered:")
    assert "913370" not in result.detail + caplog.text and "••••••" in result.detail


def test_an_unexpected_error_is_a_failure_not_an_exception(caplog):
    # a bad setting (or a bug) must not leave the outbox row "sending" behind a 500
    caplog.set_level(logging.DEBUG)
    settings = smtp_settings("not-a-port", "starttls", sandbox_smtp_user=SMTP_USER,
                             sandbox_smtp_password=SMTP_PASSWORD)
    result = delivery.deliver(settings, a_message(code="604211"))
    assert (result.status, result.detail) == (delivery.FAILED,
                                              "unexpected error (ValueError); see the sandbox's log")
    assert "ValueError" in caplog.text and "Traceback" in caplog.text
    assert SMTP_PASSWORD not in caplog.text and "604211" not in caplog.text


def test_twilio_that_never_answers_is_bounded_by_the_timeout(fresh_twilio):
    fresh_twilio.mode = "hang"
    start = time.monotonic()
    result = delivery.deliver(twilio_settings(fresh_twilio.url, sandbox_delivery_timeout=0.5), an_sms())
    assert time.monotonic() - start < 3
    assert (result.status, result.detail) == (delivery.FAILED, "timed out after 0.5 s waiting for Twilio")


def test_twilio_down_is_connection_refused():
    result = delivery.deliver(twilio_settings(f"http://127.0.0.1:{free_port()}"), an_sms())
    assert (result.status, result.detail) == (delivery.FAILED, "connection to Twilio refused")


# ---- on the sandbox, over HTTP --------------------------------------------------------------

CLIENTS = [
    {"client_id": "PCE_deliver01", "client_secret": "deliver-secret-000001", "company_name": "Delivery Co",
     "redirect_uris": ["{site_url}/callback"]},
    {"client_id": "PCE_deliverlv", "client_secret": "deliver-secret-live01", "company_name": "Live Delivery Co",
     "redirect_uris": ["{site_url}/callback"], "mode": "live"},
]


@pytest.fixture(scope="module")
def smtp(cert):
    with smtp_server("starttls", cert, auth=True) as (port, inbox):
        yield port, inbox


@pytest.fixture(scope="module")
def live(tmp_path_factory, cert, smtp, twilio):
    port, _ = smtp
    overrides = {
        "sandbox_smtp_host": "127.0.0.1", "sandbox_smtp_port": port, "sandbox_smtp_security": "starttls",
        "sandbox_smtp_user": SMTP_USER, "sandbox_smtp_password": SMTP_PASSWORD, "sandbox_smtp_from": FROM,
        "sandbox_smtp_ca_file": cert[0], "sandbox_twilio_account_sid": TWILIO_SID,
        "sandbox_twilio_auth_token": TWILIO_TOKEN, "sandbox_twilio_from": TWILIO_FROM,
        "sandbox_twilio_api_url": twilio.url, "sandbox_delivery_timeout": 1.0, "sandbox_resend_interval": 0,
    }
    with servers(tmp_path_factory.mktemp("delivery"), CLIENTS, **overrides) as live:
        yield live


@pytest.fixture
def reconfigure(live):
    """Change the sandbox's settings for one test (delivery reads them at each send)."""
    settings = ctx(live).settings
    saved = dict(settings)
    yield settings.update
    settings.clear()
    settings.update(saved)


def _verify_page(visitor, live, value: str, method: str = "email", client_id: str = "PCE_deliver01"):
    page = lookup(visitor, authorize(visitor, live, client_id), method, value)
    assert page.url.endswith("/authorize/verify"), page.body_text[:400]
    return page


def _code_in(text: str) -> str:
    return re.search(r"\b(\d{6}) is your", text).group(1)


def test_a_whole_test_prefix_flow_with_the_emailed_code(live, visitor, smtp):
    _, inbox = smtp
    page = _verify_page(visitor, live, "TEST_residential_Tester.One@Example.com")
    assert page.status == 200 and page.text_of("test-passcode") is None and page.text_of("delivery-problem") is None
    assert "We sent a 6-digit passcode by email to tester.one@example.com" in page.text_of("delivery-status")
    item = inbox.wait_for("tester.one@example.com")
    assert item["tls"] and item["login"] == SMTP_USER
    mail = item["message"]
    assert mail["Subject"] == "Your Peninsula Clean Energy passcode"
    body = mail.get_content()
    assert "Delivery Co asked to see your energy data" in body
    code = _code_in(body)
    # a wrong code is refused, the emailed one is accepted
    wrong = page.form("/authorize/verify").set("code", "000000" if code != "000000" else "111111").submit(visitor)
    assert wrong.status == 422
    page = wrong.form("/authorize/verify").set("code", code).submit(visitor)
    assert page.url.endswith("/authorize/consent"), page.body_text[:400]
    response = decide(visitor, page)
    assert response.status_code == 303 and "/receipt?key=" in response.headers["Location"]
    [row] = [r for r in outbox_rows(visitor, live, to="tester.one@example.com")]
    assert row[5].startswith("delivered") and f"accepted by 127.0.0.1:{smtp[0]}" in row[5]
    assert code in row[4]


def test_a_test_prefix_flow_by_sms(live, visitor, fresh_twilio):
    page = _verify_page(visitor, live, "TEST_commercial_(650) 555-0177", method="phone")
    assert "by text message to +16505550177" in page.text_of("delivery-status")
    [request] = fresh_twilio.requests
    assert not fresh_twilio.problems
    fields = dict(request["fields"])
    assert fields["To"] == "+16505550177"
    assert "Delivery Co" in fields["Body"] and delivery.sms_fits(fields["Body"])
    page = page.form("/authorize/verify").set("code", _code_in(fields["Body"])).submit(visitor)
    assert page.url.endswith("/authorize/consent")
    row = outbox_rows(visitor, live, to="650-555-0177")[0]
    assert row[1] == "+16505550177" and row[2] == "SMS" and row[5].startswith("delivered")


def test_my_authorizations_passcode_is_emailed(live, visitor, smtp):
    _, inbox = smtp
    page = visitor.get(live.sandbox_url + "/my-authorizations")
    page = lookup(visitor, page, "email", "TEST_residential_me.too@example.com", action="/my-authorizations")
    assert page.url.endswith("/my-authorizations/verify")
    body = inbox.wait_for("me.too@example.com")["message"].get_content()
    assert "to see and manage who you share your energy data with" in body
    page = page.form("/my-authorizations/verify").set("code", _code_in(body)).submit(visitor)
    assert page.url.endswith("/my-authorizations") and page.doc.cssselect("form[action='/my-authorizations/sign-out']")


def test_a_fictional_customer_is_never_sent_anything(live, visitor, smtp):
    _, inbox = smtp
    before = len(inbox.messages)
    page = _verify_page(visitor, live, REAL_COMMERCIAL_EMAIL, client_id="PCE_deliverlv")
    assert "fictional" in page.text_of("delivery-status")
    assert len(inbox.messages) == before
    row = outbox_rows(visitor, live, to=REAL_COMMERCIAL_EMAIL)[0]
    assert row[5] == "not sent not sent: fictional customer"


def _failure_shown(visitor, live, page, to: str, reason: str) -> None:
    problem = page.text_of("delivery-problem")
    assert problem == f"We couldn't send the passcode to {to}: {reason}. You can ask for a new one.", problem
    row = outbox_rows(visitor, live, to=to)[0]
    assert row[5].rstrip(".") == f"failed {reason}", row


def test_smtp_server_down_is_shown_on_the_page_and_in_the_outbox(live, visitor, reconfigure):
    port = free_port()
    reconfigure(sandbox_smtp_port=port)
    page = _verify_page(visitor, live, "TEST_residential_down@example.com")
    _failure_shown(visitor, live, page, "down@example.com", f"connection refused by 127.0.0.1:{port}")


def test_smtp_auth_rejected_is_shown(live, visitor, reconfigure):
    reconfigure(sandbox_smtp_password="not-the-password")
    page = _verify_page(visitor, live, "TEST_residential_noauth@example.com")
    problem = page.text_of("delivery-problem")
    assert problem.startswith("We couldn't send the passcode to noauth@example.com: auth failed at 127.0.0.1:")
    assert "not-the-password" not in page.text
    row = outbox_rows(visitor, live, to="noauth@example.com")[0]
    assert row[5].startswith("failed auth failed")
    assert "not-the-password" not in visitor.get(live.sandbox_url + "/outbox").text


def test_twilio_error_is_shown(live, visitor, fresh_twilio):
    fresh_twilio.mode = "error"
    page = _verify_page(visitor, live, "TEST_residential_650-555-0188", method="phone")
    _failure_shown(visitor, live, page, "+16505550188",
                   "Twilio error 21211: The 'To' number +16505550188 is not a valid phone number")


def test_twilio_that_never_answers_is_shown_after_the_timeout(live, visitor, fresh_twilio):
    fresh_twilio.mode = "hang"
    start = time.monotonic()
    page = _verify_page(visitor, live, "TEST_residential_650-555-0199", method="phone")
    assert time.monotonic() - start < 5            # sandbox_delivery_timeout is 1 s here
    _failure_shown(visitor, live, page, "+16505550199", "timed out after 1 s waiting for Twilio")


def test_one_recipient_gets_at_most_the_hourly_cap_from_any_number_of_requests(live, visitor, fresh_twilio,
                                                                             reconfigure):
    """TEST_ lookups come from anyone: a phone gets at most sandbox_recipient_max passcodes an
    hour, whichever requests and browsers ask for them."""
    reconfigure(sandbox_recipient_max=2)
    for _ in range(2):     # two separate requests (a new authorization each time) are sent
        page = _verify_page(Visitor(), live, "TEST_residential_650-555-0144", method="phone")
        assert page.text_of("delivery-problem") is None
    page = _verify_page(visitor, live, "TEST_commercial_650-555-0144", method="phone")
    _failure_shown(visitor, live, page, "+16505550144", "not sent: 2 passcodes already went to this number "
                                                        "in the last hour, the sandbox's limit; try again later")
    assert len(fresh_twilio.requests) == 2
    # another number is not held back
    assert _verify_page(visitor, live, "TEST_residential_650-555-0145", method="phone").text_of(
        "delivery-problem") is None
    assert len(fresh_twilio.requests) == 3


def test_after_a_failure_a_resend_can_succeed(live, visitor, fresh_twilio):
    fresh_twilio.mode = "error"
    page = _verify_page(visitor, live, "TEST_residential_650-555-0166", method="phone")
    assert page.text_of("delivery-problem")
    fresh_twilio.mode = "ok"
    page = page.form("/authorize/resend").submit(visitor)
    assert page.url.endswith("/authorize/verify") and page.text_of("delivery-problem") is None
    assert "We sent a 6-digit passcode by text message to +16505550166" in page.text_of("delivery-status")
    rows = outbox_rows(visitor, live, to="6505550166")
    assert [r[5].split()[0] for r in rows] == ["delivered", "failed"]
    code = _code_in(dict(fresh_twilio.requests[-1]["fields"])["Body"])
    assert page.form("/authorize/verify").set("code", code).submit(visitor).url.endswith("/authorize/consent")


def test_no_transaction_is_open_during_delivery(live, visitor, fresh_twilio, reconfigure):
    """While Twilio hangs, the database is free: another request writes and commits."""
    fresh_twilio.mode = "hang"
    reconfigure(sandbox_delivery_timeout=10.0)     # the checks below run while it is in flight, even under load
    done = threading.Event()

    def slow():
        other = type(visitor)()
        _verify_page(other, live, "TEST_residential_650-555-0155", method="phone")
        done.set()

    thread = threading.Thread(target=slow)
    thread.start()
    deadline = time.monotonic() + 10
    while not fresh_twilio.requests and time.monotonic() < deadline:
        time.sleep(0.02)
    assert fresh_twilio.requests and not done.is_set()        # the delivery is in flight
    with ctx(live).db.session() as s:
        row = s.query(OutboxMessage).filter_by(to="6505550155").one()
        assert row.delivery == delivery.SENDING            # recorded and committed before sending
        s.add(OutboxMessage(channel="email", to="writer@example.com", scenario="residential", text="x"))
    assert not done.is_set()
    fresh_twilio.release.set()                              # Twilio hangs up without an answer
    thread.join(10)
    assert done.is_set()
    row = outbox_rows(visitor, live, to="6505550155")[0]
    assert row[5].startswith("failed"), row                 # a delivery cut off half-way ends as failed

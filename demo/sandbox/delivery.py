"""Delivering one-time passcodes (no Flask): email through SMTP, SMS through Twilio's
Messages API, and the texts a PCE customer receives.

Only ``TEST_<scenario>_<contact>`` lookups are really delivered (the caller decides).
:func:`deliver` never raises for a network or server problem: it returns a
:class:`Result` whose ``detail`` is short, human and free of secrets (the SMTP
password and the Twilio auth token are scrubbed from anything a server echoes).
"""
from __future__ import annotations

import logging
import re
import smtplib
import socket
import ssl
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from urllib.parse import quote

import requests

log = logging.getLogger(__name__)

#: what happened to a message (the outbox's "result" column)
QUEUED = "queued"             # recorded, delivery not started yet
SENDING = "sending"           # a request is delivering it now
DELIVERED = "delivered"       # the SMTP server or Twilio accepted it
FAILED = "failed"
RECORDED = "recorded"         # no SMTP server / Twilio account configured: recorded only
NOT_SENT = "not_sent"         # never meant to go out (a fictional customer, a replaced passcode)
RESULTS = {
    DELIVERED: "delivered", FAILED: "failed", RECORDED: "recorded only", NOT_SENT: "not sent",
    QUEUED: "queued", SENDING: "sending",
}

SMS_SEGMENT = 160             # GSM-7 characters in one SMS segment
SMS_SEGMENT_UCS2 = 70         # with any character outside GSM-7
_GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
            "¿abcdefghijklmnopqrstuvwxyzäöñüà")
DETAIL_MAX = 300
#: one plain address (no display name, list or comment): a lookup never fans out to several
_ONE_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+")


@dataclass(frozen=True)
class Message:
    """A passcode message: ``channel`` is ``email`` or ``sms``; ``to`` an address or a phone."""

    channel: str
    to: str
    text: str
    subject: str = ""


@dataclass(frozen=True)
class Result:
    status: str               # DELIVERED, FAILED, RECORDED or NOT_SENT
    detail: str               # short and human: "accepted by smtp.example.com", "connection refused ..."

    @property
    def ok(self) -> bool:
        return self.status == DELIVERED


# ---- the texts --------------------------------------------------------------------------------

def purpose(company: str | None) -> str:
    return (f"to share your energy data with {company}" if company
            else "to see and manage who you share your energy data with")


def gsm7(text: str) -> bool:
    return all(ch in _GSM7 for ch in text)


def sms_fits(text: str) -> bool:
    """One SMS segment: 160 GSM-7 characters, or 70 when another character is used."""
    return len(text) <= (SMS_SEGMENT if gsm7(text) else SMS_SEGMENT_UCS2)


#: typographic characters that would make an SMS UCS-2 (70 characters a segment)
_PLAIN = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-",
                        "\u2014": "-", "\u00a0": " ", "\u2026": "..."})


def sms_text(utility: str, code: str, minutes: int, company: str | None) -> str:
    """The fullest variant that fits one segment, else the shortest. Curly quotes and
    dashes in names become plain ones, so the text stays GSM-7."""
    utility = utility.translate(_PLAIN)
    company = company.translate(_PLAIN) if company else company
    short_purpose = f"for {company}" if company else "for My authorizations"
    variants = [
        f"{utility}: {code} is your passcode {purpose(company)}. It expires in {minutes} minutes. "
        "Don't share it with anyone.",
        f"{utility}: {code} is your passcode {purpose(company)}. It expires in {minutes} minutes.",
        f"{utility}: {code} is your passcode {short_purpose}. Expires in {minutes} min.",
        f"{utility}: {code} is your passcode. Expires in {minutes} min.",
    ]
    return next((v for v in variants if sms_fits(v)), variants[-1])


def email_subject(utility: str) -> str:
    return f"Your {utility} passcode"


def email_text(utility: str, code: str, minutes: int, company: str | None) -> str:
    ask = (f"{company} asked to see your energy data. Enter this passcode {purpose(company)}:" if company
           else f"Enter this passcode {purpose(company)}:")
    return (f"{code} is your {utility} passcode.\n\n"
            f"{ask}\n\n    {code}\n\n"
            f"It expires in {minutes} minutes. Enter it on the page where you asked for it.\n\n"
            "If you didn't ask for this, ignore this email: nothing is shared without your passcode. "
            f"{utility} will never ask you for it by phone or email.\n\n"
            f"{utility} · Data Connect (sandbox)\n")


# ---- addresses -------------------------------------------------------------------------------

def e164(phone: str) -> str:
    """US numbers in E.164: ``650-555-0100`` and ``16505550100`` become ``+16505550100``;
    a number already starting with ``+`` keeps its country code."""
    digits = re.sub(r"\D", "", phone)
    if phone.strip().startswith("+"):
        return "+" + digits
    if len(digits) == 10:
        return "+1" + digits
    if len(digits) == 11 and digits.startswith("1"):
        return "+" + digits
    raise ValueError("not a US phone number")


def shown_to(channel: str, to: str) -> str:
    """How the outbox shows a recipient: phones as they were sent (E.164)."""
    if channel == "sms":
        try:
            return e164(to)
        except ValueError:
            return to
    return to


# ---- delivery --------------------------------------------------------------------------------

def deliver(settings: dict, message: Message) -> Result:
    """Send ``message`` with the configured SMTP server or Twilio account, within
    ``sandbox_delivery_timeout`` seconds per attempt. Never raises: an unexpected error (a
    bad setting, a bug) is a failure too, so no outbox row stays "sending"."""
    try:
        if message.channel == "email":
            result = send_email(settings, message)
        elif message.channel == "sms":
            result = send_sms(settings, message)
        else:
            result = Result(FAILED, f"unknown channel {message.channel!r}")
    except Exception as exc:  # noqa: BLE001 - reported as the message's result
        log.error("passcode %s: unexpected error\n%s", message.channel,
                  _scrub("".join(traceback.format_exception(exc)), settings, message))
        result = Result(FAILED, f"unexpected error ({type(exc).__name__}); see the sandbox's log")
    detail = _scrub(result.detail, settings, message)[:DETAIL_MAX]
    log.info("passcode %s: %s (%s)", message.channel, result.status, detail)
    return Result(result.status, detail)


def _timeout(settings: dict) -> float:
    return max(0.1, float(settings.get("sandbox_delivery_timeout") or 10.0))


def _scrub(text: str, settings: dict, message: Message) -> str:
    """``text`` without the SMTP password, the Twilio auth token or the message's passcode
    (a server may echo any of them; the detail is shown on the passcode page and logged)."""
    for key in ("sandbox_smtp_password", "sandbox_twilio_auth_token"):
        secret = str(settings.get(key) or "")
        if len(secret) >= 4:
            text = text.replace(secret, "••••")
    for code in set(re.findall(r"\b\d{6}\b", message.text)):
        text = re.sub(rf"\b{code}\b", "••••••", text)
    return text


def tls_context(settings: dict) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if settings.get("sandbox_smtp_ca_file"):
        context.load_verify_locations(cafile=str(settings["sandbox_smtp_ca_file"]))
    return context


def sender(settings: dict) -> str:
    """The From address: ``sandbox_smtp_from``, else the SMTP user when it is an address."""
    configured = str(settings.get("sandbox_smtp_from") or "").strip()
    if configured:
        return configured
    user = str(settings.get("sandbox_smtp_user") or "").strip()
    return user if "@" in user else ""


def email_message(settings: dict, message: Message, from_addr: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = from_addr
    mail["To"] = message.to
    mail["Subject"] = message.subject or email_subject(settings.get("utility_name", "Your utility"))
    mail["Date"] = format_datetime(datetime.now(UTC))
    domain = parseaddr(from_addr)[1].rpartition("@")[2] or None
    mail["Message-ID"] = make_msgid(domain=domain)
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.text)
    return mail


def send_email(settings: dict, message: Message) -> Result:
    host = str(settings.get("sandbox_smtp_host") or "").strip()
    if not host:
        return Result(RECORDED, "recorded only (no SMTP server configured)")
    if not _ONE_ADDRESS.fullmatch(message.to):
        return Result(FAILED, "not a single plain email address")
    from_addr = sender(settings)
    if not from_addr:
        return Result(FAILED, "no sender address configured (sandbox_smtp_from)")
    port = int(settings.get("sandbox_smtp_port") or 0)
    security = str(settings.get("sandbox_smtp_security") or "starttls")
    user = str(settings.get("sandbox_smtp_user") or "")
    password = str(settings.get("sandbox_smtp_password") or "")
    timeout = _timeout(settings)
    where = f"{host}:{port}"
    if user and security == "none":
        return Result(FAILED, "won't send the SMTP password without TLS (sandbox_smtp_security is none)")
    try:
        context = tls_context(settings) if security in ("starttls", "tls") else None
    except (OSError, ssl.SSLError):
        return Result(FAILED, "can't read the CA file (sandbox_smtp_ca_file)")
    mail = email_message(settings, message, from_addr)
    stage = "connect"
    try:
        if security == "tls":
            client = smtplib.SMTP_SSL(host, port, timeout=timeout, context=context)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        with client:
            client.ehlo()
            if security == "starttls":
                stage = "STARTTLS"
                client.starttls(context=context)
                client.ehlo()
            if user:
                stage = "AUTH"
                client.login(user, password)
            stage = "send"
            refused = client.send_message(mail, to_addrs=[message.to])
    except smtplib.SMTPNotSupportedError:
        return Result(FAILED, f"{where} doesn't offer {stage if stage in ('STARTTLS', 'AUTH') else 'that'}")
    except smtplib.SMTPAuthenticationError as exc:
        return Result(FAILED, f"auth failed at {where}: {_smtp_reply(exc.smtp_code, exc.smtp_error)}")
    except smtplib.SMTPRecipientsRefused as exc:
        code, reply = next(iter(exc.recipients.values()), (0, b""))
        return Result(FAILED, f"recipient refused by {where}: {_smtp_reply(code, reply)}")
    except smtplib.SMTPSenderRefused as exc:
        return Result(FAILED, f"sender refused by {where}: {_smtp_reply(exc.smtp_code, exc.smtp_error)}")
    except smtplib.SMTPResponseException as exc:
        return Result(FAILED, f"{where} answered {_smtp_reply(exc.smtp_code, exc.smtp_error)}")
    except smtplib.SMTPServerDisconnected as exc:
        if "timed out" in str(exc):      # smtplib reports a read timeout this way
            return Result(FAILED, f"timed out after {timeout:g} s talking to {where}")
        return Result(FAILED, f"{where} closed the connection")
    except smtplib.SMTPException as exc:
        if stage == "AUTH":   # no mechanism both sides know
            return Result(FAILED, f"auth failed at {where}: no usable AUTH mechanism")
        return Result(FAILED, f"SMTP error at {where}: {type(exc).__name__}")
    except ssl.SSLCertVerificationError as exc:
        return Result(FAILED, f"TLS certificate of {where} not trusted ({exc.verify_message})")
    except ssl.SSLError as exc:
        return Result(FAILED, f"TLS failed with {where} ({exc.reason or type(exc).__name__})")
    except TimeoutError:
        return Result(FAILED, f"timed out after {timeout:g} s talking to {where}")
    except ConnectionRefusedError:
        return Result(FAILED, f"connection refused by {where}")
    except socket.gaierror:
        return Result(FAILED, f"unknown host {host}")
    except OSError as exc:
        return Result(FAILED, f"network error with {where} ({exc.strerror or type(exc).__name__})")
    if refused:
        code, reply = next(iter(refused.values()))
        return Result(FAILED, f"recipient refused by {where}: {_smtp_reply(code, reply)}")
    return Result(DELIVERED, f"accepted by {where}")


def _smtp_reply(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {' '.join(text.split())}"[:160]


def twilio_url(settings: dict, account_sid: str) -> str:
    base = str(settings.get("sandbox_twilio_api_url") or "https://api.twilio.com").rstrip("/")
    return f"{base}/2010-04-01/Accounts/{quote(account_sid, safe='')}/Messages.json"


def twilio_form(settings: dict, message: Message) -> dict[str, str]:
    """The form fields Twilio's "Create a Message" documents: To, From or MessagingServiceSid, Body."""
    fields = {"To": e164(message.to)}
    sender_id = str(settings.get("sandbox_twilio_from") or "").strip()
    if re.fullmatch(r"MG[0-9a-fA-F]{32}", sender_id):
        fields["MessagingServiceSid"] = sender_id
    else:
        try:
            fields["From"] = e164(sender_id)
        except ValueError:
            fields["From"] = sender_id      # an alphanumeric sender ID
    fields["Body"] = message.text
    return fields


def send_sms(settings: dict, message: Message) -> Result:
    account_sid = str(settings.get("sandbox_twilio_account_sid") or "").strip()
    token = str(settings.get("sandbox_twilio_auth_token") or "")
    if not account_sid:
        return Result(RECORDED, "recorded only (no Twilio account configured)")
    if not token:
        return Result(FAILED, "no Twilio auth token configured (sandbox_twilio_auth_token)")
    if not str(settings.get("sandbox_twilio_from") or "").strip():
        return Result(FAILED, "no Twilio sender configured (sandbox_twilio_from)")
    try:
        data = twilio_form(settings, message)
    except ValueError:
        return Result(FAILED, f"{message.to} is not a US phone number")
    timeout = _timeout(settings)
    try:
        response = requests.post(twilio_url(settings, account_sid), data=data, auth=(account_sid, token),
                                 headers={"Accept": "application/json"}, timeout=timeout,
                                 allow_redirects=False)
    except requests.Timeout:
        return Result(FAILED, f"timed out after {timeout:g} s waiting for Twilio")
    except requests.ConnectionError as exc:
        refused = "refused" in str(exc).lower()
        return Result(FAILED, "connection to Twilio refused" if refused else "couldn't connect to Twilio")
    except requests.RequestException as exc:
        return Result(FAILED, f"Twilio request failed ({type(exc).__name__})")
    try:
        body = response.json()
    except ValueError:
        body = None
    body = body if isinstance(body, dict) else {}
    if response.status_code == 201 and str(body.get("sid", "")).startswith(("SM", "MM")):
        status = body.get("status") or "queued"
        return Result(DELIVERED, f"accepted by Twilio as {body['sid']} ({status})")
    if "code" in body or "message" in body:
        reason = f"Twilio error {body.get('code', '?')}: {' '.join(str(body.get('message', '')).split())}"[:200]
        if response.status_code == 401:
            reason = "auth failed: " + reason
        return Result(FAILED, reason)
    if response.status_code == 401:
        return Result(FAILED, "auth failed: Twilio answered HTTP 401")
    return Result(FAILED, f"Twilio answered HTTP {response.status_code} without a message")

"""The ``TEST_<scenario>_<contact>`` lookup for manual passcode (OTP) testing (no Flask).

PCE's Data Connect page: look up ``TEST_<scenario>_<your phone or email>`` and the
utility sends the one-time passcode to that contact, then carries on as the test
scenario (``residential``, ``commercial``, ``badlogin``). This module checks what a
tester typed, normalises the contact the way the sandbox reads it
(:mod:`demo.lookup`), and builds the lookup value and the scope that pre-fills it
(``AdditionalScope=auth-email-TEST_residential_qa@example.com``, percent-encoded by
:func:`demo.scope.build_scope`).
"""
from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlencode

from ..lookup import Customer, CustomerDirectory, LookupError_
from ..scope import REQUESTABLE_FUNCTION_BLOCKS, ScopeError, build_scope, parse_scope

MAX_CONTACT = 254          # the longest email address (RFC 5321 path limit)
MAX_LOCAL_PART = 64
MAX_LABEL = 63
DEFAULT_BLOCKS = (4, 16, 51)

# dot-atom local part (RFC 5322 atext) and an ASCII host name with a letter TLD (or punycode)
_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")
_TLD = re.compile(r"[A-Za-z]{2,63}|xn--[A-Za-z0-9-]{1,59}")
_PHONE_CHARS = re.compile(r"\+?[0-9 ().\-]+")
_SEPARATORS = re.compile(r"[ ().\-]")

US_EXAMPLE = "650-555-0142"
E164_EXAMPLE = "+44 20 7946 0958"


class OtpTestError(ValueError):
    """What is wrong with the input, per field (``scenario``, ``contact``, ``function_blocks``)."""

    def __init__(self, errors: dict[str, str]):
        super().__init__(" ".join(errors.values()))
        self.errors = dict(errors)


@dataclass(frozen=True)
class Contact:
    """A tester's contact as the sandbox will read it: ``lookup_type`` phone or email."""

    lookup_type: str
    address: str          # 10 US digits, +<country><number>, or a lower-case email address

    @property
    def channel(self) -> str:
        return "email" if self.lookup_type == "email" else "sms"


@dataclass(frozen=True)
class Scenario:
    """A test scenario as the page offers it."""

    name: str
    description: str
    findable: bool

    @property
    def what_happens(self) -> str:
        if not self.findable:
            return "The passcode is sent, then the account is not found."
        return "The passcode is sent, then you review and authorize the request."


@dataclass(frozen=True)
class OtpLookup:
    """Everything the page needs to start the flow."""

    scenario: str
    contact: Contact
    lookup_value: str          # TEST_residential_qa@example.com
    function_blocks: tuple[int, ...]
    scope: str                 # canonical, the lookup percent-encoded inside AdditionalScope

    @property
    def lookup_type(self) -> str:
        return self.contact.lookup_type

    @property
    def lookup(self) -> tuple[str, str]:
        return self.lookup_type, self.lookup_value

    @property
    def scope_readable(self) -> str:
        """The scope with the lookup value decoded, as PCE's page writes it."""
        parsed = parse_scope(self.scope)
        readable = "_".join(f"auth-{i.name}-{i.value}" if i.kind == "auth" and i.value else i.canonical()
                            for i in parsed.additional)
        return f"FB={parsed.get('FB')}" + (f";AdditionalScope={readable}" if readable else "")


def scenarios(customers: Iterable[Customer]) -> list[Scenario]:
    """The test scenarios of a directory (PCE's page), in its order."""
    return [Scenario(c.scenario, c.description, c.findable) for c in customers if c.test]


def normalise_phone(text: str) -> str:
    """A US number (10 digits in any common format, or +1 and 10 digits) becomes its 10 digits,
    as the sandbox stores it; any other ``+<country><number>`` (E.164) becomes ``+`` and its digits."""
    value = text.strip()
    if not _PHONE_CHARS.fullmatch(value):
        raise OtpTestError({"contact": f"A phone number has only digits, spaces, dashes, dots and brackets, "
                                       f"like {US_EXAMPLE} or {E164_EXAMPLE}."})
    digits = _SEPARATORS.sub("", value).lstrip("+")
    international = value.startswith("+")
    if international and not digits.startswith("1"):
        if digits.startswith("0"):
            raise OtpTestError({"contact": "After the + comes the country code, which never starts with 0."})
        if not 8 <= len(digits) <= 15:
            raise OtpTestError({"contact": f"An international number has 8 to 15 digits after the +, "
                                           f"like {E164_EXAMPLE}."})
        return "+" + digits
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) != 10:
        raise OtpTestError({"contact": f"A US phone number has 10 digits, like {US_EXAMPLE}. For another "
                                       f"country, start with + and the country code, like {E164_EXAMPLE}."})
    if digits[0] in "01" or digits[3] in "01":
        raise OtpTestError({"contact": f"{digits[:3]}-{digits[3:6]}-{digits[6:]} is not a US number that can "
                                       "receive a text: the area code and the next three digits never "
                                       "start with 0 or 1."})
    return digits


def normalise_email(text: str) -> str:
    """A lower-case email address with a reasonable syntax (dot-atom local part, host name, TLD)."""
    value = text.strip()
    local, _, domain = value.rpartition("@")
    if not local or not domain:
        raise OtpTestError({"contact": "An email address looks like name@example.com."})
    if len(value) > MAX_CONTACT:
        raise OtpTestError({"contact": f"An email address has at most {MAX_CONTACT} characters."})
    if len(local) > MAX_LOCAL_PART:
        raise OtpTestError({"contact": f"The part before the @ has at most {MAX_LOCAL_PART} characters."})
    if not _LOCAL.fullmatch(local):
        raise OtpTestError({"contact": "The part before the @ may have letters, digits, dots (not two in a row, "
                                       "nor at either end) and ! # $ % & ' * + / = ? ^ _ ` { | } ~ -."})
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) and len(label) <= MAX_LABEL for label in labels) \
            or not _TLD.fullmatch(labels[-1]):
        raise OtpTestError({"contact": f"'{domain}' is not a domain name like example.com (letters, digits and "
                                       "dashes, separated by dots)."})
    return value.lower()


def parse_contact(text: str | None) -> Contact:
    """A phone number or an email address, told apart by the @."""
    value = (text or "").strip()
    if not value:
        raise OtpTestError({"contact": "Enter your phone number or email address."})
    if len(value) > MAX_CONTACT:
        raise OtpTestError({"contact": f"That is too long: at most {MAX_CONTACT} characters."})
    if not value.isascii() or not value.isprintable():
        raise OtpTestError({"contact": "Use plain letters, digits and punctuation (no accents or symbols; "
                                       "write an international domain in its xn-- form)."})
    if "@" in value:
        return Contact("email", normalise_email(value))
    if re.search(r"[A-Za-z]", value):
        raise OtpTestError({"contact": f"That is neither a phone number ({US_EXAMPLE}) nor an email address "
                                       "(name@example.com)."})
    return Contact("phone", normalise_phone(value))


def parse_scenario(text: str | None, known: Iterable[str]) -> str:
    """One of the directory's test scenarios (any case), as the directory spells it."""
    names = list(known)
    value = (text or "").strip()
    for name in names:
        if name.lower() == value.lower():
            return name
    listing = ", ".join(names) or "none are configured"
    if not value:
        raise OtpTestError({"scenario": f"Choose a test scenario ({listing})."})
    raise OtpTestError({"scenario": f"Choose one of the test scenarios: {listing}."})


def parse_function_blocks(values: Iterable[object] | None) -> tuple[int, ...]:
    """The function blocks to ask for: at least one, each one a customer can be asked for."""
    blocks: set[int] = set()
    for value in values or ():
        text = str(value).strip()
        number = int(text) if text.isascii() and text.isdigit() and len(text) <= 3 else None
        if number not in REQUESTABLE_FUNCTION_BLOCKS:
            offered = ", ".join(str(n) for n in REQUESTABLE_FUNCTION_BLOCKS)
            raise OtpTestError({"function_blocks": f"'{text[:20]}' is not a function block you can ask for "
                                                   f"({offered})."})
        blocks.add(number)
    if not blocks:
        raise OtpTestError({"function_blocks": "Choose at least one function block."})
    return tuple(sorted(blocks))


def configured_blocks(scope: str | None) -> list[int]:
    """The requestable function blocks of the configured scope (4, 16, 51 if it has none)."""
    try:
        blocks = [fb for fb in parse_scope(scope or "").function_blocks if fb in REQUESTABLE_FUNCTION_BLOCKS]
    except ScopeError:
        blocks = []
    return blocks or list(DEFAULT_BLOCKS)


def lookup_value(scenario: str, contact: Contact) -> str:
    return f"TEST_{scenario}_{contact.address}"


def build(scenario: str | None, contact: str | None, function_blocks: Iterable[object] | None,
          known: Iterable[str], directory: CustomerDirectory | None = None) -> OtpLookup:
    """Check the input and build the lookup and its scope. Raises :class:`OtpTestError` with a
    message for each field that is wrong.

    With ``directory`` (the embedded sandbox's customers), the lookup is read back as the sandbox
    will read it, and refused when the sandbox would not find that scenario with that contact."""
    errors: dict[str, str] = {}
    parsed: dict[str, object] = {}
    for name, parse in (("scenario", lambda: parse_scenario(scenario, known)),
                        ("contact", lambda: parse_contact(contact)),
                        ("function_blocks", lambda: parse_function_blocks(function_blocks))):
        try:
            parsed[name] = parse()
        except OtpTestError as exc:
            errors.update(exc.errors)
    if errors:
        raise OtpTestError(errors)
    name, who, blocks = str(parsed["scenario"]), parsed["contact"], parsed["function_blocks"]
    assert isinstance(who, Contact) and isinstance(blocks, tuple)
    value = lookup_value(name, who)
    try:
        scope = build_scope(blocks, lookup=(who.lookup_type, value))
    except ScopeError as exc:   # not expected after the checks above; still a clear 4xx
        raise OtpTestError({"contact": exc.message}) from None
    if directory is not None:
        _read_back(directory, name, who, value)
    return OtpLookup(name, who, value, blocks, scope)


def _read_back(directory: CustomerDirectory, scenario: str, contact: Contact, value: str) -> None:
    """The sandbox's own reading of the lookup must give this scenario and this contact."""
    try:
        result = directory.find(contact.lookup_type, value)
    except LookupError_ as exc:
        other = "an email address" if contact.lookup_type == "phone" else "a phone number"
        raise OtpTestError({"contact": f"The embedded sandbox cannot read this {contact.lookup_type} "
                                       f"({exc}) Use {other} instead."}) from None
    if result.customer is None or result.customer.scenario != scenario or result.contact is None \
            or result.contact.address != contact.address or not result.test_contact:
        raise OtpTestError({"contact": f"The sandbox would not read {value} as the {scenario} scenario with "
                                       f"this {contact.lookup_type}."})


def outbox_url(sandbox_url: str, contact: Contact) -> str:
    """The sandbox outbox, filtered for the messages to this contact."""
    return sandbox_url.rstrip("/") + "/outbox?" + urlencode({"to": contact.address})


def delivery_note(settings: dict, channel: str) -> str:
    """How the embedded sandbox delivers a passcode on this channel (``email`` or ``sms``)."""
    if channel == "email":
        host = settings.get("sandbox_smtp_host")
        if host:
            return f"Email: really sent through the SMTP server {host}."
        return "Email: not sent (no SMTP server is configured); only recorded in the sandbox outbox."
    if settings.get("sandbox_twilio_account_sid"):
        return "Text message: really sent through Twilio."
    return "Text message: not sent (Twilio is not configured); only recorded in the sandbox outbox."

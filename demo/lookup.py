"""Customer lookup for the sandbox custodian (no Flask).

A customer finds their account by account number, phone, email or billing
address. Input is normalised the way people type it, and a lookup typed as
``TEST_<scenario>_<phone or email>`` selects that test scenario and makes the
given contact the one-time passcode's destination (PCE's manual OTP testing).
"""
from __future__ import annotations

import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from .scope import LOOKUP_TYPES

LOOKUP_LABELS = dict(zip(LOOKUP_TYPES, ("Account number", "Phone number", "Email address", "Billing address"),
                         strict=True))

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TEST = re.compile(r"^TEST_(?P<rest>.+)$", re.IGNORECASE)


class LookupError_(ValueError):
    """Input that cannot be a valid identifier of the chosen type (a 4xx, not a miss)."""


def ascii_digits(value: str) -> str:
    """The digits of ``value`` as ASCII: full-width and other scripts' digits (``１１１``, as a
    phone's keyboard may type them) count, read as 0-9."""
    return "".join(str(unicodedata.digit(ch)) for ch in value if ch.isdecimal())


def normalise_phone(value: str) -> str:
    """``(111) 111-1111``, ``+1 111 111 1111`` and ``111.111.1111`` all become ``1111111111``."""
    digits = ascii_digits(value)
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    if len(digits) != 10:
        raise LookupError_("A phone number has 10 digits, like 111-111-1111.")
    return digits


def normalise_email(value: str) -> str:
    email = value.strip().lower()
    if not _EMAIL.match(email):
        raise LookupError_("An email address looks like name@example.com.")
    return email


def normalise_account(value: str) -> str:
    """Account numbers match with or without their dash and spaces."""
    account = re.sub(r"[\s\-]", "", value)
    if not account.isalnum():
        raise LookupError_("An account number has only digits (and an optional dash), like 111111111-1.")
    return account.upper()


def normalise_address(value: str) -> str:
    """Any case, with or without commas, periods and extra spaces."""
    address = re.sub(r"[,.#]", " ", value.upper())
    address = re.sub(r"\s+", " ", address).strip()
    if not address:
        raise LookupError_("Enter the billing address as it appears on your bill.")
    return address


NORMALISERS = {
    "account": normalise_account,
    "phone": normalise_phone,
    "email": normalise_email,
    "address": normalise_address,
}


def normalise(lookup_type: str, value: str) -> str:
    if lookup_type not in NORMALISERS:
        raise LookupError_(f"Unknown lookup type {lookup_type!r}.")
    if len(value) > 300:
        raise LookupError_("That is too long to be an identifier.")
    return NORMALISERS[lookup_type](value)


@dataclass(frozen=True)
class Meter:
    uid: str
    meter_number: str
    service_identifier: str
    service_tariff: str
    service_class: str
    service_address: str
    service_kind: int = 0
    supplier: str | None = None
    supplier_tariff: str | None = None
    solar: bool = False


@dataclass(frozen=True)
class Customer:
    scenario: str
    name: str
    customer_kind: str
    account_number: str
    phone: str
    email: str
    billing_address: str
    findable: bool = True
    description: str = ""
    meters: tuple[Meter, ...] = ()
    #: a PCE test account (the identifiers on PCE's page). False: a "real" customer, whom
    #: only live-mode registrations may ask for data (reference §1.1, sandbox vs live mode)
    test: bool = True

    def identifier(self, lookup_type: str) -> str:
        return {
            "account": self.account_number,
            "phone": self.phone,
            "email": self.email,
            "address": self.billing_address,
        }[lookup_type]


@dataclass(frozen=True)
class Contact:
    """Where a one-time passcode goes: ``sms`` to a phone or ``email``."""

    channel: str
    address: str

    @property
    def masked(self) -> str:
        if self.channel == "email":
            name, _, domain = self.address.partition("@")
            return f"{name[:1]}•••@{domain}"
        if self.address.startswith("+"):
            return f"+{self.address[1:3]}•••{self.address[-4:]}"
        return f"(•••) •••-{self.address[-4:]}"


@dataclass(frozen=True)
class LookupResult:
    """The outcome of a lookup. ``customer`` is None when no customer was found."""

    customer: Customer | None
    contact: Contact | None = None
    test_contact: bool = False   # True for TEST_<scenario>_<contact>: the passcode is really "sent"
    message: str = ""

    @property
    def found(self) -> bool:
        return self.customer is not None


NOT_FOUND = "We couldn't find that customer. Check what you entered, or try another way to look up your account."


@dataclass
class CustomerDirectory:
    customers: list[Customer] = field(default_factory=list)

    @classmethod
    def from_file(cls, path: Path) -> CustomerDirectory:
        with Path(path).open("rb") as fh:
            data = tomllib.load(fh)
        customers = []
        for row in data.get("customers", []):
            meters = tuple(Meter(**m) for m in row.get("meters", []))
            fields = {k: v for k, v in row.items() if k != "meters"}
            customers.append(Customer(meters=meters, **fields))
        return cls(customers)

    @property
    def scenarios(self) -> list[str]:
        """The test scenarios (PCE's page; ``TEST_<scenario>_<contact>``)."""
        return [c.scenario for c in self.customers if c.test]

    def scenario(self, name: str) -> Customer | None:
        for customer in self.customers:
            if customer.scenario.lower() == name.lower():
                return customer
        return None

    def by_account(self, account_number: str) -> Customer | None:
        for customer in self.customers:
            if normalise_account(customer.account_number) == normalise_account(account_number):
                return customer
        return None

    def find(self, lookup_type: str, value: str) -> LookupResult:
        """Look a customer up. Raises :class:`LookupError_` for input that is malformed."""
        value = (value or "").strip()
        if len(value) > 300:
            raise LookupError_("That is too long to be an identifier.")
        test = _TEST.match(value)
        if test:
            return self._find_test(test.group("rest"))
        wanted = normalise(lookup_type, value)
        for customer in self.customers:
            if normalise(lookup_type, customer.identifier(lookup_type)) == wanted:
                if not customer.findable:
                    return LookupResult(None, message=NOT_FOUND)
                contact = _contact_on_file(customer, lookup_type)
                return LookupResult(customer, contact=contact)
        return LookupResult(None, message=NOT_FOUND)

    @property
    def test_customers(self) -> list[Customer]:
        return [c for c in self.customers if c.test]

    @property
    def real_customers(self) -> list[Customer]:
        return [c for c in self.customers if not c.test]

    def _find_test(self, rest: str) -> LookupResult:
        # TEST_<scenario>_<contact>; scenario names may themselves contain "_". Only test
        # scenarios: a TEST_ prefix must never redirect a real customer's passcode elsewhere.
        for customer in sorted(self.test_customers, key=lambda c: -len(c.scenario)):
            prefix = customer.scenario.lower() + "_"
            if rest.lower().startswith(prefix):
                contact_text = rest[len(prefix):]
                break
        else:
            known = ", ".join(self.scenarios)
            raise LookupError_(f"TEST_ lookups name a scenario ({known}) then your phone or email, "
                               "like TEST_residential_5551234567.")
        if "@" in contact_text:
            contact = Contact("email", normalise_email(contact_text))
        else:
            contact = Contact("sms", _test_phone(contact_text))
        # badlogin still sends the passcode (that is what is being tested); the
        # customer is then not found once the code is verified.
        return LookupResult(customer, contact=contact, test_contact=True)


def _test_phone(value: str) -> str:
    """A TEST_ lookup's phone: US numbers as their 10 digits (as customers' numbers are
    matched), any other country as E.164 (``+44 20 7946 0958`` -> ``+442079460958``)."""
    text = value.strip()
    digits = ascii_digits(text)
    if text.startswith("+") and not digits.startswith("1"):
        if not re.fullmatch(r"\+[\d\s().-]+", text) or not 8 <= len(digits) <= 15 or digits.startswith("0"):
            raise LookupError_("An international phone number is + then the country code and the number, "
                               "8 to 15 digits, like +44 20 7946 0958.")
        return "+" + digits
    return normalise_phone(text)


def _contact_on_file(customer: Customer, lookup_type: str) -> Contact:
    if lookup_type == "email":
        return Contact("email", customer.email.lower())
    return Contact("sms", normalise_phone(customer.phone))

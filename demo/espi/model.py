"""Dataclasses for the ESPI resources the demo writes and reads.

Times are integers as ESPI carries them (epoch seconds for UtilityAPI; some
older custodians such as PG&E sent milliseconds, which are kept as they are).
"""
from __future__ import annotations

from dataclasses import dataclass

AUTHORIZATION_STATUS = {0: "revoked", 1: "active", 2: "denied"}

SERVICE_KINDS = {
    0: "electricity",
    1: "gas",
    2: "water",
    3: "time",
    4: "heat",
    5: "refuse",
    6: "sewerage",
    7: "rates",
    8: "tvLicence",
    9: "internet",
}


@dataclass(frozen=True)
class DateTimeInterval:
    """ESPI DateTimeInterval: ``start`` and ``duration`` (epoch seconds)."""

    start: int
    duration: int


@dataclass(frozen=True)
class LocalTimeParameters:
    """ESPI LocalTimeParameters (XSD type TimeConfiguration).

    The defaults are the US daylight-saving rules seen in every capture;
    Peninsula Clean Energy (US Pacific) uses ``tz_offset=-28800``.
    """

    tz_offset: int
    dst_offset: int = 3600
    dst_start_rule: str = "360E2000"
    dst_end_rule: str = "B40E2000"


@dataclass(frozen=True)
class Authorization:
    """ESPI Authorization resource (one customer's grant to a third party)."""

    uid: str
    status: int
    scope: str
    token_type: str = "Bearer"
    authorized_period: DateTimeInterval | None = None
    published_period: DateTimeInterval | None = None
    expires_at: int | None = None
    grant_type: str | None = None
    resource_uri: str | None = None
    authorization_uri: str | None = None
    customer_resource_uri: str | None = None

    @property
    def status_name(self) -> str:
        return AUTHORIZATION_STATUS.get(self.status, f"unknown ({self.status})")


@dataclass(frozen=True)
class UsagePoint:
    """ESPI UsagePoint (one meter/service) plus its LocalTimeParameters."""

    id: str  # last segment of the self link (= UtilityAPI meter uid)
    self_uri: str | None
    title: str | None
    service_kind: int | None  # ServiceCategory/kind
    tariff_profile: str | None  # serviceDeliveryPoint/tariffProfile
    service_delivery_point_name: str | None = None
    local_time: LocalTimeParameters | None = None
    related: tuple[str, ...] = ()  # hrefs of the entry's rel="related" links

    @property
    def service_kind_name(self) -> str | None:
        if self.service_kind is None:
            return None
        return SERVICE_KINDS.get(self.service_kind, f"unknown ({self.service_kind})")


# ---------------------------------------------------------------- meter data (what the sandbox writes)


@dataclass(frozen=True)
class ReadingType:
    """ESPI ReadingType; the defaults are UtilityAPI's 15-minute energy channel
    (reference §3.4): delta data, electricity, USD, Wh with multiplier -3."""

    flow_direction: int = 1          # 1 delivered (forward), 19 received (reverse), 4 net
    interval_length: int = 900
    accumulation_behaviour: int = 4
    commodity: int = 1
    currency: int = 840
    kind: int = 12
    phase: int = 0
    power_of_ten_multiplier: int = -3
    uom: int = 72


@dataclass(frozen=True)
class IntervalBlock:
    """One IntervalBlock: ``values`` are consecutive readings of ``interval_length``
    seconds from ``start``. ``published`` (epoch) is when the block's data became
    available; it is also the entry's updated time."""

    id: str
    start: int
    duration: int
    values: tuple[int, ...] | list[int]
    published: int
    interval_length: int = 900


@dataclass(frozen=True)
class SummaryMeasurement:
    """ESPI SummaryMeasurement (``value`` x 10^``power_of_ten_multiplier`` ``uom``)."""

    uom: int
    power_of_ten_multiplier: int = 0
    value: int | None = None
    time_stamp: int | None = None


@dataclass(frozen=True)
class CostDetail:
    """A bill line item (``costAdditionalDetailLastPeriod``): amount in 1/100,000 of the currency."""

    note: str
    amount: int
    date_time: int | None = None
    measurement: SummaryMeasurement | None = None
    item_kind: int = 10                 # what UtilityAPI sends for every line


@dataclass(frozen=True)
class UsageSummary:
    """One bill as an ESPI UsageSummary (money in 1/100,000 of the currency unit)."""

    id: str
    billing_period: DateTimeInterval
    bill_last_period: int
    consumption: SummaryMeasurement                # overallConsumptionLastPeriod
    status_time_stamp: int
    published: int                                 # entry published/updated: when the bill became available
    line_items: tuple[CostDetail, ...] = ()
    tariff_profile: str | None = None
    currency: int = 840
    commodity: int = 1
    quality_of_reading: int = 16
    pdf_href: str | None = None                    # extra related link (application/pdf), when served


@dataclass(frozen=True)
class Address:
    """A street address as the customer schema's StreetAddress carries it."""

    street: str
    town: str | None = None
    state: str | None = None
    postal_code: str | None = None


@dataclass(frozen=True)
class ApplicationInformation:
    """What a registration (ApplicationInformation) says about a third party."""

    id: str
    data_custodian_id: str
    client_id: str
    client_name: str
    redirect_uris: tuple[str, ...]
    scope: tuple[str, ...]
    authorization_endpoint: str
    token_endpoint: str
    resource_endpoint: str
    bulk_request_uri: str
    notify_uri: str
    registration_client_uri: str
    client_uri: str | None = None
    description: str | None = None
    client_id_issued_at: int = 0
    client_secret_expires_at: int = 0
    software_id: str = "gbc-demo"
    software_version: str = "1.0"
    grant_types: tuple[str, ...] = ("authorization_code", "client_credentials", "refresh_token")
    data_custodian_status: int = 1      # 1 review, 2 production (live), 3 on hold, 4 revoked
    third_party_status: int = 1         # 1 development, 2 review/test, 3 production, 4 retired

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

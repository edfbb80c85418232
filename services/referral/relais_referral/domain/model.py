"""Visits, citizens and referrals as the referral service knows them. Pure data."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from relais_referral.domain.lifecycle import Actor, Move, Status, next_status


@dataclass(frozen=True)
class PostalAddress:
    street: str
    postcode: str
    city: str


@dataclass(frozen=True)
class Citizen:
    """The minimal identity, and how the citizen wants to be reached."""

    given_name: str
    family_name: str
    contact_channel: str  # email, sms, letter, none
    birth_date: date | None = None
    email: str | None = None
    phone: str | None = None
    postal_address: PostalAddress | None = None

    @property
    def display_name(self) -> str:
        return f"{self.given_name} {self.family_name}"


@dataclass(frozen=True)
class Site:
    site_id: str
    name: str
    kind: str
    postcode: str
    city: str
    department: str
    operators: frozenset[str]
    parent_site_id: str | None = None
    retired: bool = False


@dataclass(frozen=True)
class Visit:
    """`citizen` is None once the visit's personal data was erased (`anonymised_at`)."""

    visit_id: str
    site_id: str
    adviser_id: str
    channel: str
    citizen: Citizen | None
    opened_at: datetime
    anonymised_at: datetime | None = None


@dataclass(frozen=True)
class Referral:
    """`summary` is None once the referral's personal data was erased (`anonymised_at`)."""

    referral_id: str
    visit_id: str
    operator: str
    procedure: str
    site_id: str
    adviser_id: str
    summary: str | None
    consent_given_at: datetime
    requested_at: datetime
    status: Status = Status.REQUESTED
    due_at: datetime | None = None
    supersedes_referral_id: str | None = None
    overdue_at: datetime | None = None
    anonymised_at: datetime | None = None

    def move(self, move: Move, actor: Actor) -> Referral:
        return replace(self, status=next_status(self.status, move, actor))

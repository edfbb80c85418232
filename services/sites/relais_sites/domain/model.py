"""A site as the registry knows it. A `Site` is always valid: building one that
breaks a rule raises `InvalidSite` listing every problem. Operators and schedule
slots are kept in a canonical order, so that two descriptions of the same site
compare equal."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from relais_sites.domain.codes import (
    NATIONAL_OPERATORS,
    OPERATOR_CODES,
    Operator,
    SiteKind,
)
from relais_sites.domain.rules import InvalidSite, site_problems

__all__ = ["NATIONAL_OPERATORS", "OPERATOR_CODES", "Address", "Operator", "Site", "SiteKind",
           "SiteRecord", "Slot"]


@dataclass(frozen=True)
class Address:
    postcode: str
    city: str
    street: str | None = None


@dataclass(frozen=True)
class Slot:
    """One opening slot: ISO weekday (1 = Monday), local times HH:MM, and for a
    mobile permanence or a bus the place where it is held."""

    weekday: int
    opens: str
    closes: str
    place: str | None = None

    def sort_key(self) -> tuple[int, str, str, str]:
        return (self.weekday, self.opens, self.closes, self.place or "")


@dataclass(frozen=True)
class Site:
    site_id: str
    name: str
    kind: str
    address: Address
    department: str
    operators: tuple[str, ...]
    schedule: tuple[Slot, ...] = field(default=())
    parent_site_id: str | None = None

    def __post_init__(self) -> None:
        problems = site_problems(self)
        if problems:
            raise InvalidSite(problems)
        rank = {code: i for i, code in enumerate(OPERATOR_CODES)}
        object.__setattr__(self, "kind", str(self.kind))
        object.__setattr__(self, "operators",
                           tuple(str(code) for code in sorted(self.operators, key=rank.__getitem__)))
        object.__setattr__(self, "schedule", tuple(sorted(self.schedule, key=Slot.sort_key)))

    @property
    def itinerant(self) -> bool:
        return self.kind in (SiteKind.MOBILE_PERMANENCE, SiteKind.BUS)

    def serves(self, operator: str) -> bool:
        return operator in self.operators

    def missing_national_operators(self) -> tuple[str, ...]:
        """The national operators this site does not (yet) serve."""
        return tuple(code for code in NATIONAL_OPERATORS if code not in self.operators)


@dataclass(frozen=True)
class SiteRecord:
    """A site as stored: its description and when it was created, changed, retired."""

    site: Site
    created_at: datetime
    updated_at: datetime
    retired_at: datetime | None = None

    @property
    def site_id(self) -> str:
        return self.site.site_id

    @property
    def active(self) -> bool:
        return self.retired_at is None

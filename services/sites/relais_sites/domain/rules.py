"""The registry's rules. Each check returns the problems it finds, each naming the
field at fault with a dotted path (`schedule.2.place`), so that callers can report
all of them at once."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from relais_sites.domain.codes import (
    CLOCK,
    DEPARTMENT,
    ITINERANT_KINDS,
    KINDS,
    MAX_CITY,
    MAX_NAME,
    MAX_PLACE,
    MAX_SLOTS,
    MAX_STREET,
    OPERATOR_CODES,
    PARENT_KINDS,
    POSTCODE,
    SITE_ID,
    SiteKind,
)

if TYPE_CHECKING:
    from relais_sites.domain.model import Site, SiteRecord, Slot


@dataclass(frozen=True)
class Problem:
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class InvalidSite(ValueError):
    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(str(p) for p in problems))
        self.problems = tuple(problems)


def site_problems(site: Site) -> list[Problem]:
    """Everything wrong with a site description taken on its own."""
    problems: list[Problem] = []
    if not SITE_ID.match(site.site_id):
        problems.append(Problem("site_id", "must be a lowercase slug of 2 to 81 letters, digits and "
                                           "hyphens, e.g. 'agen-leon-blum-poste'"))
    if not site.name.strip() or len(site.name) > MAX_NAME:
        problems.append(Problem("name", f"must be 1 to {MAX_NAME} characters"))
    if site.kind not in KINDS:
        problems.append(Problem("kind", f"unknown kind {site.kind!r}; one of {', '.join(KINDS)}"))
    problems += _address_problems(site)
    if not DEPARTMENT.match(site.department):
        problems.append(Problem("department", "must be a department code such as '47', '2A' or '974'"))
    problems += _operator_problems(site.operators)
    problems += _parent_problems(site)
    problems += schedule_problems(site.kind, site.schedule)
    return problems


def _address_problems(site: Site) -> list[Problem]:
    address = site.address
    problems = []
    if address.street is not None and not (address.street.strip() and len(address.street) <= MAX_STREET):
        problems.append(Problem("address.street", f"must be 1 to {MAX_STREET} characters when given"))
    if not POSTCODE.match(address.postcode):
        problems.append(Problem("address.postcode", "must be a French postcode of five digits"))
    if not address.city.strip() or len(address.city) > MAX_CITY:
        problems.append(Problem("address.city", f"must be 1 to {MAX_CITY} characters"))
    return problems


def _operator_problems(operators: Sequence[str]) -> list[Problem]:
    if not operators:
        return [Problem("operators", "a site serves at least one operator")]
    problems = []
    seen: set[str] = set()
    for i, code in enumerate(operators):
        if code not in OPERATOR_CODES:
            problems.append(Problem(f"operators.{i}", f"unknown operator code {code!r}; "
                                                      f"one of {', '.join(OPERATOR_CODES)}"))
        elif code in seen:
            problems.append(Problem(f"operators.{i}", f"operator {code!r} is listed twice"))
        seen.add(code)
    return problems


def _parent_problems(site: Site) -> list[Problem]:
    parent = site.parent_site_id
    if site.kind == SiteKind.MOBILE_PERMANENCE and parent is None:
        return [Problem("parent_site_id", "a mobile permanence depends on a fixed site or post office: "
                                          "give its parent_site_id")]
    if parent is None:
        return []
    if site.kind not in ITINERANT_KINDS:
        return [Problem("parent_site_id", f"only a mobile permanence or a bus depends on another site, "
                                          f"not a {site.kind}")]
    if not SITE_ID.match(parent):
        return [Problem("parent_site_id", "must be a site id (a lowercase slug)")]
    if parent == site.site_id:
        return [Problem("parent_site_id", "a site cannot depend on itself")]
    return []


def schedule_problems(kind: str, schedule: Sequence[Slot]) -> list[Problem]:
    problems: list[Problem] = []
    itinerant = kind in ITINERANT_KINDS
    if itinerant and not schedule:
        problems.append(Problem("schedule", f"a {kind} needs a schedule saying when and where it is held"))
    if len(schedule) > MAX_SLOTS:
        problems.append(Problem("schedule", f"at most {MAX_SLOTS} slots"))
    for i, slot in enumerate(schedule):
        where = f"schedule.{i}"
        if not 1 <= slot.weekday <= 7:
            problems.append(Problem(f"{where}.weekday", "must be an ISO weekday, 1 (Monday) to 7 (Sunday)"))
        clocks_ok = True
        for name in ("opens", "closes"):
            if not CLOCK.match(getattr(slot, name)):
                problems.append(Problem(f"{where}.{name}", "must be a time of day, HH:MM (24-hour clock)"))
                clocks_ok = False
        if clocks_ok and slot.opens >= slot.closes:
            problems.append(Problem(f"{where}.closes", f"must be after opens ({slot.opens})"))
        if slot.place is None:
            if itinerant:
                problems.append(Problem(f"{where}.place", f"each slot of a {kind} says where it is held"))
        elif not itinerant:
            problems.append(Problem(f"{where}.place", f"a {kind} opens at its own address: "
                                                      "place is only for mobile permanences and buses"))
        elif not slot.place.strip() or len(slot.place) > MAX_PLACE:
            problems.append(Problem(f"{where}.place", f"must be 1 to {MAX_PLACE} characters"))
    problems += _overlaps(schedule)
    return problems


def _overlaps(schedule: Sequence[Slot]) -> list[Problem]:
    problems = []
    for i, slot in enumerate(schedule):
        for j in range(i):
            other = schedule[j]
            if (slot.weekday == other.weekday and slot.opens < other.closes
                    and other.opens < slot.closes):
                problems.append(Problem(f"schedule.{i}", f"overlaps schedule.{j} (day {slot.weekday}, "
                                                         f"{other.opens}-{other.closes})"))
                break
    return problems


def parent_problems(site: Site, parent: SiteRecord | None) -> list[Problem]:
    """Checks the site a mobile permanence or bus depends on, once looked up."""
    if site.parent_site_id is None:
        return []
    if parent is None:
        return [Problem("parent_site_id", f"unknown site {site.parent_site_id!r}")]
    if parent.retired_at is not None:
        return [Problem("parent_site_id", f"site {site.parent_site_id!r} is retired")]
    if parent.site.kind not in PARENT_KINDS:
        return [Problem("parent_site_id", f"site {site.parent_site_id!r} is a {parent.site.kind}; "
                                          "a permanence or a bus depends on a fixed site or a post office")]
    return []


def kind_change_problems(site: Site, active_children: Sequence[str]) -> list[Problem]:
    """A site other sites depend on must stay a fixed site or a post office."""
    if active_children and site.kind not in PARENT_KINDS:
        return [Problem("kind", f"{', '.join(active_children)} depend(s) on this site, "
                                f"which must stay a fixed site or a post office")]
    return []

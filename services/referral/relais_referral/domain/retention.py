"""How long a citizen's personal data is kept, and what is left once it is erased.

A referral keeps its summary and the personal parts of its timeline `referral` days
after it was closed or cancelled; a visit closed without a referral (solved on the
spot, abandoned) keeps the citizen's identity and contact `visit` days after it closed;
anything untouched for `inactive` days is erased too, open or not. A visit is never
erased while one of its referrals still needs it, and is erased with the last of them.
What the statistics need stays: site, adviser, operator, procedure, dates, statuses,
outcomes. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from relais_referral.domain.lifecycle import Status

ENDED = frozenset({Status.CLOSED, Status.CANCELLED})
CLOSED_WITHOUT_REFERRAL = frozenset({"solved_on_the_spot", "abandoned"})
# What a timeline entry keeps: codes, dates and channels, never words someone wrote
# (questions, messages, reasons, case references, appointments, documents).
KEPT_DETAIL = frozenset({"due_at", "outcome", "reason_code", "suggested_operator", "channel", "recipient"})
MAX_IDS = 1000  # per list of an erasure request (the contract's limit)


@dataclass(frozen=True)
class Periods:
    referral: timedelta
    visit: timedelta
    inactive: timedelta

    @property
    def shortest(self) -> timedelta:
        return min(self.referral, self.visit, self.inactive)


def referral_due(status: Status, changed_at: datetime, last_activity: datetime, at: datetime,
                 periods: Periods) -> bool:
    """`changed_at`: its last change of status; `last_activity`: that or its timeline's
    last entry, whichever is later."""
    if last_activity <= at - periods.inactive:
        return True
    return status in ENDED and changed_at <= at - periods.referral


@dataclass(frozen=True)
class VisitFacts:
    resolution: str | None
    closed_at: datetime | None
    last_activity: datetime
    referrals: int  # how many referrals it led to
    referrals_kept: int  # how many of them still hold personal data


def visit_due(visit: VisitFacts, at: datetime, periods: Periods) -> bool:
    if visit.referrals_kept:
        return False
    if visit.referrals:  # the last of its referrals was erased: nothing needs the identity now
        return True
    if visit.last_activity <= at - periods.inactive:
        return True
    return (visit.resolution in CLOSED_WITHOUT_REFERRAL and visit.closed_at is not None
            and visit.closed_at <= at - periods.visit)


def in_progress(status: Status) -> bool:
    """Not closed nor cancelled: the citizen's data cannot be erased on request yet."""
    return status not in ENDED


def stripped(detail: Mapping[str, Any]) -> dict[str, Any]:
    """A timeline entry's detail without anything personal."""
    return {k: v for k, v in detail.items()
            if k in KEPT_DETAIL and isinstance(v, str | int | float | bool)}


@dataclass(frozen=True)
class Erasure:
    """The ids of one `personal_data.erasure_requested`."""

    referral_ids: tuple[str, ...]
    visit_ids: tuple[str, ...]


def erasures(groups: Iterable[Erasure]) -> list[Erasure]:
    """Groups that must travel together (a visit and all its referrals) packed into as
    few requests as the contract's lists allow; a group is split only if it alone is
    over the limit."""
    packed: list[Erasure] = []
    referrals: list[str] = []
    visits: list[str] = []
    for group in groups:
        for part in _parts(group):
            if len(referrals) + len(part.referral_ids) > MAX_IDS or len(visits) + len(part.visit_ids) > MAX_IDS:
                packed.append(Erasure(tuple(referrals), tuple(visits)))
                referrals, visits = [], []
            referrals += [r for r in part.referral_ids if r not in referrals]
            visits += [v for v in part.visit_ids if v not in visits]
    if referrals or visits:
        packed.append(Erasure(tuple(referrals), tuple(visits)))
    return packed


def _parts(group: Erasure) -> list[Erasure]:
    if len(group.referral_ids) <= MAX_IDS and len(group.visit_ids) <= MAX_IDS:
        return [group]
    size = max(len(group.referral_ids), len(group.visit_ids))
    return [Erasure(group.referral_ids[i:i + MAX_IDS], group.visit_ids[i:i + MAX_IDS])
            for i in range(0, size, MAX_IDS)]

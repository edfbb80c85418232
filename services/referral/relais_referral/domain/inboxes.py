"""What ops watch of each operator: its referrals overdue, and those waiting in its
inbox that it has not acknowledged yet, with the age of the oldest — how the platform
sees an operator that stopped reading its inbox, whether or not it ever joined a
consumer group. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace

from relais_referral.domain.lifecycle import Status

# The statuses in which a referral waits on its operator: the overdue rule applies to
# them (an overdue flag stays on a referral once answered, rejected or cancelled).
AWAITING_OPERATOR = (Status.ROUTED, Status.ACKNOWLEDGED, Status.INFO_REQUESTED)
# Routed to the operator, and no move of the operator yet (acknowledged, information
# requested, rejected, answered all leave this status).
UNACKNOWLEDGED = Status.ROUTED


@dataclass(frozen=True)
class InboxFigures:
    operator: str
    overdue: int = 0
    unacknowledged: int = 0
    oldest_unacknowledged_age_s: float = 0.0


def per_operator(operators: Iterable[str], found: Iterable[InboxFigures]) -> dict[str, InboxFigures]:
    """One entry per operator, in order: each of `operators` (zeros when nothing waits
    on it) and any other that `found` names. The age is 0 when nothing is
    unacknowledged, and never negative (clocks)."""
    figures = {operator: InboxFigures(operator) for operator in operators}
    for entry in found:
        age = max(entry.oldest_unacknowledged_age_s, 0.0) if entry.unacknowledged else 0.0
        figures[entry.operator] = replace(entry, oldest_unacknowledged_age_s=age)
    return dict(sorted(figures.items()))

"""The gauges ops watch each operator by (Prometheus, `GET /metrics`): its referrals
overdue, and those routed to its inbox that it has not acknowledged yet, with the age
of the oldest — an operator that stopped reading shows here even if its consumer never
joined a group.

Counted by one query every RELAIS_OPS_GAUGES_S seconds (a supervised loop), never by a
scrape: a scrape reads the figures of the last count. Every operator of
`deploy/topics.yaml` has its series, 0 when nothing waits on it, so that an alert can
see it; an operator only the referrals name keeps its series too, 0 once they are done.
Each instance of the service counts the same database: the figures are the same on all
(aggregate them with `max by (operator)`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence

import asyncpg
from prometheus_client import Gauge

from relais_referral.adapters import store
from relais_referral.domain.inboxes import InboxFigures, per_operator

REFERRALS_OVERDUE = Gauge(
    "relais_referrals_overdue",
    "Referrals flagged overdue (no answer at their due time) and still waiting on the operator "
    "(routed, acknowledged or info_requested).", ["operator"])
INBOX_UNACKNOWLEDGED = Gauge(
    "relais_operator_inbox_unacknowledged_referrals",
    "Referrals routed to the operator's inbox that it has not acknowledged yet (status routed).", ["operator"])
INBOX_OLDEST_AGE = Gauge(
    "relais_operator_inbox_oldest_unacknowledged_age_seconds",
    "Time since the oldest referral the operator has not acknowledged yet was routed to its inbox "
    "(0 when none).", ["operator"])

Read = Callable[[], Awaitable[Sequence[InboxFigures]]]


class InboxGauges:
    """The three gauges, set from `read` (the count of the referrals waiting on each
    operator) for `operators` and any other operator seen."""

    def __init__(self, read: Read, operators: Iterable[str]) -> None:
        self._read = read
        self._operators = set(operators)

    async def refresh(self) -> dict[str, InboxFigures]:
        figures = per_operator(self._operators, await self._read())
        self._operators.update(figures)
        for operator, entry in figures.items():
            REFERRALS_OVERDUE.labels(operator).set(entry.overdue)
            INBOX_UNACKNOWLEDGED.labels(operator).set(entry.unacknowledged)
            INBOX_OLDEST_AGE.labels(operator).set(entry.oldest_unacknowledged_age_s)
        return figures

    async def run(self, every_s: float) -> None:
        """Counts again every `every_s` seconds. A failing count (database away) ends the
        loop: the runtime logs it and starts it again; the gauges keep the last figures."""
        while True:
            await self.refresh()
            await asyncio.sleep(every_s)


def inbox_gauges(pool: asyncpg.Pool, operators: Iterable[str]) -> InboxGauges:
    async def read() -> list[InboxFigures]:
        async with pool.acquire() as conn:
            return await store.awaiting_operators(conn)

    return InboxGauges(read, operators)

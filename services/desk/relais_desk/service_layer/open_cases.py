"""The gauge ops watch the desk by (Prometheus, `GET /metrics`): the cases of its
operator still open — not answered, rejected nor cancelled — that is, the experts'
work in hand. The platform's own view of the operator (referrals unacknowledged,
overdue) is the referral service's; this one is what waits on the desk's people.

Counted by one query every RELAIS_OPS_GAUGES_S seconds (a supervised loop), never by a
scrape."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import asyncpg
from prometheus_client import Gauge

from relais_desk.adapters import store

OPEN_CASES = Gauge("relais_desk_open_cases",
                   "Cases on the operator desk not answered, rejected nor cancelled yet "
                   "(new, acknowledged, info_requested, info_received).", ["operator"])

Count = Callable[[], Awaitable[int]]


class OpenCasesGauge:
    def __init__(self, count: Count, operator: str) -> None:
        self._count = count
        self._operator = operator

    async def refresh(self) -> int:
        found = await self._count()
        OPEN_CASES.labels(self._operator).set(found)
        return found

    async def run(self, every_s: float) -> None:
        """Counts again every `every_s` seconds. A failing count (database away) ends the
        loop: the runtime logs it and starts it again; the gauge keeps the last figure."""
        while True:
            await self.refresh()
            await asyncio.sleep(every_s)


def open_cases_gauge(pool: asyncpg.Pool, operator: str) -> OpenCasesGauge:
    async def count() -> int:
        async with pool.acquire() as conn:
            return await store.count_open(conn)

    return OpenCasesGauge(count, operator)

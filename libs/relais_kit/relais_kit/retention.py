"""The retention job every service runs: personal data is kept as long as its purpose
needs, then anonymised or deleted, and each run is recorded (`retention_runs`: counts
per kind, never content).

The kit's own steps prune what the plumbing keeps: published outbox rows past
`RELAIS_RETENTION_OUTBOX_DAYS` (PostgreSQL stays the system of record of the state;
the rows only serve re-publication and inspection), processed event ids past
`RELAIS_RETENTION_PROCESSED_EVENTS_DAYS` (they must outlive any redelivery: the
longest retention of a topic, dead letters included), and expired sessions. Each
service adds its own steps (anonymising closed referrals, deliveries…). One instance
at a time runs the job (advisory lock), and the scheduled job runs once per period
whatever the number of instances (a run skips when another one started less than a
period ago: `retention_runs`)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

from relais_kit import sessions
from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.topics import TopicsFile

# One step: deletes or anonymises what is past its time, in the caller's transaction;
# returns how many rows it changed.
Step = Callable[[asyncpg.Connection, datetime], Awaitable[int]]
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Periods:
    outbox: timedelta
    processed_events: timedelta


def longest_redelivery(topics: TopicsFile) -> timedelta:
    """How long a record may still be delivered again: the longest retention of a
    topic that is not compacted (dead letters included: they can be replayed)."""
    longest = 0
    for spec in topics.topics:
        if "compact" in spec.config.get("cleanup.policy", "delete"):
            continue
        longest = max(longest, int(spec.config.get("retention.ms", "0")))
    return timedelta(milliseconds=longest)


def check_periods(periods: Periods, topics: TopicsFile) -> None:
    """Refuses to forget a processed event while the broker may still deliver it again
    (a duplicate effect would follow)."""
    needed = longest_redelivery(topics)
    if periods.processed_events <= needed:
        raise ValueError(f"RELAIS_RETENTION_PROCESSED_EVENTS_DAYS must exceed the longest topic retention "
                         f"({needed.days} days, deploy/topics.yaml), else a redelivered event would be handled "
                         "twice")


def kit_steps(periods: Periods) -> list[tuple[str, Step]]:
    async def outbox(conn: asyncpg.Connection, at: datetime) -> int:
        published = await conn.execute("DELETE FROM outbox WHERE published_at < $1", at - periods.outbox)
        # Rows ops discarded (relais_kit.parked) never get published: kept as long.
        discarded = await conn.execute("DELETE FROM outbox WHERE discarded_at < $1", at - periods.outbox)
        return _count(published) + _count(discarded)

    async def processed(conn: asyncpg.Connection, at: datetime) -> int:
        status = await conn.execute("DELETE FROM processed_events WHERE processed_at < $1",
                                    at - periods.processed_events)
        return _count(status)

    async def expired_sessions(conn: asyncpg.Connection, at: datetime) -> int:
        exists = await conn.fetchval("SELECT to_regclass('sessions') IS NOT NULL")
        return await sessions.prune_expired(conn) if exists else 0

    return [("outbox_published", outbox), ("processed_events", processed), ("sessions_expired", expired_sessions)]


def _count(status: str) -> int:
    return int(status.split()[-1])


async def run_once(pool: asyncpg.Pool, steps: Sequence[tuple[str, Step]], *, trigger: str = "schedule",
                   at: datetime | None = None, unless_ran_within: timedelta | None = None) -> dict[str, int] | None:
    """Every step, each in its own transaction, then the run's record. None when
    another instance is running the job, or (`unless_ran_within`) a run with the same
    trigger started less than that long ago."""
    moment = at or now()
    async with pool.acquire() as lock:
        if not await lock.fetchval("SELECT pg_try_advisory_lock(hashtext(current_schema() || '.retention'))"):
            return None
        try:
            if unless_ran_within is not None and await lock.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM retention_runs WHERE trigger = $1 AND started_at > $2)",
                    trigger, moment - unless_ran_within):
                return None  # another instance's turn came first
            counts: dict[str, int] = {}
            for name, step in steps:
                async with pool.acquire() as conn, conn.transaction():
                    counts[name] = await step(conn, moment)
            await lock.execute(
                "INSERT INTO retention_runs (started_at, finished_at, trigger, counts) VALUES ($1, now(), $2, $3)",
                moment, trigger, json.dumps(counts))
        finally:
            await lock.execute("SELECT pg_advisory_unlock(hashtext(current_schema() || '.retention'))")
    if any(counts.values()):
        log.info("retention_run", trigger=trigger, **counts)
    return counts


class RetentionJob:
    def __init__(self, pool: asyncpg.Pool, steps: Sequence[tuple[str, Step]], every_s: float) -> None:
        self._pool = pool
        self._steps = tuple(steps)
        self._every_s = every_s

    async def run(self) -> None:
        # A little less than the period: the instance that ran last time is not
        # pushed out by its own run's record.
        period = timedelta(seconds=self._every_s * 0.9)
        while True:
            await run_once(self._pool, self._steps, unless_ran_within=period)
            await asyncio.sleep(self._every_s)

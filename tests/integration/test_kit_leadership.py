"""Several instances of a service against the real PostgreSQL and the real broker:
one outbox relay publishes per schema at a time, the others take over when it dies,
nothing is published twice and each key's order holds; the retention job runs once
per period; the overdue check flags a referral once however many instances run it."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from relais_kit import kafka, outbox, retention
from relais_kit.contract import load_contract
from relais_kit.db import create_pool, migrate
from relais_kit.leadership import Leadership
from relais_kit.settings import REPO_ROOT
from relais_kit.vault import FileKeyRing, Vault
from tests.support import TopicReader, eventually, headers

CONTRACT = load_contract(REPO_ROOT / "schemas")
SCHEMA = "kit_leaders"
KEYS = 5


def retired(i: int):  # type: ignore[no-untyped-def]
    return CONTRACT.event("site.retired", source="/relais/tests", subject=f"site-{i % KEYS}",
                          data={"site_id": f"site-{i % KEYS}",
                                "retired_at": f"2026-11-20T{10 + i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}+01:00"})


@dataclass
class Instance:
    """What one service process holds for the relay: its pool, producer, relay."""

    pool: asyncpg.Pool
    producer: AIOKafkaProducer
    relay: outbox.OutboxRelay
    leadership: Leadership
    vault: Vault
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.relay.run())

    async def close(self) -> None:
        if self.task is not None:
            self.relay.request_stop()
            await asyncio.wait([self.task], timeout=5)
            self.task.cancel()
        await self.producer.stop()
        await self.pool.close()


@pytest_asyncio.fixture
async def instances(database_url: str, kafka_bootstrap: str, tmp_path: Path) -> AsyncIterator[list[Instance]]:
    vault = Vault(FileKeyRing.create(tmp_path / "keys.json"))
    made: list[Instance] = []
    for _ in range(2):
        pool = await create_pool(database_url, SCHEMA)
        await migrate(pool)
        producer = kafka.producer(kafka_bootstrap)
        await producer.start()
        leadership = Leadership.dedicated("outbox", database_url, SCHEMA)
        relay = outbox.OutboxRelay(pool, producer, source="/relais/tests", vault=vault, leadership=leadership)
        made.append(Instance(pool, producer, relay, leadership, vault))
    try:
        yield made
    finally:
        for instance in made:
            await instance.close()


async def record(instance: Instance, numbers: range) -> None:
    async with instance.pool.acquire() as conn, conn.transaction():
        for i in numbers:
            await outbox.record(conn, "sites", retired(i), instance.vault)


def check_published_once_in_order(records: list, expected: int) -> None:  # type: ignore[type-arg]
    ids = Counter(headers(r)["ce_id"] for r in records)
    assert len(ids) == expected and set(ids.values()) == {1}, \
        f"every event once: {sum(ids.values())} records for {len(ids)} events"
    times: dict[bytes, list[str]] = {}
    for r in records:
        times.setdefault(r.key, []).append(json.loads(r.value)["retired_at"])
    assert all(t == sorted(t) for t in times.values()), "each key's events in the order recorded"


async def lock_holder(database_url: str) -> int | None:
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(  # type: ignore[no-any-return]
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1"
            " AND ((classid::bigint << 32) | objid::bigint) = hashtext($1)", f"{SCHEMA}.outbox")
    finally:
        await conn.close()


async def test_one_relay_publishes_and_the_other_takes_over_when_it_dies(
        instances: list[Instance], database_url: str, kafka_bootstrap: str) -> None:
    first, second = instances
    await record(first, range(0, 150))
    async with TopicReader(kafka_bootstrap, "sites") as reader:
        first.start()
        await eventually(lambda: lock_holder(database_url), what="a relay holding the lock")
        second.start()  # a second instance comes up while the first publishes
        await reader.until(lambda rs: len(rs) >= 150, what="150 events")
        await record(second, range(150, 200))  # written through the other instance
        records = await reader.until(lambda rs: len(rs) >= 200, what="200 events")
        assert (first.relay.published, second.relay.published) == (200, 0)
        assert (first.leadership.acquired, second.leadership.acquired) == (1, 0)

        # The leader's process dies: its task ends without a word, PostgreSQL drops its session.
        assert first.task is not None
        first.task.cancel()
        holder = await lock_holder(database_url)
        admin = await asyncpg.connect(database_url)
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", holder)
        finally:
            await admin.close()
        await record(second, range(200, 300))
        records = await reader.until(lambda rs: len(rs) >= 300, what="300 events after the handover")
        await asyncio.sleep(1.5)  # a late duplicate would show up here
        records = await reader.until(lambda rs: len(rs) >= 300)
    assert second.leadership.acquired == 1 and second.relay.published == 100
    check_published_once_in_order(records, 300)


async def test_a_standby_relay_stops_at_once_when_asked(instances: list[Instance], database_url: str) -> None:
    first, second = instances
    first.start()
    await eventually(lambda: lock_holder(database_url), what="a relay holding the lock")
    second.start()
    await asyncio.sleep(0.3)
    second.relay.request_stop()
    assert second.task is not None
    done, _ = await asyncio.wait([second.task], timeout=3)
    assert done, "a relay waiting for the lock obeys a stop request"
    assert second.leadership.acquired == 0


async def test_the_retention_job_runs_once_per_period_whatever_the_instances(
        instances: list[Instance]) -> None:
    first, second = instances
    period = timedelta(minutes=10)
    steps = retention.kit_steps(retention.Periods(timedelta(days=30), timedelta(days=400)))
    ran = [await retention.run_once(instance.pool, steps, unless_ran_within=period)
           for instance in (first, second, first)]
    assert [r is not None for r in ran] == [True, False, False]
    # An explicit run (an ops command) is not held back by the schedule's.
    assert await retention.run_once(second.pool, steps, trigger="command", unless_ran_within=period) is not None
    later = datetime.now(UTC) + period
    assert await retention.run_once(second.pool, steps, at=later, unless_ran_within=period) is not None
    async with first.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM retention_runs") == 3


@pytest.mark.parametrize("runners", [2])
async def test_two_overdue_checks_at_once_flag_each_referral_once(
        database_url: str, kafka_bootstrap: str, runners: int) -> None:
    from relais_referral.service_layer.overdue import flag_overdue
    from tests.referral_app import refer, referral_api, status_is

    async with referral_api(database_url, kafka_bootstrap, RELAIS_OVERDUE_CHECK_S=3600) as api:
        ids = [await refer(api) for _ in range(6)]
        for referral_id in ids:
            await eventually(lambda: status_is(api, referral_id, "routed"), what="routed")  # noqa: B023
        pool = api.app.state.runtime.pool
        ctx = api.app.state.context
        async with pool.acquire() as conn:
            await conn.execute("UPDATE referrals SET due_at = $2 WHERE referral_id = ANY($1::uuid[])",
                               ids, datetime.now(UTC) - timedelta(minutes=1))
        both_started = asyncio.Barrier(runners)

        async def instance() -> int:
            async with pool.acquire() as conn, conn.transaction():
                await both_started.wait()
                return await flag_overdue(conn, ctx, limit=4)

        flagged = await asyncio.gather(*(instance() for _ in range(runners)))
        async with pool.acquire() as conn, conn.transaction():
            flagged.append(await flag_overdue(conn, ctx))
            counts = await conn.fetch("SELECT referral_id, count(*) AS n FROM referral_timeline"
                                      " WHERE event = 'overdue' AND referral_id = ANY($1::uuid[]) GROUP BY 1", ids)
    assert sum(flagged) == len(ids), f"flagged per runner: {flagged}"
    assert flagged[0] and flagged[1], "both runners found work: the rows one holds are skipped by the other"
    assert len(counts) == len(ids) and {r["n"] for r in counts} == {1}

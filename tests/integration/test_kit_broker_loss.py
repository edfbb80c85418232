"""Losing the broker, against the real PostgreSQL and a real embedded broker of the
test's own that it kills and starts again empty (memory storage): each service's watch
notices, recreates its topics, re-publishes its outbox, and every instance restarts
its consumers; a broker that kept its marker causes nothing. The ops command selects,
counts (dry run) and audits."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from aiokafka.structs import OffsetAndMetadata

from relais_kit import kafka
from relais_kit.consumer import Delivery, EventConsumer
from relais_kit.contract import load_contract
from relais_kit.db import create_pool, migrate
from relais_kit.envelope import to_record
from relais_kit.recovery import BrokerWatch, State
from relais_kit.republish import run as republish_command
from relais_kit.settings import REPO_ROOT
from relais_kit.topics import TopicsFile, create_topics, load_topics
from tests.support import LosableBroker as Broker
from tests.support import eventually

TOPICS = load_topics(REPO_ROOT / "deploy" / "topics.yaml")
CONTRACT = load_contract(REPO_ROOT / "schemas")
SCHEMA = "kit_broker_loss"
READS = ["operator.caf.outbox"]


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, SCHEMA)
    await migrate(p)
    yield p
    await p.close()


async def published_rows(pool: asyncpg.Pool, n: int, topic: str = "referrals") -> None:
    async with pool.acquire() as conn:
        await conn.executemany(
            "INSERT INTO outbox (topic, record_key, event_id, event_type, subject, occurred_at, data,"
            " published_at) VALUES ($1, $2, $3, 'fr.franceservices.referral.routed.v1', $2, now(), '{}'::jsonb,"
            " now())", [(topic, f"ref-{i}", f"evt-{topic}-{i}") for i in range(n)])


async def unpublished(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))


class Restarts:
    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


def watch(pool: asyncpg.Pool, broker: Broker, restarts: Restarts) -> BrokerWatch:
    return BrokerWatch(pool, bootstrap=broker.bootstrap, schema=SCHEMA, topics=TOPICS,
                       topics_in_use=lambda: READS, on_new_broker=restarts, outbox_days=30)


async def topic_names(bootstrap: str) -> set[str]:
    admin = kafka.admin(bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_a_broker_restarted_empty_is_noticed_repaired_and_republished_once(
        pool: asyncpg.Pool, broker: Broker) -> None:
    await published_rows(pool, 5)
    restarts_a, restarts_b = Restarts(), Restarts()
    a, b = watch(pool, broker, restarts_a), watch(pool, broker, restarts_b)

    # First look: no marker recorded yet; one is left, the topics are created, nothing
    # is re-published (there is no earlier broker).
    assert (await a.check()).state is State.NEW  # type: ignore[union-attr]
    assert await unpublished(pool) == 0
    assert {"referrals", "operator.caf.outbox", "operator.caf.outbox.dlq"} <= await topic_names(broker.bootstrap)
    # The marker sits on a topic the service reads (committing an offset needs Read there).
    assert await pool.fetchval("SELECT topic FROM broker_marker") == "operator.caf.outbox"
    # The other instance finds the marker in place: nothing is re-published.
    assert (await b.check()).state is State.INTACT  # type: ignore[union-attr]
    assert (await a.check()).state is State.INTACT  # type: ignore[union-attr]
    assert await unpublished(pool) == 0

    broker.lose()
    assert "referrals" not in await topic_names(broker.bootstrap)
    found = await a.check()
    assert found is not None and found.state is State.LOST and "marker is gone" in found.reason
    assert await unpublished(pool) == 5
    assert {"referrals", "operator.caf.outbox"} <= await topic_names(broker.bootstrap)
    # b did not repair again, but it saw a new broker and restarts its consumers too.
    assert (await b.check()).state is State.INTACT  # type: ignore[union-attr]
    assert restarts_a.count == 1 and restarts_b.count == 1
    runs = await pool.fetch("SELECT requested_by, reason, rows FROM republish_runs ORDER BY id")
    assert [(r["requested_by"], r["rows"]) for r in runs] == [("relais_kit.recovery", 5)]
    assert "marker is gone" in runs[-1]["reason"]


async def test_two_instances_noticing_together_republish_once(pool: asyncpg.Pool, broker: Broker) -> None:
    await published_rows(pool, 3)
    a, b = watch(pool, broker, Restarts()), watch(pool, broker, Restarts())
    await a.check()
    broker.lose()
    await asyncio.gather(a.check(), b.check())
    assert await pool.fetchval("SELECT count(*) FROM republish_runs") == 1
    assert a.recoveries + b.recoveries == 1
    assert await unpublished(pool) == 3


async def test_our_clients_do_not_create_a_topic_by_asking_for_it(broker: Broker) -> None:
    producer = kafka.producer(broker.bootstrap, request_timeout_ms=1500)
    await producer.start()
    try:
        with pytest.raises(Exception):  # noqa: B017  (aiokafka: KafkaTimeoutError on missing metadata)
            await producer.send_and_wait("referrals", b"{}")
    finally:
        await producer.stop()
    assert "referrals" not in await topic_names(broker.bootstrap)


async def test_the_ops_command_counts_marks_and_audits(pool: asyncpg.Pool, database_url: str,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    await published_rows(pool, 4)
    monkeypatch.setenv("DATABASE_URL", database_url)
    base = ["--service", SCHEMA, "--reason", "test"]
    assert await republish_command([*base, "--referral", "ref-2", "--dry-run"]) == 0
    assert "1 event(s)" in capsys.readouterr().out
    assert await unpublished(pool) == 0
    assert await republish_command([*base, "--referral", "ref-2' OR '1'='1"]) == 0
    assert await unpublished(pool) == 0
    assert await republish_command([*base, "--since", "2000-01-01T00:00Z"]) == 0
    assert await unpublished(pool) == 4
    assert await republish_command(["--service", SCHEMA, "--reason", "test", "--topic", "referrals"]) == 2
    runs = await pool.fetch("SELECT dry_run, rows, subject FROM republish_runs ORDER BY id")
    assert [(r["dry_run"], r["rows"]) for r in runs] == [(True, 1), (False, 0), (False, 4)]


async def test_a_consumer_restarted_after_the_loss_reads_the_new_topic_from_its_beginning(
        pool: asyncpg.Pool, broker: Broker) -> None:
    """A client that still knew the old broker may have committed its old offsets on the
    new one: the restarted consumer rewinds once, and misses nothing re-published there."""
    sites = TopicsFile(TOPICS.operators, tuple(t for t in TOPICS.topics if t.name == "sites"))

    async def publish(n: int, tag: str) -> None:
        producer = kafka.producer(broker.bootstrap)
        await producer.start()
        try:
            for i in range(n):
                event = CONTRACT.event("site.retired", source="/relais/tests", subject=f"site-{tag}-{i}",
                                       data={"site_id": f"site-{tag}-{i}", "retired_at": "2026-12-01T10:00:00+01:00"})
                key, value, headers = to_record(event)
                await producer.send_and_wait("sites", value=value, key=key, headers=headers)
        finally:
            await producer.stop()

    handled: list[str] = []

    async def on_retired(delivery: Delivery, conn: asyncpg.Connection) -> None:
        handled.append(delivery.event.data["site_id"])

    producer = kafka.producer(broker.bootstrap)
    await producer.start()
    consumer = EventConsumer(name="kit-rewind", bootstrap=broker.bootstrap, topics=["sites"], producer=producer,
                             pool=pool, contract=CONTRACT,
                             handlers={"fr.franceservices.site.retired.v1": on_retired})
    await create_topics(broker.bootstrap, sites, replication_factor=1)
    await publish(6, "old")
    task = asyncio.create_task(consumer.run())
    try:
        await eventually(lambda: asyncio.sleep(0, len(handled) == 6), what="the old events")
        task.cancel()
        await asyncio.wait([task])
        broker.lose()
        await create_topics(broker.bootstrap, sites, replication_factor=1)
        stale = kafka.consumer(broker.bootstrap, "kit-rewind")
        await stale.start()
        stale.assign([TopicPartition("sites", 0)])
        await stale.commit({TopicPartition("sites", 0): OffsetAndMetadata(6, "")})  # the old broker's offset
        await stale.stop()
        await publish(8, "new")
        consumer.rewind_next_run = True
        task = asyncio.create_task(consumer.run())
        await eventually(lambda: asyncio.sleep(0, len(handled) == 14), what="every new event")
        assert handled[6:] == [f"site-new-{i}" for i in range(8)]
    finally:
        task.cancel()
        await asyncio.wait([task])
        await producer.stop()

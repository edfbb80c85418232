"""Losing the broker loses nothing.

A broker that comes back empty (the embedded one restarted: memory storage), or a
cluster rebuilt after a disaster, has lost every record, topic and consumer-group
offset. Each service notices by itself and repairs what it published:

- **The marker.** Each schema leaves a marker on the broker: a random number committed
  as the offset of partition 0 of one of its topics, in a consumer group of its own
  (`relais-<schema>-broker-marker`), and keeps the same number in PostgreSQL
  (`broker_marker`). Every `check_s` seconds the watch reads both. The marker gone, or
  another number, or another cluster id (tansu's is a constant flag, so never the
  only sign): the broker is not the one this schema published to.
- **The repair**, by one instance at a time (the `broker_marker` row locked): create
  the topics this service reads or writes that are missing (`deploy/topics.yaml`);
  mark unpublished again the outbox rows published in the last `window` (the relay
  publishes them again, in outbox order); leave a new marker; then every instance
  restarts its consumers, each reading the new topics from their beginning once.
- **The bound.** A record published within a topic's retention may still be unread by
  some consumer (an operator's system down for a week reads its inbox when it comes
  back), and none older can be: the broker would have deleted it. So the window is
  the longest retention of the service's topics (30 days), never more than the
  outbox keeps (`RELAIS_RETENTION_OUTBOX_DAYS`), and `RELAIS_REPUBLISH_WINDOW_DAYS`
  may shorten it. Consumers drop what they had already handled by `ce_id`
  (processed ids are kept longer than any topic's retention): republishing more than
  was lost costs time, never a duplicate effect.
- **State the outbox window no longer holds.** A compacted topic (`sites`) keeps the
  last event of every key for ever, but the outbox keeps only the window: a service
  whose topic must be whole again re-announces its state through `on_lost` hooks,
  awaited by the repairing instance inside the repair's transaction (after the
  re-publication, so the announcements come last in outbox order; both commit or
  neither does, and exactly once per loss).
- **Operators' answers lost with the broker** are asked again by the re-delivered
  inbox events: the contract (`docs/broker-loss.md`) tells an operator's consumer
  to send its answers again, with the same `ce_id`s, on an inbox event it has
  already handled.

The detection logic (`verdict`) is free of I/O; `BrokerWatch` does the I/O."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import Enum

import asyncpg
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from aiokafka.structs import OffsetAndMetadata

from relais_kit import kafka
from relais_kit.db import CONNECTION_LOST
from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.republish import AUTOMATIC, Selection, republish
from relais_kit.retention import longest_redelivery
from relais_kit.topics import TopicsFile, create_topics

CHECK_S = 2.0
MARKER_PARTITION = 0

# Awaited with the connection of the repair's transaction, once per broker loss, by the
# instance that repairs: what it writes to the outbox is published after the re-publication.
# A hook that raises undoes the whole repair (nothing re-published, no new marker): the
# watch loop fails, is restarted, and the next look repairs again.
LostHook = Callable[[asyncpg.Connection], Awaitable[None]]



def marker_group(schema: str) -> str:
    """The consumer group a service keeps its marker in (its Kafka user needs Read on it)."""
    return f"relais-{schema}-broker-marker"


def marker_topic(names: set[str], reads: set[str]) -> str:
    """The topic the marker's offset is committed on: one the service reads if it reads
    any (committing an offset needs Read on the topic), else the first it writes."""
    return min((names & reads) or names)

class State(Enum):
    NEW = "new"        # no marker recorded yet: one is left, nothing re-published
    INTACT = "intact"
    LOST = "lost"


@dataclass(frozen=True)
class Stored:
    """What PostgreSQL remembers of the broker this schema last published to."""

    marker: int
    topic: str
    cluster_id: str | None


@dataclass(frozen=True)
class Seen:
    """What the broker shows now: its cluster id, and the marker (None: not there)."""

    cluster_id: str | None
    marker: int | None
    brokers: int = 0


@dataclass(frozen=True)
class Verdict:
    state: State
    reason: str


def verdict(stored: Stored | None, seen: Seen) -> Verdict:
    """Whether the broker still holds what this schema published to it."""
    if stored is None:
        # A new database, or one from before markers: there is no earlier broker to
        # compare with (`python -m relais_kit.republish` re-publishes on purpose).
        return Verdict(State.NEW, "no marker recorded yet")
    if stored.cluster_id and seen.cluster_id and stored.cluster_id != seen.cluster_id:
        return Verdict(State.LOST, "the cluster id changed")
    if seen.marker is None:
        return Verdict(State.LOST, "the marker is gone from the broker")
    if seen.marker != stored.marker:
        return Verdict(State.LOST, "the broker holds another marker")
    return Verdict(State.INTACT, "the marker is there")


def republish_window(topics: TopicsFile, names: Iterable[str], outbox_days: int,
                     override_days: float | None = None) -> timedelta:
    """How far back to re-publish: the longest retention of these topics, at most what
    the outbox keeps, shortened by the override if any (see the module's doc)."""
    wanted = set(names)
    mine = TopicsFile(topics.operators, tuple(t for t in topics.topics if t.name in wanted))
    window = min(longest_redelivery(mine) or timedelta(days=outbox_days), timedelta(days=outbox_days))
    if override_days is not None:
        window = min(window, timedelta(days=override_days))
    return window


def new_marker() -> int:
    return secrets.randbits(62) + 1


def fitting_replication_factor(topics: TopicsFile, brokers: int) -> int | None:
    """The file's factors, or the number of brokers when the cluster has fewer (the
    embedded broker, a single-broker development Kafka)."""
    wanted = max((t.replication_factor for t in topics.topics), default=1)
    return brokers if 0 < brokers < wanted else None


class BrokerWatch:
    """One per service process. `topics_in_use` says which topics the service reads
    (its consumers); the ones it writes are read from its outbox. `on_new_broker` is
    awaited on every instance once the broker changed (restart the consumers); each of
    `on_lost` once per loss, by the repairing instance only (see `LostHook`). `on_lost`
    is read at each repair: hooks added to the sequence later count."""

    def __init__(self, pool: asyncpg.Pool, *, bootstrap: str, schema: str, topics: TopicsFile,
                 topics_in_use: Callable[[], Iterable[str]],
                 on_new_broker: Callable[[], Awaitable[None]],
                 outbox_days: int, override_days: float | None = None, check_s: float = CHECK_S,
                 group: str | None = None, on_lost: Sequence[LostHook] = ()) -> None:
        self._pool = pool
        self._bootstrap = bootstrap
        self._topics = topics
        self._topics_in_use = topics_in_use
        self._on_new_broker = on_new_broker
        self._on_lost = on_lost
        self._outbox_days = outbox_days
        self._override_days = override_days
        self._check_s = check_s
        self.group = group or marker_group(schema)
        self._last_seen: int | None = None  # the marker this instance last saw on the broker
        self.recoveries = 0

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except (KafkaError, *CONNECTION_LOST) as exc:  # broker or database away: look again later
                log.warning("broker_check_failed", error=repr(exc))
            await asyncio.sleep(self._check_s)

    async def check(self) -> Verdict | None:
        """One look; repairs if needed. None when there is nothing to mark yet."""
        names = await self._names()
        if not names:
            return None
        stored = await self._stored()
        seen = await self._seen(stored.topic if stored else self._marker_topic(names))
        found = verdict(stored, seen)
        repaired = False
        if found.state is not State.INTACT:
            found, seen, repaired = await self._recover(names)
        if repaired or (self._last_seen is not None and seen.marker != self._last_seen):
            log.warning("broker_changed_consumers_restarting")
            await self._on_new_broker()
        self._last_seen = seen.marker
        return found

    async def _names(self) -> set[str]:
        """The service's topics that `deploy/topics.yaml` declares: read and written
        (the outbox's topics), with the dead-letter twins of those it reads."""
        reads = set(self._topics_in_use())
        async with self._pool.acquire() as conn:
            writes = {r["topic"] for r in await conn.fetch("SELECT DISTINCT topic FROM outbox")}
        declared = set(self._topics.names())
        return {n for n in (*reads, *writes, *(f"{r}.dlq" for r in reads)) if n in declared}

    def _marker_topic(self, names: set[str]) -> str:
        return marker_topic(names, set(self._topics_in_use()))

    async def _stored(self, conn: asyncpg.Connection | None = None) -> Stored | None:
        query = "SELECT marker, topic, cluster_id FROM broker_marker" + (" FOR UPDATE" if conn else "")
        if conn is None:
            async with self._pool.acquire() as own:
                row = await own.fetchrow(query)
        else:
            row = await conn.fetchrow(query)
        return Stored(row["marker"], row["topic"], row["cluster_id"]) if row else None

    async def _seen(self, topic: str) -> Seen:
        admin = kafka.admin(self._bootstrap)
        await admin.start()
        try:
            cluster = await admin.describe_cluster()
            cluster_id, brokers = cluster.get("cluster_id"), len(cluster.get("brokers") or ())
            tp = TopicPartition(topic, MARKER_PARTITION)
            try:
                offsets = await admin.list_consumer_group_offsets(self.group, partitions=[tp])
            except UnknownTopicOrPartitionError:
                return Seen(cluster_id, None, brokers)
            found = offsets.get(tp)
            return Seen(cluster_id, found.offset if found is not None and found.offset >= 0 else None, brokers)
        finally:
            await admin.close()

    async def _recover(self, names: set[str]) -> tuple[Verdict, Seen, bool]:
        """Under the row lock: look again (another instance may just have repaired), and
        repair if still needed. Returns the verdict and what the broker shows after."""
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO broker_marker (marker, topic) VALUES (0, $1)"
                               " ON CONFLICT DO NOTHING", self._marker_topic(names))
            stored = await self._stored(conn)
            assert stored is not None
            first = stored.marker == 0
            seen = await self._seen(stored.topic)
            found = verdict(None if first else stored, seen)
            if found.state is State.INTACT:
                return found, seen, False
            lost = found.state is State.LOST
            if lost:
                log.warning("broker_lost", reason=found.reason)
            mine = self._mine(names)
            created = await create_topics(self._bootstrap, mine,
                                          replication_factor=fitting_replication_factor(mine, seen.brokers))
            await self._check_topics(names)
            window = republish_window(self._topics, names, self._outbox_days, self._override_days)
            rows = 0
            if lost:
                rows = await republish(conn, Selection(published_since=now() - window), requested_by=AUTOMATIC,
                                       reason=f"broker lost: {found.reason}")
                for hook in self._on_lost:
                    await hook(conn)
            marker = new_marker()
            await self._leave_marker(stored.topic, marker)
            await conn.execute("UPDATE broker_marker SET marker = $1, cluster_id = $2, set_at = now(),"
                               " confirmed_at = now()", marker, seen.cluster_id)
        if not lost:
            log.info("broker_marker_left", topic=stored.topic, topics_created=len(created))
            return found, Seen(seen.cluster_id, marker, seen.brokers), False
        self.recoveries += 1
        log.warning("broker_recovered", reason=found.reason, topics_created=len(created), republished=rows,
                    window_days=round(window / timedelta(days=1), 3))
        return found, Seen(seen.cluster_id, marker, seen.brokers), True

    async def _check_topics(self, names: set[str]) -> None:
        """The broker answers a creation it refused (no Create right, a wrong factor) per
        topic, without an error: say which are still missing, and how to fix it."""
        admin = kafka.admin(self._bootstrap)
        await admin.start()
        try:
            missing = sorted(names - set(await admin.list_topics()))
        finally:
            await admin.close()
        if missing:
            log.error("topics_still_missing", topics=missing,
                      fix="grant this service Create on them, or run `python -m relais_kit.topics create`")

    def _mine(self, names: set[str]) -> TopicsFile:
        return TopicsFile(self._topics.operators, tuple(t for t in self._topics.topics if t.name in names))

    async def _leave_marker(self, topic: str, marker: int) -> None:
        consumer = kafka.consumer(self._bootstrap, self.group)
        await consumer.start()
        try:
            tp = TopicPartition(topic, MARKER_PARTITION)
            consumer.assign([tp])
            await consumer.commit({tp: OffsetAndMetadata(marker, "")})
        finally:
            await consumer.stop()

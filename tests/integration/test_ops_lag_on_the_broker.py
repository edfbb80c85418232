"""The lag monitor against the real broker, from outside the consumers: a group that
read everything is OK, one whose consumer closed while records kept coming is STOP, one
that reads less than arrives in every interval is WARN; lag in records and seconds is
exact, including where the embedded broker reports the last batch's end inclusively
(records written two or three per batch here, as the platform's producers do under
load). The monitor is sampled by the test, step by step (no timing in the assertions)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import NewTopic
from prometheus_client import CollectorRegistry

from relais_kit import kafka
from relais_ops.adapters.kafka_offsets import KafkaOffsets
from relais_ops.domain.lag import GroupLag, PartitionId, Status
from relais_ops.service_layer.lag_monitor import LagMetrics, LagMonitor
from relais_ops.settings import OpsSettings

pytestmark = pytest.mark.asyncio(loop_scope="module")

RUN = uuid.uuid4().hex[:8]
CAUGHT_UP, STOPPED, SLOW = f"ops-caught-up-{RUN}", f"ops-stopped-{RUN}", f"ops-slow-{RUN}"
GROUPS = {CAUGHT_UP: f"relais-test-caught-up-{RUN}", STOPPED: f"operator-caf-stopped-{RUN}",
          SLOW: f"relais-test-slow-{RUN}"}
MARKER_GROUP = f"relais-test{RUN}-broker-marker"
INBOX = PartitionId("operator.caf.inbox", 0)
AN_HOUR_MS = 3_600_000
MAX_STEPS = 12


async def produce_batch(producer: AIOKafkaProducer, topic: str, count: int, partition: int = 0,
                        timestamp_ms: int | None = None) -> None:
    """`count` records in one batch (sent together, then awaited)."""
    sent = [await producer.send(topic, b"{}", partition=partition, timestamp_ms=timestamp_ms) for _ in range(count)]
    await asyncio.gather(*sent)


async def read_and_commit(consumer: AIOKafkaConsumer, count: int) -> None:
    """Reads exactly `count` records and commits after the last."""
    got = 0
    deadline = time.monotonic() + 30
    while got < count:
        assert time.monotonic() < deadline, f"read {got} of {count}"
        batches = await consumer.getmany(timeout_ms=500, max_records=count - got)
        for tp, records in batches.items():
            got += len(records)
            if records:
                await consumer.commit({tp: records[-1].offset + 1})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def producer(kafka_bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    admin = kafka.admin(kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, 1, 1) for t in (CAUGHT_UP, STOPPED, SLOW)])
    finally:
        await admin.close()
    p = kafka.producer(kafka_bootstrap, linger_ms=50)
    await p.start()
    yield p
    await p.stop()


def by_name(monitor: LagMonitor) -> dict[str, GroupLag]:
    return {g.name: g for g in monitor.groups}


async def test_caught_up_ok_stopped_stop_slow_warn_with_exact_lag(kafka_bootstrap: str,
                                                                  producer: AIOKafkaProducer) -> None:
    registry = CollectorRegistry()
    settings = OpsSettings(RELAIS_ENV="test")  # type: ignore[call-arg]
    source = KafkaOffsets(kafka_bootstrap, ignore_groups=settings.ignore_groups, probe_wait_s=0.2)
    monitor = LagMonitor(source, interval_s=0.5, window=3, metrics=LagMetrics(registry))
    consumers: list[AIOKafkaConsumer] = []
    try:
        # An operator's inbox nobody reads: its end is reported all the same.
        await produce_batch(producer, INBOX.topic, 2)
        # Two records in one batch (the embedded broker then reports an end of 1), read by
        # both groups; the stopped group's consumer closes after committing.
        for topic in (CAUGHT_UP, STOPPED):
            await produce_batch(producer, topic, 2)
            consumer = kafka.consumer(kafka_bootstrap, GROUPS[topic], topic)
            await consumer.start()
            consumers.append(consumer)
            await read_and_commit(consumer, 2)
        await consumers.pop().stop()
        # A broker-loss marker (relais_kit.recovery): an offset that is no consumer's position.
        marker = kafka.consumer(kafka_bootstrap, MARKER_GROUP)
        await marker.start()
        marker.assign([TopicPartition(CAUGHT_UP, 0)])
        await marker.commit({TopicPartition(CAUGHT_UP, 0): 1})
        await marker.stop()

        await monitor.sample()
        first = by_name(monitor)
        assert monitor.health.last_error is None
        assert first[GROUPS[CAUGHT_UP]].partitions[0].lag_records == 0  # not -1: the end was probed
        assert first[GROUPS[STOPPED]].status is Status.OK
        assert MARKER_GROUP not in first

        # Records the stopped group will never read, written an hour ago (by their timestamp).
        written_at_ms = int(time.time() * 1000) - AN_HOUR_MS
        await produce_batch(producer, STOPPED, 2, timestamp_ms=written_at_ms)

        slow = kafka.consumer(kafka_bootstrap, GROUPS[SLOW], SLOW)
        await slow.start()
        consumers.append(slow)
        produced = read = 0
        statuses: dict[str, list[Status]] = {name: [] for name in GROUPS.values()}
        for _ in range(MAX_STEPS):
            await produce_batch(producer, SLOW, 3)  # three arrive, one is read: the lag grows by two
            produced += 3
            await read_and_commit(slow, 1)
            read += 1
            await monitor.sample()
            for name, group in by_name(monitor).items():
                if name in statuses:
                    statuses[name].append(group.status)
            if statuses[GROUPS[STOPPED]][-1] is Status.STOP and statuses[GROUPS[SLOW]][-1] is Status.WARN:
                break
    finally:
        for consumer in consumers:
            await consumer.stop()
        await source.close()

    groups = by_name(monitor)
    assert set(statuses[GROUPS[CAUGHT_UP]]) == {Status.OK}
    assert statuses[GROUPS[STOPPED]][-1] is Status.STOP, statuses
    assert set(statuses[GROUPS[STOPPED]]) <= {Status.OK, Status.STALL, Status.STOP}, statuses
    assert statuses[GROUPS[SLOW]][-1] is Status.WARN, statuses
    assert set(statuses[GROUPS[SLOW]]) <= {Status.OK, Status.WARN}, statuses

    [caught_up] = groups[GROUPS[CAUGHT_UP]].partitions
    assert (caught_up.committed, caught_up.end, caught_up.lag_records, caught_up.lag_seconds) == (2, 2, 0, 0.0)
    [stopped] = groups[GROUPS[STOPPED]].partitions
    assert (stopped.committed, stopped.end, stopped.lag_records) == (2, 4, 2)
    age_now = time.time() - written_at_ms / 1000
    assert AN_HOUR_MS / 1000 <= stopped.lag_seconds <= age_now
    [slow_lag] = groups[GROUPS[SLOW]].partitions
    assert (slow_lag.committed, slow_lag.end, slow_lag.lag_records) == (read, produced, produced - read)
    assert slow_lag.lag_seconds > 0

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("relais_consumergroup_lag_records", group=GROUPS[STOPPED], topic=STOPPED, partition="0") == 2
    assert value("relais_consumergroup_lag_seconds", group=GROUPS[STOPPED], topic=STOPPED,
                 partition="0") == stopped.lag_seconds
    assert value("relais_consumergroup_max_lag_seconds", group=GROUPS[STOPPED]) == stopped.lag_seconds
    assert value("relais_consumergroup_status", group=GROUPS[STOPPED], status="STOP") == 1
    assert value("relais_consumergroup_status", group=GROUPS[SLOW], status="WARN") == 1
    assert value("relais_consumergroup_status", group=GROUPS[CAUGHT_UP], status="OK") == 1
    assert value("relais_topic_end_offset", topic=STOPPED, partition="0") == 4
    assert value("relais_topic_end_offset", topic=INBOX.topic, partition="0") == 2  # read by no group
    assert value("relais_topic_end_offset", topic=INBOX.topic, partition="1") == 0

"""The idempotent consumer: decode, check against the contract, hand to a handler
inside a PostgreSQL transaction that also records the event id, and commit the
offset only after that. Records that can never be handled go, untouched, to
`<topic>.dlq` with headers saying why; the consumer then moves on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from relais_kit import kafka, metrics, tracing
from relais_kit.contract import Contract
from relais_kit.db import CONNECTION_LOST
from relais_kit.envelope import CloudEvent, InvalidEvent, from_record, now
from relais_kit.logs import log
from relais_kit.progress import Progress


class Refused(Exception):
    """The event is well-formed but cannot be applied (unknown referral, forbidden
    transition…). `error` is the dead-letter code, the message the reason."""

    def __init__(self, error: str, reason: str) -> None:
        super().__init__(reason)
        self.error = error
        self.reason = reason


@dataclass(frozen=True)
class Delivery:
    """An event and where it was read from."""

    event: CloudEvent
    topic: str
    partition: int
    offset: int


Handler = Callable[[Delivery, asyncpg.Connection], Awaitable[None]]
MAX_HANDLER_FAILURES = 3
# Failures that pass by themselves: the database restarting or away, a conflict
# between transactions, the broker away.
TRANSIENT = (*CONNECTION_LOST, asyncpg.SerializationError, asyncpg.DeadlockDetectedError, KafkaError)


class _ReadFromStart(ConsumerRebalanceListener):  # type: ignore[misc]
    """For views rebuilt from a compacted topic: whatever the group committed, read
    everything again; events already handled are dropped by their id. `once`: each
    partition only the first time it is assigned (after the broker was lost: the group's
    offsets may be stale ones committed by a client that still knew the old broker)."""

    def __init__(self, consumer: AIOKafkaConsumer, *, once: bool = False,
                 rewound: Callable[[], None] | None = None) -> None:
        self._consumer = consumer
        self._once = once
        self._rewound: set[TopicPartition] = set()
        self._on_rewound = rewound

    async def on_partitions_revoked(self, revoked: object) -> None:
        pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        todo = [tp for tp in assigned if not (self._once and tp in self._rewound)]
        if todo:
            await self._consumer.seek_to_beginning(*todo)
            self._rewound.update(todo)
            if self._on_rewound is not None:
                self._on_rewound()


class EventConsumer:
    def __init__(self, *, name: str, bootstrap: str, topics: list[str], producer: AIOKafkaProducer,
                 pool: asyncpg.Pool, contract: Contract, handlers: Mapping[str, Handler],
                 batch_size: int = 200, from_beginning: bool = False, **client_options: object) -> None:
        self.name = name
        self._topics = topics
        self._client = lambda: kafka.consumer(bootstrap, name, security=None, **client_options)
        self._from_beginning = from_beginning
        self._producer = producer
        self._pool = pool
        self._contract = contract
        self._handlers = handlers
        self._batch = batch_size
        self._consumer: AIOKafkaConsumer
        self.handled = 0
        self.dead_lettered = 0
        self.rewind_next_run = False  # relais_kit.recovery: the broker was lost
        self.progress = Progress()  # a record retried without end stalls the loop (/healthz)

    async def run(self) -> None:
        self._consumer = client = self._client()
        await client.start()
        listener = (_ReadFromStart(client) if self._from_beginning
                    else _ReadFromStart(client, once=True, rewound=self._rewind_done) if self.rewind_next_run
                    else None)
        client.subscribe(self._topics, listener=listener)
        try:
            await self._poll_forever()
        finally:
            await asyncio.wait_for(client.stop(), 5)

    def _rewind_done(self) -> None:
        self.rewind_next_run = False  # a run that fails before its first assignment rewinds next time

    @property
    def topics(self) -> list[str]:
        return list(self._topics)

    async def _poll_forever(self) -> None:
        while True:
            batches = await self._consumer.getmany(timeout_ms=500, max_records=self._batch)
            if not batches:
                self.progress.moved()
                continue
            # Partitions in parallel, each in order: one referral's events stay in order.
            # A task group: if one fails, the others stop too before the loop restarts.
            async with asyncio.TaskGroup() as group:
                for records in batches.values():
                    group.create_task(self._handle_in_order(records))
            try:
                await self._consumer.commit({tp: records[-1].offset + 1 for tp, records in batches.items()})
            except (CommitFailedError, IllegalStateError) as exc:
                # Partition moved to another member: it will see these records
                # again and drop them as duplicates.
                log.warning("commit_skipped", consumer=self.name, error=repr(exc))

    async def _handle_in_order(self, records: list[ConsumerRecord]) -> None:
        for record in records:
            await self._handle_until_done(record)

    async def _handle_until_done(self, record: ConsumerRecord) -> None:
        """Transient failures (database or broker away) are retried until they pass; any
        other failure is a bug or a poison record: retried a few times, then dead-lettered
        so that one record cannot stop the partition."""
        delay, failures = 0.2, 0
        while True:
            try:
                await self.handle(record)
                self.progress.moved()
                metrics.consumer_last_processed.labels(self.name).set(time.time())
                return
            except TRANSIENT as exc:
                log.warning("consumer_retry", consumer=self.name, topic=record.topic,
                            offset=record.offset, error=repr(exc))
                metrics.consumer_retries.labels(self.name, "transient").inc()
                self.progress.stuck(f"retrying a record of {record.topic}: {type(exc).__name__}")
            except Exception as exc:
                metrics.consumer_retries.labels(self.name, "handler_failed").inc()
                self.progress.stuck(f"a record of {record.topic} fails: {type(exc).__name__}")
                failures += 1
                log.error("handler_failed", consumer=self.name, topic=record.topic, offset=record.offset,
                          error=type(exc).__name__, attempt=failures)
                if failures >= MAX_HANDLER_FAILURES:
                    await self.dead_letter(record, "handler_failed",
                                           f"the handler failed {failures} times: {type(exc).__name__}")
                    return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def handle(self, record: ConsumerRecord) -> None:
        metrics.consumed_messages.labels(metrics.KAFKA, record.topic, self.name).inc()
        started, error_type = time.perf_counter(), ""
        try:
            with tracing.processing(record, self.name):  # `process {topic}`, child of the record's context
                await self._handle(record)
        except BaseException as exc:
            error_type = type(exc).__name__
            raise
        finally:
            metrics.process_duration.labels(metrics.KAFKA, record.topic, self.name, error_type).observe(
                time.perf_counter() - started)

    async def _handle(self, record: ConsumerRecord) -> None:
        structlog.contextvars.bind_contextvars(topic=record.topic, referral_id=None, event_id=None)
        try:
            event = from_record(record.key, record.value, record.headers)
            structlog.contextvars.bind_contextvars(event_id=event.id, event_type=event.type)
            if not self._contract.knows(event.type):
                raise InvalidEvent("unknown_event_type", f"unknown event type {event.type!r}")
            handler = self._handlers.get(event.type)
            if handler is None:
                return  # a known event this consumer has no business with
            self._contract.validate(event)
            await self._apply(Delivery(event, record.topic, record.partition, record.offset), handler)
        except (InvalidEvent, Refused) as exc:
            await self.dead_letter(record, exc.error, exc.reason)

    async def _apply(self, delivery: Delivery, handler: Handler) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            first_time = await conn.fetchval(  # where it came from: a referral's journey (relais_kit.ops_api)
                "INSERT INTO processed_events (consumer, event_id, topic, subject, event_type, record_partition,"
                " record_offset) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING RETURNING true",
                self.name, delivery.event.id, delivery.topic, delivery.event.subject, delivery.event.type,
                delivery.partition, delivery.offset)
            if not first_time:
                log.info("duplicate_ignored", consumer=self.name)
                return
            await handler(delivery, conn)
        self.handled += 1

    async def dead_letter(self, record: ConsumerRecord, error: str, reason: str) -> None:
        tracing.dead_lettered(error)
        headers = [
            *(record.headers or ()),
            ("dlq_error", error.encode()),
            ("dlq_reason", reason.encode()),
            ("dlq_topic", record.topic.encode()),
            ("dlq_partition", str(record.partition).encode()),
            ("dlq_offset", str(record.offset).encode()),
            ("dlq_consumer", self.name.encode()),
            ("dlq_time", now().isoformat().encode()),
        ]
        await self._producer.send_and_wait(
            f"{record.topic}.dlq", value=record.value, key=record.key, headers=headers)
        self.dead_lettered += 1
        metrics.sent_messages.labels(metrics.KAFKA, f"{record.topic}.dlq", "").inc()
        metrics.dead_letters.labels(record.topic, self.name, error).inc()
        log.warning("dead_lettered", consumer=self.name, error=error, reason=reason,
                    partition=record.partition, offset=record.offset)

"""Transactional outbox: `record()` inside the caller's transaction, `OutboxRelay`
publishes what was committed, in order, with `acks=all`, and marks it published only
once the broker has acknowledged every record of the batch. The event data is stored
sealed (`relais_kit.vault`): it may carry personal data."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any, NamedTuple

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTopicError,
    MessageSizeTooLargeError,
    PolicyViolationError,
    RecordListTooLargeError,
    RecordTooLargeError,
    TopicAuthorizationFailedError,
    UnsupportedForMessageFormatError,
)

from relais_kit import metrics, tracing
from relais_kit.db import CONNECTION_LOST
from relais_kit.envelope import CloudEvent, InvalidEvent, to_record
from relais_kit.leadership import Leadership, Lease
from relais_kit.logs import log
from relais_kit.progress import Progress
from relais_kit.resealing import SealedColumn
from relais_kit.vault import Vault, VaultError

CHANNEL = "relais_outbox"
SEND_TIMEOUT_S = 45.0  # beyond the producer's own request timeout (30 s)
SEALED_DATA = SealedColumn("outbox", "data", row_id="id", bound_to="event_id")
GAUGE_EVERY_S = 10.0
# What no retry will change: the record is larger than the broker takes, the broker
# refuses it for good, or the row no longer opens into an event. Such a row is parked
# (migration 007) instead of holding up the outbox. Anything else (the broker away, a
# timeout) is retried, the batch with it.
UNPUBLISHABLE = (MessageSizeTooLargeError, RecordTooLargeError, RecordListTooLargeError, InvalidTopicError,
                 TopicAuthorizationFailedError, CorruptRecordException, UnsupportedForMessageFormatError,
                 PolicyViolationError, VaultError, InvalidEvent, ValueError)
# The rows to publish next: neither published, parked nor discarded, and not behind a
# parked row of the same key (that key's order holds until ops retry or discard it).
PENDING = """
    SELECT * FROM outbox o
    WHERE o.published_at IS NULL AND o.parked_at IS NULL AND o.discarded_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM outbox p
                      WHERE p.record_key = o.record_key AND p.id < o.id AND p.parked_at IS NOT NULL
                        AND p.published_at IS NULL AND p.discarded_at IS NULL)
    ORDER BY o.id LIMIT $1"""
# Published, and where to: the position each record got (relais_kit.ops_api shows a
# referral's journey from it), for the whole batch in one statement.
MARK_PUBLISHED = """
    UPDATE outbox o SET published_at = now(), published_partition = a.part, published_offset = a.pos
    FROM unnest($1::bigint[], $2::int[], $3::bigint[]) AS a(id, part, pos) WHERE o.id = a.id"""
BACKLOG = """
    SELECT count(*) FILTER (WHERE parked_at IS NULL) AS pending,
           coalesce(extract(epoch FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL)), 0) AS oldest_s,
           count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked
    FROM outbox WHERE published_at IS NULL AND discarded_at IS NULL"""


async def record(conn: asyncpg.Connection, topic: str, event: CloudEvent, vault: Vault) -> None:
    await conn.execute(
        "INSERT INTO outbox (topic, record_key, event_id, event_type, subject, occurred_at,"
        " dataschema, data, traceparent) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        topic, event.record_key, event.id, event.type, event.subject, event.time,
        event.dataschema, vault.seal_json(event.data, SEALED_DATA.context(event.id)),
        tracing.current_traceparent(),  # the request or record that caused the event
    )  # a statement trigger wakes the relay (NOTIFY) when the transaction commits


def event_of(row: asyncpg.Record, source: str, vault: Vault) -> CloudEvent:
    """The event an outbox row holds (its data opened)."""
    return CloudEvent(
        id=row["event_id"], type=row["event_type"], source=source, subject=row["subject"],
        time=row["occurred_at"], dataschema=row["dataschema"], key=row["record_key"],
        data=json.loads(vault.open(row["data"], SEALED_DATA.context(row["event_id"]))),
    )


class Acknowledged(NamedTuple):
    """A row the broker acknowledged, and where it put the record."""

    outbox_id: int
    partition: int | None
    offset: int | None


class OutboxRelay:
    """One relay publishes per schema at a time (`relais_kit.leadership`: an advisory
    lock, fenced), which keeps the per-referral order of the outbox on the topic; the
    relays of the other instances wait for the lock."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, *, source: str, vault: Vault,
                 batch_size: int = 500, idle_poll_s: float = 1.0, leadership: Leadership | None = None) -> None:
        self._pool = pool
        self._leadership = leadership or Leadership.on_pool("outbox", pool)
        self._producer = producer
        self._vault = vault
        self._source = source
        self._batch = batch_size
        self._idle = idle_poll_s
        self._wake = asyncio.Event()
        self._stopping = False
        self.published = 0
        self.parked = 0
        self.leading = False  # holds the schema's relay lock (shown by /healthz)
        self.progress = Progress()
        self._schema = ""
        self._measured_at = 0.0

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    def request_stop(self) -> None:
        """Finish the batch in flight, then return: a batch cut in the middle would be
        published again by the next relay."""
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self._run_once_connected()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or broker away: wait and start over
                log.warning("outbox_relay_retry", error=repr(exc))
                self.progress.stuck(f"publishing fails: {type(exc).__name__}")
                await asyncio.sleep(1.0)

    async def _run_once_connected(self) -> None:
        lease = await self._leadership.acquire(lambda: self._stopping)
        if lease is None:  # stopped while another instance held the lock
            return
        conn = lease.conn
        channel = ""
        self.leading = True
        try:
            self._schema = str(await conn.fetchval("SELECT current_schema()"))
            channel = f"{CHANNEL}_{self._schema}"
            await conn.add_listener(channel, self._on_notify)
            while not self._stopping:
                sent = await self.publish_pending(conn, lease)
                self.progress.moved()
                if asyncio.get_running_loop().time() - self._measured_at >= GAUGE_EVERY_S:
                    await self.measure(conn)
                if sent < self._batch:
                    try:
                        await asyncio.wait_for(self._wake.wait(), self._idle)
                    except TimeoutError:
                        pass
                    self._wake.clear()
        finally:
            # After a database restart the connection is gone, and so are its
            # listener and lock: nothing to undo, and the real error matters more.
            with contextlib.suppress(*CONNECTION_LOST):
                if channel:
                    await conn.remove_listener(channel, self._on_notify)
            self.leading = False
            self._measured_at = 0.0
            for gauge in (metrics.outbox_pending, metrics.outbox_oldest_age, metrics.outbox_parked):
                with contextlib.suppress(KeyError):  # the leader of the schema reports it
                    gauge.remove(self._schema)
            await self._leadership.release(lease)

    async def measure(self, conn: asyncpg.Connection) -> None:
        """The backlog, for relais_outbox_* (the leader measures every GAUGE_EVERY_S)."""
        row = await conn.fetchrow(BACKLOG)
        metrics.outbox_pending.labels(self._schema).set(row["pending"])
        metrics.outbox_oldest_age.labels(self._schema).set(float(row["oldest_s"]))
        metrics.outbox_parked.labels(self._schema).set(row["parked"])
        self._measured_at = asyncio.get_running_loop().time()

    async def publish_pending(self, conn: asyncpg.Connection, lease: Lease | None = None) -> int:
        """`lease`: fencing, nothing is handed to the producer unless the lock was
        proven held less than a lease ago (LeadershipLost otherwise). Returns how many
        rows were taken (published, parked, or held behind a parked row of their key)."""
        rows = await conn.fetch(PENDING, self._batch)
        if not rows:
            return 0
        published, unpublishable = await self._send_all(rows, lease)
        if unpublishable:
            await self._park(conn, rows, unpublishable)
        await conn.execute(MARK_PUBLISHED, [p.outbox_id for p in published], [p.partition for p in published],
                           [p.offset for p in published])
        self.published += len(published)
        metrics.outbox_published.labels(self._schema).inc(len(published))
        return len(rows)

    async def _send_all(self, rows: Sequence[asyncpg.Record],
                        lease: Lease | None = None) -> tuple[list[Acknowledged], dict[int, str]]:
        """Sends the batch; returns the rows the broker acknowledged (with where it put
        them) and the reason of each row that can never be published. Once a row of a key is found
        unpublishable, the rows of that key behind it are not sent. Any other failure
        raises: the batch is sent again (consumers drop the duplicates by ce_id)."""
        sending: list[tuple[asyncpg.Record, asyncio.Future[Any]]] = []
        unpublishable: dict[int, str] = {}
        held: set[str] = set()
        for row in rows:
            if row["record_key"] in held:
                continue
            if lease is not None:
                await lease.keep()
            try:
                key, value, headers = to_record(event_of(row, self._source, self._vault))
                sending.append((row, await tracing.send_traced(  # in a `send {topic}` span, child of the row's context
                    self._producer, row["topic"], row.get("traceparent"), value=value, key=key, headers=headers)))
            except UNPUBLISHABLE as exc:
                unpublishable[row["id"]] = _reason(exc)
                held.add(row["record_key"])
        # Bounded: after a broker pause a delivery future has been seen never to resolve;
        # giving up re-sends the batch (consumers drop the duplicates by ce_id).
        outcomes = await asyncio.wait_for(
            asyncio.gather(*(future for _, future in sending), return_exceptions=True), SEND_TIMEOUT_S)
        published: list[Acknowledged] = []
        failure: BaseException | None = None
        for (row, _), outcome in zip(sending, outcomes, strict=True):
            if not isinstance(outcome, BaseException):  # a RecordMetadata
                published.append(Acknowledged(row["id"], getattr(outcome, "partition", None),
                                              getattr(outcome, "offset", None)))
                metrics.sent_messages.labels(metrics.KAFKA, row["topic"], "").inc()
            elif isinstance(outcome, UNPUBLISHABLE):
                unpublishable[row["id"]] = _reason(outcome)
                metrics.sent_messages.labels(metrics.KAFKA, row["topic"], type(outcome).__name__).inc()
            else:
                failure = failure or outcome
        if failure is not None:
            raise failure
        return published, unpublishable

    async def _park(self, conn: asyncpg.Connection, rows: Sequence[asyncpg.Record],
                    unpublishable: dict[int, str]) -> None:
        await conn.executemany("UPDATE outbox SET parked_at = now(), park_reason = $2 WHERE id = $1",
                               list(unpublishable.items()))
        for row in rows:
            if row["id"] in unpublishable:  # ids and types only: the data may hold personal data
                log.error("outbox_row_parked", outbox_id=row["id"], event_type=row["event_type"],
                          topic=row["topic"], reason=unpublishable[row["id"]])
        self.parked += len(unpublishable)
        self._measured_at = 0.0  # the parked gauge moves at once


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MessageSizeTooLargeError | RecordTooLargeError | RecordListTooLargeError):
        return f"larger than the broker accepts ({type(exc).__name__}: {exc})"[:500]
    return f"{type(exc).__name__}: {exc}"[:500]

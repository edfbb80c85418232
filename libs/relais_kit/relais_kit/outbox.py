"""Transactional outbox: `record()` inside the caller's transaction, `OutboxRelay`
publishes what was committed, in order, with `acks=all`, and marks it published only
once the broker has acknowledged every record of the batch. The event data is stored
sealed (`relais_kit.vault`): it may carry personal data."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Sequence
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer

from relais_kit.db import CONNECTION_LOST
from relais_kit.envelope import CloudEvent, to_record
from relais_kit.leadership import Leadership, Lease
from relais_kit.logs import log
from relais_kit.resealing import SealedColumn
from relais_kit.vault import Vault

CHANNEL = "relais_outbox"
SEND_TIMEOUT_S = 45.0  # beyond the producer's own request timeout (30 s)
SEALED_DATA = SealedColumn("outbox", "data", row_id="id", bound_to="event_id")


async def record(conn: asyncpg.Connection, topic: str, event: CloudEvent, vault: Vault) -> None:
    await conn.execute(
        "INSERT INTO outbox (topic, record_key, event_id, event_type, subject, occurred_at,"
        " dataschema, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        topic, event.record_key, event.id, event.type, event.subject, event.time,
        event.dataschema, vault.seal_json(event.data, SEALED_DATA.context(event.id)),
    )  # a statement trigger wakes the relay (NOTIFY) when the transaction commits


def event_of(row: asyncpg.Record, source: str, vault: Vault) -> CloudEvent:
    """The event an outbox row holds (its data opened)."""
    return CloudEvent(
        id=row["event_id"], type=row["event_type"], source=source, subject=row["subject"],
        time=row["occurred_at"], dataschema=row["dataschema"], key=row["record_key"],
        data=json.loads(vault.open(row["data"], SEALED_DATA.context(row["event_id"]))),
    )


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
        self.leading = False  # holds the schema's relay lock (shown by /healthz)

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
                await asyncio.sleep(1.0)

    async def _run_once_connected(self) -> None:
        lease = await self._leadership.acquire(lambda: self._stopping)
        if lease is None:  # stopped while another instance held the lock
            return
        conn = lease.conn
        channel = ""
        self.leading = True
        try:
            channel = f"{CHANNEL}_{await conn.fetchval('SELECT current_schema()')}"
            await conn.add_listener(channel, self._on_notify)
            while not self._stopping:
                sent = await self.publish_pending(conn, lease)
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
            await self._leadership.release(lease)

    async def publish_pending(self, conn: asyncpg.Connection, lease: Lease | None = None) -> int:
        """`lease`: fencing, nothing is handed to the producer unless the lock was
        proven held less than a lease ago (LeadershipLost otherwise)."""
        rows = await conn.fetch(
            "SELECT * FROM outbox WHERE published_at IS NULL ORDER BY id LIMIT $1", self._batch)
        if not rows:
            return 0
        await self._send_all(rows, lease)
        await conn.execute(
            "UPDATE outbox SET published_at = now() WHERE id = ANY($1::bigint[])",
            [r["id"] for r in rows])
        self.published += len(rows)
        return len(rows)

    async def _send_all(self, rows: Sequence[asyncpg.Record], lease: Lease | None = None) -> None:
        futures = []
        for row in rows:
            if lease is not None:
                await lease.keep()
            key, value, headers = to_record(event_of(row, self._source, self._vault))
            futures.append(await self._producer.send(row["topic"], value=value, key=key, headers=headers))
        # Bounded: after a broker pause a delivery future has been seen never to resolve;
        # giving up re-sends the batch (consumers drop the duplicates by ce_id).
        await asyncio.wait_for(asyncio.gather(*futures), SEND_TIMEOUT_S)

"""Fencing of the lock holder (relais_kit.leadership), with a fake lock session and
a fake clock: a holder that cannot prove its lock within the lease hands nothing more
to the producer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

from relais_kit import outbox
from relais_kit.leadership import SERVER_DETECTS_S, Leadership, LeadershipLost, Lease


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class LockSession:
    """Answers 'is the lock held?' with `held`, or never once `cut`."""

    def __init__(self) -> None:
        self.held = True
        self.cut = False
        self.asked = 0

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.asked += 1
        if self.cut:
            await asyncio.Event().wait()
        return self.held


class Producer:
    def __init__(self, clock: Clock, each_s: float) -> None:
        self.sent: list[str] = []
        self._clock = clock
        self._each_s = each_s

    async def send(self, topic: str, *, value: bytes, key: bytes | None, headers: Any) -> asyncio.Future[None]:
        self.sent.append(topic)
        self._clock.now += self._each_s  # a slow broker: each send takes a while
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Vault:
    def open(self, data: Any, context: str) -> str:
        return "{}"


def rows(n: int) -> list[dict[str, Any]]:
    return [{"id": i, "topic": "sites", "event_id": f"e{i}", "event_type": "fr.franceservices.site.retired.v1",
             "subject": "s", "occurred_at": datetime(2026, 11, 20, tzinfo=UTC), "dataschema": None,
             "record_key": "s", "data": b""} for i in range(n)]


def relay(producer: Producer) -> outbox.OutboxRelay:
    return outbox.OutboxRelay(None, producer, source="/relais/tests", vault=Vault(),  # type: ignore[arg-type]
                              leadership=Leadership("outbox", connect=None, lease_s=0.2))  # type: ignore[arg-type]


async def test_a_fresh_lease_is_not_proven_again_a_stale_one_is() -> None:
    clock, session = Clock(), LockSession()
    lease = Lease("outbox", session, lease_s=2.0, clock=clock)  # type: ignore[arg-type]
    await lease.keep()
    assert session.asked == 0
    clock.now += 1.5
    await lease.keep()
    assert session.asked == 1 and lease.fresh()


async def test_a_lock_no_longer_held_ends_the_lease() -> None:
    clock, session = Clock(), LockSession()
    lease = Lease("outbox", session, lease_s=2.0, clock=clock)  # type: ignore[arg-type]
    session.held = False
    clock.now += 1.5
    with pytest.raises(LeadershipLost, match="no longer held"):
        await lease.keep()
    with pytest.raises(LeadershipLost):
        await lease.keep()  # and stays ended


async def test_a_relay_cut_off_from_its_lock_stops_handing_records_to_the_producer() -> None:
    """The holder's host is cut off mid-batch: the proof of its lock never comes back,
    so it stops within one lease, before PostgreSQL could give the lock to another."""
    clock, session = Clock(), LockSession()
    producer = Producer(clock, each_s=0.5)
    lease = Lease("outbox", session, lease_s=0.2, clock=clock)  # type: ignore[arg-type]
    publisher = relay(producer)
    await publisher._send_all(rows(3), lease)  # type: ignore[arg-type]
    assert len(producer.sent) == 3  # proven again before each record, all fine
    session.cut = True
    with pytest.raises(LeadershipLost, match="did not answer"):
        await publisher._send_all(rows(10), lease)  # type: ignore[arg-type]
    assert len(producer.sent) == 3, "nothing handed to the producer once the lock could not be proven"


async def test_the_lease_must_end_before_postgresql_can_give_the_lock_away() -> None:
    with pytest.raises(ValueError, match="shorter than the time PostgreSQL takes"):
        Leadership("outbox", connect=None, lease_s=SERVER_DETECTS_S)  # type: ignore[arg-type]

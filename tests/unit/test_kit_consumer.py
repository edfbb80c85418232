"""The idempotent consumer's decisions, with fakes of the database and the producer."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from aiokafka import ConsumerRecord
from prometheus_client import REGISTRY

from relais_kit import consumer as consumer_module
from relais_kit.consumer import EventConsumer, Refused
from relais_kit.contract import load_contract
from relais_kit.envelope import CloudEvent, event_type, to_record
from relais_kit.settings import REPO_ROOT

CONTRACT = load_contract(REPO_ROOT / "schemas")
RETIRED = event_type("site.retired")


class FakeConn:
    def __init__(self, seen: set[str]) -> None:
        self.seen = seen

    @asynccontextmanager
    async def transaction(self):
        snapshot = set(self.seen)
        try:
            yield
        except BaseException:
            self.seen.clear()
            self.seen.update(snapshot)
            raise

    async def fetchval(self, _sql: str, _name: str, event_id: str, *_where_from: object) -> bool | None:
        if event_id in self.seen:
            return None
        self.seen.add(event_id)
        return True


class FakePool:
    def __init__(self) -> None:
        self.seen: set[str] = set()

    @asynccontextmanager
    async def acquire(self):
        yield FakeConn(self.seen)


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, bytes]]] = []

    async def send_and_wait(self, topic: str, value: Any, key: Any, headers: list[tuple[str, bytes]]) -> None:
        self.sent.append((topic, dict(headers)))


def record(event: CloudEvent, offset: int = 0) -> ConsumerRecord:
    key, value, headers = to_record(event)
    return ConsumerRecord("sites", 0, offset, 0, 0, key, value, None, len(key), len(value), headers)


def retired(event_id: str = "e1") -> CloudEvent:
    return CloudEvent(type=RETIRED, source="/t", subject="vigny-poste", id=event_id,
                      data={"site_id": "vigny-poste", "retired_at": "2026-11-20T10:00:00+01:00"})


def make(handler: Any) -> tuple[EventConsumer, FakePool, FakeProducer]:
    pool, producer = FakePool(), FakeProducer()
    consumer = EventConsumer(name="c", bootstrap="unused", topics=["sites"], producer=producer,  # type: ignore[arg-type]
                             pool=pool, contract=CONTRACT, handlers={RETIRED: handler})  # type: ignore[arg-type]
    return consumer, pool, producer


def test_a_duplicate_event_is_handled_once() -> None:
    calls: list[str] = []

    async def handler(delivery: Any, _conn: Any) -> None:
        calls.append(delivery.event.id)

    consumer, _, producer = make(handler)
    for offset in (0, 1):
        asyncio.run(consumer.handle(record(retired("same"), offset)))
    assert calls == ["same"] and producer.sent == []


def test_a_refusal_is_dead_lettered_and_rolls_the_event_id_back() -> None:
    async def handler(_delivery: Any, _conn: Any) -> None:
        raise Refused("unknown_site", "site vigny-poste is not known")

    consumer, pool, producer = make(handler)
    asyncio.run(consumer.handle(record(retired())))
    [(topic, headers)] = producer.sent
    assert topic == "sites.dlq" and headers["dlq_error"] == b"unknown_site"
    assert headers["ce_id"] == b"e1"  # the original headers travel with it
    assert pool.seen == set(), "a refused event may be replayed once its cause is fixed"


def test_a_handler_that_keeps_failing_is_dead_lettered_not_retried_forever(monkeypatch) -> None:
    attempts: list[int] = []
    monkeypatch.setattr(consumer_module.asyncio, "sleep", _no_wait)

    async def handler(_delivery: Any, _conn: Any) -> None:
        attempts.append(1)
        raise KeyError("bug")

    def counted(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    dead_before = counted("relais_dead_letters_total", source_topic="sites", consumer="c", error="handler_failed")
    retries_before = counted("relais_consumer_retries_total", consumer="c", kind="handler_failed")
    consumer, _, producer = make(handler)
    asyncio.run(consumer._handle_until_done(record(retired())))
    assert len(attempts) == consumer_module.MAX_HANDLER_FAILURES
    assert producer.sent[0][1]["dlq_error"] == b"handler_failed"
    assert b"KeyError" in producer.sent[0][1]["dlq_reason"]
    # Counted for ops: each failed try, and the dead letter by source topic, consumer and error.
    assert counted("relais_consumer_retries_total", consumer="c", kind="handler_failed") == (
        retries_before + consumer_module.MAX_HANDLER_FAILURES)
    assert counted("relais_dead_letters_total", source_topic="sites", consumer="c",
                   error="handler_failed") == dead_before + 1


def test_a_transient_failure_is_retried_until_it_passes(monkeypatch) -> None:
    attempts: list[int] = []
    monkeypatch.setattr(consumer_module.asyncio, "sleep", _no_wait)

    async def handler(_delivery: Any, _conn: Any) -> None:
        attempts.append(1)
        if len(attempts) < 6:
            raise asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command")

    consumer, pool, producer = make(handler)
    asyncio.run(consumer._handle_until_done(record(retired())))
    assert len(attempts) == 6 and producer.sent == [] and pool.seen == {"e1"}


def test_an_unknown_type_is_dead_lettered_a_known_unhandled_one_skipped() -> None:
    consumer, _, producer = make(None)
    unknown = CloudEvent(type="fr.franceservices.site.teleported.v1", source="/t", subject="x", data={})
    skipped = CloudEvent(type=event_type("site.upserted"), source="/t", subject="x", data={})
    asyncio.run(consumer.handle(record(unknown)))
    asyncio.run(consumer.handle(record(skipped)))
    assert [h["dlq_error"] for _, h in producer.sent] == [b"unknown_event_type"]


async def _no_wait(_seconds: float) -> None:
    return None

"""Test helpers over the real broker: produce CloudEvents, read topics until a
condition holds or a deadline passes (no fixed sleeps)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord

from relais_kit import sealing
from relais_kit.envelope import CloudEvent, event_type, to_record
from relais_kit.settings import REPO_ROOT

T = TypeVar("T")

DEMO_KEYS = REPO_ROOT / "deploy" / "demo" / "operator-keys"


def seal_for(operator: str, plaintext: dict[str, Any]) -> str:
    """`personal_data` as the platform writes it for `operator` (demo public key)."""
    return sealing.seal(sealing.load_key(sealing.public_key_path(DEMO_KEYS, operator), private=False), plaintext)


def open_as(operator: str, data: dict[str, Any]) -> dict[str, Any]:
    """An inbox event's personal data, decrypted as `operator` (demo private key)."""
    key = sealing.load_key(sealing.private_key_path(DEMO_KEYS, operator), private=True)
    return sealing.unseal(data["personal_data"], key, referral_id=data["referral_id"])


async def produce(bootstrap: str, topic: str, name: str, data: dict[str, Any], *,
                  subject: str, source: str = "/tests", event_id: str | None = None,
                  extra_headers: list[tuple[str, bytes]] | None = None) -> CloudEvent:
    event = CloudEvent(type=event_type(name), source=source, subject=subject, data=data,
                       id=event_id or str(uuid.uuid4()))
    key, value, headers = to_record(event)
    await produce_raw(bootstrap, topic, key, value, headers + (extra_headers or []))
    return event


async def produce_raw(bootstrap: str, topic: str, key: bytes | None, value: bytes | None,
                      headers: list[tuple[str, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key, headers=headers)
    finally:
        await producer.stop()


class TopicReader:
    """Reads topics from the beginning with a group of its own, keeping every record."""

    def __init__(self, bootstrap: str, *topics: str) -> None:
        self._consumer = AIOKafkaConsumer(
            *topics, bootstrap_servers=bootstrap, group_id=f"test-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest", enable_auto_commit=False,
            session_timeout_ms=10000, heartbeat_interval_ms=1000)
        self.records: list[ConsumerRecord] = []

    async def __aenter__(self) -> TopicReader:
        await self._consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._consumer.stop()

    async def until(self, condition: Callable[[list[ConsumerRecord]], bool], timeout: float = 30.0,
                    what: str = "records") -> list[ConsumerRecord]:
        deadline = time.monotonic() + timeout
        while not condition(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; saw {len(self.records)} record(s): "
                                     f"{[(r.topic, headers(r).get('ce_type')) for r in self.records][-20:]}")
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                self.records.extend(records)
        return self.records


def headers(record: ConsumerRecord) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def of_type(records: list[ConsumerRecord], name: str) -> list[ConsumerRecord]:
    return [r for r in records if headers(r).get("ce_type") == event_type(name)]


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 30.0,
                     what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def pg_dump_binary() -> str:
    """The pg_dump of the embedded PostgreSQL (a server refuses an older pg_dump), else
    the one on PATH."""
    import pgserver

    bundled = Path(pgserver.__file__).parent / "pginstall" / "bin" / "pg_dump"
    found = str(bundled) if bundled.exists() else shutil.which("pg_dump")
    if found is None:
        raise AssertionError("no pg_dump to dump the database with")
    return found


def dump_schema(database_url: str, schema: str) -> str:
    """What `pg_dump --schema` of a service's schema shows: its tables' rows included —
    the copy an attacker who stole a backup would hold."""
    done = subprocess.run([pg_dump_binary(), "--no-owner", "--schema", schema, database_url],
                          capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise AssertionError(f"pg_dump failed: {done.stderr[-500:]}")
    return done.stdout


class LosableBroker:
    """An embedded broker of a test's own, which it can lose: `lose()` kills it and
    starts it again on the same port, empty (memory storage: no topic, no offset)."""

    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        from relais_kit.embedded import start_broker

        with self.log.open("ab") as out:
            self.proc = start_broker(self.port, out)

    def lose(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.start()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()

"""Plays the platform for one operator: writes the scenarios' events on
`operator.<code>.inbox`, reads `operator.<code>.outbox` from the offsets it had
before anything was sent, and stops once every expected reply came or its deadline
passed, plus a quiet period."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.partitioner import murmur2

from relais_conformance.checks import (
    ACK,
    ANSWERED,
    CANCEL,
    DUPLICATE,
    INFO,
    INFO_NEXT,
    INFO_REQUESTED,
    MOVED,
    MOVED_NEXT,
    OUTCOMES,
    REJECTED,
    REMINDER,
    REMINDER_NEXT,
    ROUTED,
    UNKNOWN_FIELDS,
    UNKNOWN_TYPE,
    UNKNOWN_TYPE_NEXT,
    Observation,
    Reply,
    Sent,
    Settings,
)
from relais_conformance.contract import Contract, Outgoing, Seal, Sealer

log = logging.getLogger("relais_conformance")

# Roles whose referral.routed must be acknowledged (MOVED must not be).
MUST_ACK = (ROUTED, DUPLICATE, UNKNOWN_FIELDS, UNKNOWN_TYPE_NEXT, REMINDER, REMINDER_NEXT, INFO, INFO_NEXT, CANCEL,
            MOVED_NEXT)


def _no_seal(_plaintext: dict[str, Any]) -> str:
    raise AssertionError("this contract has no encrypted personal data")


class KitError(Exception):
    """The kit could not run (broker, topics): not a verdict on the consumer."""


def partition_of(key: str, partitions: int) -> int:
    """The partition the Java client, aiokafka and the platform pick for `key` (murmur2)."""
    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


def id_on_partition(partition: int, partitions: int) -> str:
    """A fresh referral id whose key hashes to `partition`."""
    while True:
        candidate = str(uuid.uuid4())
        if partition_of(candidate, partitions) == partition:
            return candidate


class Run:
    def __init__(self, settings: Settings, contract: Contract, seal: Sealer | None, bootstrap: str,
                 procedure: str, client_options: dict[str, Any] | None = None) -> None:
        self.client_options = client_options or {}
        self.settings = settings
        self.contract = contract
        self.seal = seal
        self.bootstrap = bootstrap
        self.procedure = procedure
        self.inbox = f"operator.{settings.operator}.inbox"
        self.outbox = f"operator.{settings.operator}.outbox"
        self.sent: list[Sent] = []
        self.replies: list[Reply] = []
        self.started = time.monotonic()
        self.partitions = 1
        self.settle = min(2.0, settings.quiet_period)
        self.first_offsets: dict[int, int] = {}
        self.ids: dict[str, str] = {}

    def now(self) -> float:
        return time.monotonic() - self.started

    # --- Kafka ---------------------------------------------------------------------

    async def execute(self) -> Observation:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
            auto_offset_reset="latest", fetch_max_wait_ms=25, request_timeout_ms=15000, **self.client_options)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=False, linger_ms=0,
            request_timeout_ms=15000, **self.client_options)
        try:
            await consumer.start()
            await producer.start()
        except Exception as exc:
            await consumer.stop()
            await producer.stop()
            raise KitError(f"cannot reach the broker at {self.bootstrap}: {exc}") from exc
        reader: asyncio.Task[None] | None = None
        try:
            topics = await consumer.topics()
            for topic in (self.inbox, self.outbox):
                if topic not in topics:
                    raise KitError(f"topic {topic} does not exist on {self.bootstrap}")
            outbox_parts = [TopicPartition(self.outbox, p)
                            for p in sorted(consumer.partitions_for_topic(self.outbox) or ())]
            self.partitions = len(consumer.partitions_for_topic(self.inbox) or ()) or 1
            # Where the outbox ends BEFORE anything is sent: every later record is read.
            consumer.assign(outbox_parts)
            ends = await consumer.end_offsets(outbox_parts)
            await self._skip_existing(consumer, ends)
            log.info("reading %s from offsets %s", self.outbox, self.first_offsets)
            self.started = time.monotonic()
            reader = asyncio.create_task(self._read(consumer))
            await self._scenarios(producer)
        finally:
            if reader is not None:
                reader.cancel()
                try:
                    await reader
                except asyncio.CancelledError:
                    pass
            await producer.stop()
            await consumer.stop()
        return Observation(self.settings, self.sent, self.replies, self.now(),
                           encrypted=self.contract.encrypted("referral.routed"))

    async def _skip_existing(self, consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> None:
        """Positions the reader after the last record already on the outbox.

        The end offset should be the NEXT offset, but some brokers (tansu 0.6, the
        embedded broker of `make run`) answer with the offset of the last record. So
        read from one before the end, until nothing more comes, before sending
        anything: all that is read then was there before the run."""
        self.first_offsets = {tp.partition: end for tp, end in ends.items()}
        for tp, end in ends.items():
            consumer.seek(tp, max(end - 1, 0))
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=300)
            if not batch:
                break
            for tp, records in batch.items():
                for record in records:
                    self.first_offsets[tp.partition] = max(self.first_offsets[tp.partition], record.offset + 1)

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            for tp, records in batch.items():
                for record in records:
                    if record.offset < self.first_offsets.get(tp.partition, 0):
                        continue  # was there before the run
                    reply = Reply(self.now(), record.partition, record.offset, record.key,
                                  list(record.headers or ()), record.value)
                    self.replies.append(reply)
                    log.info("read %s about %s", reply.describe(), reply.referral_id)

    async def _send(self, producer: AIOKafkaProducer, role: str, event: Outgoing, partition: int | None = None,
                    times: int = 1) -> None:
        key, value, headers = event.record()
        if partition is None:
            partition = partition_of(event.referral_id, self.partitions)
        for _ in range(times):  # times=2: the very same record (same ce_id, same bytes) twice
            meta = await producer.send_and_wait(self.inbox, value=value, key=key, headers=headers,
                                                partition=partition)
            self.sent.append(Sent(role, event.name, event.referral_id, event.ce_id, self.now(), meta.partition))
            log.info("sent %s for %s (%s) to %s[%d]", event.name, event.referral_id, role, self.inbox, meta.partition)

    # --- the scenarios -------------------------------------------------------------

    def _seal(self) -> Sealer:
        if self.seal is None:
            raise KitError("this contract encrypts personal data: give the operator's public key (--public-key)")
        return self.seal

    def _routed(self, referral_id: str, sealed_for: str | None = None) -> Outgoing:
        seal: Seal = self._seal() if self.contract.encrypted("referral.routed") else _no_seal
        return self.contract.routed(referral_id, self.settings.operator, self.procedure, seal,
                                    sealed_referral_id=sealed_for)

    async def _scenarios(self, producer: AIOKafkaProducer) -> None:
        operator, n = self.settings.operator, self.partitions
        ids = {role: str(uuid.uuid4()) for role in (ROUTED, DUPLICATE, UNKNOWN_FIELDS, UNKNOWN_TYPE, REMINDER, INFO,
                                                     CANCEL, MOVED)}
        for role, behind in ((UNKNOWN_TYPE_NEXT, UNKNOWN_TYPE), (REMINDER_NEXT, REMINDER), (INFO_NEXT, INFO),
                             (MOVED_NEXT, MOVED)):
            ids[role] = id_on_partition(partition_of(ids[behind], n), n)
        self.ids = ids

        await self._send(producer, ROUTED, self._routed(ids[ROUTED]))
        await self._send(producer, DUPLICATE, self._routed(ids[DUPLICATE]), times=2)
        await self._send(producer, UNKNOWN_FIELDS, self.contract.with_unknown_fields(self._routed(ids[UNKNOWN_FIELDS])))
        await self._send(producer, UNKNOWN_TYPE, self.contract.future_event(ids[UNKNOWN_TYPE], operator))
        await self._send(producer, UNKNOWN_TYPE_NEXT, self._routed(ids[UNKNOWN_TYPE_NEXT]),
                         partition=partition_of(ids[UNKNOWN_TYPE], n))
        await self._send(producer, REMINDER, self._routed(ids[REMINDER]))
        await self._send(producer, REMINDER, self.contract.reminder(ids[REMINDER], operator))
        await self._send(producer, REMINDER_NEXT, self._routed(ids[REMINDER_NEXT]),
                         partition=partition_of(ids[REMINDER], n))
        await self._send(producer, INFO, self._routed(ids[INFO]))
        await self._send(producer, CANCEL, self._routed(ids[CANCEL]))
        if self.contract.encrypted("referral.routed"):
            # Personal data sealed for another referral (as if a ciphertext were moved).
            await self._send(producer, MOVED, self._routed(ids[MOVED], sealed_for=ids[ROUTED]))
            await self._send(producer, MOVED_NEXT, self._routed(ids[MOVED_NEXT]), partition=partition_of(ids[MOVED], n))

        info_sent = cancel_sent = False
        while True:
            if not info_sent and self._ready(ids[INFO]):
                info_sent = True
                seal: Seal = self._seal() if self.contract.encrypted("referral.info_provided") else _no_seal
                await self._send(producer, INFO, self.contract.info_provided(ids[INFO], operator, seal))
                await self._send(producer, INFO_NEXT, self._routed(ids[INFO_NEXT]),
                                 partition=partition_of(ids[INFO], n))
            if not cancel_sent and self._ready(ids[CANCEL]):
                cancel_sent = True
                await self._send(producer, CANCEL, self.contract.cancelled(ids[CANCEL], operator))
            if self._done(info_sent, cancel_sent):
                break
            await asyncio.sleep(0.05)
        quiet_until = self.now() + self.settings.quiet_period
        log.info("waiting %.0f s for late or duplicate replies", self.settings.quiet_period)
        while self.now() < quiet_until:
            await asyncio.sleep(0.05)

    # --- when to go on -------------------------------------------------------------

    def _replies(self, referral_id: str) -> list[Reply]:
        return [r for r in self.replies if r.referral_id == referral_id]

    def _sent(self, role: str, name: str = "referral.routed") -> Sent | None:
        return next((s for s in self.sent if s.role == role and s.name == name), None)

    def _ready(self, referral_id: str) -> bool:
        """The consumer has replied about the referral and is done for now: it sent an
        outcome, or nothing more came for `settle` seconds after its last reply."""
        replies = self._replies(referral_id)
        if not replies:
            return False
        if any(r.name in OUTCOMES for r in replies):
            return True
        return self.now() - replies[-1].arrived >= self.settle

    def _done(self, info_sent: bool, cancel_sent: bool) -> bool:
        now, s = self.now(), self.settings
        for role in MUST_ACK:
            sent = self._sent(role)
            if sent is None:
                if role in (INFO_NEXT,) and not info_sent:
                    continue  # judged through INFO below
                if role == MOVED_NEXT and not self.contract.encrypted("referral.routed"):
                    continue
                return False
            if now <= sent.at + s.ack_within and not any(r.name == ACK for r in self._replies(sent.referral_id)):
                return False
        routed = self._sent(ROUTED)
        if routed and now <= routed.at + s.answer_within \
                and not any(r.name in OUTCOMES for r in self._replies(routed.referral_id)):
            return False
        info_routed = self._sent(INFO)
        if not info_sent:
            if info_routed and now <= info_routed.at + s.ack_within + self.settle:
                return False
        else:
            info = self._sent(INFO, "referral.info_provided")
            replies = self._replies(self.ids[INFO])
            asked = [r for r in replies if r.name == INFO_REQUESTED]
            if info and asked and now <= info.at + s.answer_within and not any(
                    r.name in (ANSWERED, REJECTED) and r.arrived >= asked[-1].arrived for r in replies):
                return False
        cancel_routed = self._sent(CANCEL)
        return cancel_sent or not (cancel_routed and now <= cancel_routed.at + s.ack_within + self.settle)


async def run(settings: Settings, contract: Contract, seal: Sealer | None, bootstrap: str,
              procedure: str, client_options: dict[str, Any] | None = None) -> tuple[Observation, dict[str, str]]:
    """Runs every scenario; returns what was seen and the referral id of each role.
    `client_options`: extra aiokafka settings (security) for both clients."""
    runner = Run(settings, contract, seal, bootstrap, procedure, client_options)
    bound = settings.ack_within + settings.answer_within + settings.quiet_period + 60
    try:
        observation = await asyncio.wait_for(runner.execute(), timeout=bound)
    except TimeoutError as exc:
        raise KitError(f"the run did not finish within {bound:g} s (broker too slow?)") from exc
    return observation, runner.ids

"""The other services' answers to a privacy request, read from `privacy` by the ops
command that asked: a consumer without a group (nothing committed, no other reader
disturbed), on every partition, from where the topic ends BEFORE the request is
published — so no answer is missed, however fast it comes.

The embedded broker reports as end the offset of the last record, not the next one:
reading from there may show one older record again, which the request id filters out."""

from __future__ import annotations

import time
from collections.abc import Collection
from types import TracebackType

from aiokafka import TopicPartition

from relais_kit import kafka
from relais_kit.contract import Contract, ContractViolation
from relais_kit.envelope import CloudEvent, InvalidEvent, event_type, from_record
from relais_kit.logs import log

TOPIC = "privacy"


class Answers:
    def __init__(self, bootstrap: str, contract: Contract, name: str) -> None:
        """`name`: the answers' event name (`personal_data.erased`, `…access_answered`)."""
        self._contract = contract
        self._type = event_type(name)
        self._consumer = kafka.consumer(bootstrap, None, auto_offset_reset="latest", fetch_max_wait_ms=100)

    async def __aenter__(self) -> Answers:
        await self._consumer.start()
        try:
            await self._consumer.topics()  # the cluster's metadata, partitions included
            partitions = [TopicPartition(TOPIC, p) for p in sorted(self._consumer.partitions_for_topic(TOPIC) or ())]
            if not partitions:
                raise RuntimeError(f"topic {TOPIC!r} not found on the broker")
            self._consumer.assign(partitions)
            for tp, end in (await self._consumer.end_offsets(partitions)).items():
                self._consumer.seek(tp, end)
        except BaseException:
            await self._consumer.stop()
            raise
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        trace: TracebackType | None) -> None:
        await self._consumer.stop()

    async def wait(self, request_ids: Collection[str], services: Collection[str],
                   timeout_s: float) -> dict[tuple[str, str], CloudEvent]:
        """The answers, by (request id, service), once every service answered every
        request or `timeout_s` passed (then the missing pairs are absent)."""
        wanted = {(r, s) for r in request_ids for s in services}
        found: dict[tuple[str, str], CloudEvent] = {}
        deadline = time.monotonic() + timeout_s
        while wanted - found.keys() and time.monotonic() < deadline:
            batches = await self._consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    event = self._answer(record.key, record.value, list(record.headers))
                    if event is not None:
                        pair = (event.data["request_id"], event.data["service"])
                        if pair in wanted:
                            found.setdefault(pair, event)
        return found

    def _answer(self, key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]]) -> CloudEvent | None:
        """An answer of the expected type, valid, and sent as the service it names; else None."""
        try:
            event = from_record(key, value, headers)
            if event.type != self._type:
                return None
            self._contract.validate(event)
        except (InvalidEvent, ContractViolation) as exc:
            log.warning("privacy_answer_ignored", error=getattr(exc, "error", "invalid"))
            return None
        if event.source != f"/relais/{event.data['service']}":
            log.warning("privacy_answer_ignored", error="source_mismatch", source=event.source)
            return None
        return event

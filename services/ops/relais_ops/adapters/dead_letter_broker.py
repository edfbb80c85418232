"""The dead letters on the real broker, read and replayed by the kit's own functions
(`relais_kit.dlq`: no consumer group, read until past the end seen at start, acks=all),
as this process's Kafka principal (KafkaSecurity.from_env: relais-ops may read every
dead-letter topic and write its source topic)."""

from __future__ import annotations

from collections.abc import Sequence

from relais_kit import dlq
from relais_kit.dlq import DeadLetter, DeadLetterId, ReplayRecord


class KafkaDeadLetters:
    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    async def read(self, topics: Sequence[str]) -> list[DeadLetter]:
        return await dlq.read_dead_letters(self.bootstrap, topics)

    async def fetch(self, letter_id: DeadLetterId) -> DeadLetter:
        return await dlq.fetch_dead_letter(self.bootstrap, letter_id)

    async def produce(self, replays: Sequence[ReplayRecord]) -> list[str]:
        return await dlq.produce_replays(self.bootstrap, replays)

"""The console's dead letters, by the rules of `python -m relais_kit.dlq`: listing reads
every `<topic>.dlq` without a consumer group; a replay re-produces the original record
onto the dead-letter topic's own source topic (`X` for `X.dlq`) and nowhere else,
whatever its headers say (`dlq.to_replay` refuses a forged `dlq_topic`); every record of
a selection is checked before anything is produced, so a selection holding one refused
record replays nothing.

Every look at personal data (unmasking) and every replay is audited before it happens,
with a reason: an action is never done unaudited."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from relais_kit import dlq
from relais_kit.dlq import DeadLetter, DeadLetterId, DlqError, ReplayRecord
from relais_kit.logs import log
from relais_kit.topics import TopicsFile
from relais_ops.service_layer.audited import Audit, reason_of

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_SELECTION = 200
UNMASKED = "dead_letter_unmasked"
REPLAYED = "dead_letters_replayed"


class DeadLetterBroker(Protocol):
    """Where the dead letters are (adapters.dead_letter_broker on the real broker)."""

    async def read(self, topics: Sequence[str]) -> list[DeadLetter]: ...

    async def fetch(self, letter_id: DeadLetterId) -> DeadLetter: ...

    async def produce(self, replays: Sequence[ReplayRecord]) -> list[str]: ...


class BadId(ValueError):
    """Not a dead-letter id (`<topic>.dlq:<partition>:<offset>`)."""


class UnknownDeadLetter(LookupError):
    """A well-formed id naming no dead letter: not a dead-letter topic of the platform,
    no such partition or offset."""


@dataclass(frozen=True)
class Listing:
    letters: list[DeadLetter]  # newest first, at most `limit`
    matching: int
    errors: list[tuple[str, int]]  # dlq_error → count among the matching ones, most frequent first
    topics: list[str]  # every dead-letter topic


@dataclass(frozen=True)
class Planned:
    """One selected dead letter and what replaying it would do, or why it is refused."""

    letter: DeadLetter
    replay: ReplayRecord | None
    refusal: str | None


@dataclass(frozen=True)
class Plan:
    planned: list[Planned]

    @property
    def allowed(self) -> bool:
        return bool(self.planned) and all(p.replay is not None for p in self.planned)

    @property
    def replays(self) -> list[ReplayRecord]:
        return [p.replay for p in self.planned if p.replay is not None]


def parse_ids(texts: Sequence[str], topics: TopicsFile) -> list[DeadLetterId]:
    """Distinct ids in the order given; BadId for a malformed one, UnknownDeadLetter for
    one whose topic is not a dead-letter topic of deploy/topics.yaml."""
    ids: list[DeadLetterId] = []
    for text in texts:
        try:
            ids.append(dlq.parse_id(text))
        except DlqError as exc:
            raise BadId(str(exc)) from exc
    ids = list(dict.fromkeys(ids))
    try:
        dlq.dlq_topics(topics, [i.topic for i in ids])
    except DlqError as exc:
        raise UnknownDeadLetter(str(exc)) from exc
    return ids


def limit_of(text: str | None) -> int:
    try:
        value = int(text) if text else DEFAULT_LIMIT
    except ValueError:
        value = DEFAULT_LIMIT
    return min(max(value, 1), MAX_LIMIT)


async def listing(broker: DeadLetterBroker, topics: TopicsFile, *, topic: str | None = None,
                  error: str | None = None, since: datetime | None = None,
                  limit: int = DEFAULT_LIMIT) -> Listing:
    """The matching dead letters, newest first, at most `limit`; `topic` one dead-letter
    topic (UnknownDeadLetter otherwise) or all."""
    every = dlq.dlq_topics(topics, None)
    if topic and topic not in every:
        raise UnknownDeadLetter(f"{topic!r} is not a dead-letter topic of deploy/topics.yaml")
    letters = await broker.read([topic] if topic else every)
    matching = dlq.select(letters, error=error or None, since=since)
    shown = list(reversed(dlq.select(matching, limit=limit)))
    counts = Counter(d.error for d in matching)
    return Listing(shown, len(matching), sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])), every)


async def one(broker: DeadLetterBroker, topics: TopicsFile, text: str) -> DeadLetter:
    [letter_id] = parse_ids([text], topics)
    try:
        return await broker.fetch(letter_id)
    except DlqError as exc:
        raise UnknownDeadLetter(str(exc)) from exc


async def unmask(audit: Audit, user_id: str, letter: DeadLetter, reason: str) -> None:
    """Audits the look at one dead letter's personal data; ReasonRequired without a reason."""
    why = reason_of(reason)
    await audit(user_id, UNMASKED, str(letter.id), why, {"dead_letter": str(letter.id)})
    log.info("dead_letter_unmasked", user=user_id, dead_letter=str(letter.id))


def plan(letters: Sequence[DeadLetter], topics: TopicsFile) -> Plan:
    """Each letter's replay by `dlq.to_replay` (its own source topic only, one of
    deploy/topics.yaml), or why it is refused."""
    known = dlq.source_topics(topics)
    planned = []
    for letter in letters:
        try:
            planned.append(Planned(letter, dlq.to_replay(letter, known_topics=known), None))
        except DlqError as exc:
            planned.append(Planned(letter, None, str(exc)))
    return Plan(planned)


async def selection(broker: DeadLetterBroker, topics: TopicsFile, texts: Sequence[str]) -> Plan:
    """The selected dead letters, read again from the broker (never from the form), and
    their replays."""
    ids = parse_ids(texts, topics)
    if not ids:
        raise BadId("no dead letter selected")
    if len(ids) > MAX_SELECTION:
        raise BadId(f"at most {MAX_SELECTION} dead letters at once")
    letters = []
    for letter_id in ids:
        try:
            letters.append(await broker.fetch(letter_id))
        except DlqError as exc:
            raise UnknownDeadLetter(str(exc)) from exc
    return plan(letters, topics)


@dataclass(frozen=True)
class Replayed:
    dead_letter: str
    landed: str  # <topic>:<partition>:<offset>


async def replay(broker: DeadLetterBroker, audit: Audit, user_id: str, chosen: Plan, reason: str) -> list[Replayed]:
    """Audits, then produces every replay of an allowed plan, in order."""
    why = reason_of(reason)
    if not chosen.allowed:
        refused = [f"{p.letter.id}: {p.refusal}" for p in chosen.planned if p.refusal]
        raise DlqError("; ".join(refused) or "nothing to replay")
    replays = chosen.replays
    ids = [str(r.replayed_from) for r in replays]
    targets = sorted({r.topic for r in replays})
    await audit(user_id, REPLAYED, ids[0] if len(ids) == 1 else f"{len(ids)} dead letters", why,
                {"dead_letters": ids, "to_topics": targets})
    landed = await broker.produce(replays)
    log.warning("dead_letters_replayed", user=user_id, count=len(ids), to_topics=targets)
    return [Replayed(i, at) for i, at in zip(ids, landed, strict=True)]

"""One referral's journey across the services: what each service published about it
(its outbox rows: type, topic, partition, offset, when written and when published,
the trace it belongs to) and what each consumer handled (which event, when), merged
into one timeline ordered by time, with the time of each hop (published → handled).

An event is known by its topic and its id (ce_id). One that no service published —
an operator's reply on `operator.<code>.outbox` — appears from its handlings, its
publisher the operator. A service that did not answer is named, the rest still shown."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

OPERATOR_OUTBOX = re.compile(r"^operator\.([a-z0-9-]+)\.outbox$")
TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$")


@dataclass(frozen=True)
class Published:
    """An outbox row of one service about the referral."""

    event_id: str
    event_type: str
    topic: str
    partition: int | None
    offset: int | None
    created_at: datetime | None
    published_at: datetime | None
    traceparent: str | None = None
    status: str | None = None  # published, pending, parked, discarded (None: not said)


@dataclass(frozen=True)
class Consumed:
    """One consumer's handling of an event about the referral."""

    consumer: str
    event_id: str
    event_type: str
    topic: str
    partition: int | None
    offset: int | None
    processed_at: datetime | None


@dataclass(frozen=True)
class ServiceJourney:
    """What one service answered, or why it did not (`error`)."""

    service: str
    published: Sequence[Published] = ()
    consumed: Sequence[Consumed] = ()
    error: str | None = None


@dataclass(frozen=True)
class Handling:
    consumer: str
    service: str
    processed_at: datetime | None
    hop_ms: float | None  # published → handled


@dataclass
class Step:
    """One event of the journey and who handled it."""

    event_id: str
    event_type: str
    topic: str
    partition: int | None
    offset: int | None
    publisher: str  # a service, `opérateur <code>`, or "?" (its publisher did not answer)
    created_at: datetime | None = None
    published_at: datetime | None = None
    trace_id: str | None = None
    status: str | None = None  # the outbox row's: published, pending, parked, discarded
    handlings: list[Handling] = field(default_factory=list)

    @property
    def outbox_ms(self) -> float | None:
        """Written → published: the time spent in the outbox."""
        return _ms(self.created_at, self.published_at)

    @property
    def at(self) -> datetime | None:
        """When it happened, as far as is known: published, written, else first handled."""
        handled = [h.processed_at for h in self.handlings if h.processed_at is not None]
        return self.published_at or self.created_at or (min(handled) if handled else None)


@dataclass(frozen=True)
class Journey:
    subject: str
    steps: list[Step]
    answered: list[str]
    unanswered: dict[str, str]  # service → why

    @property
    def empty(self) -> bool:
        return not self.steps


def trace_id(traceparent: str | None) -> str | None:
    """The trace id of a W3C traceparent (its second field), None when malformed or
    all zeros (invalid by the specification)."""
    if not traceparent:
        return None
    found = TRACEPARENT.match(traceparent.strip().lower())
    if found is None or set(found.group(1)) == {"0"}:
        return None
    return found.group(1)


def trace_link(template: str, trace: str | None) -> str | None:
    """The trace viewer's address for a trace (`{trace_id}` in the template), or None."""
    if not template or not trace or "{trace_id}" not in template:
        return None
    return template.replace("{trace_id}", trace)


def publisher_of_topic(topic: str) -> str | None:
    found = OPERATOR_OUTBOX.match(topic)
    return f"opérateur {found.group(1)}" if found else None


def _ms(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds() * 1000, 1)


def merge(subject: str, answers: Iterable[ServiceJourney]) -> Journey:
    """Every service's answer, one timeline: steps ordered by time (unknown times last),
    each step's handlings ordered by time, with the hop from publication."""
    steps: dict[tuple[str, str], Step] = {}
    answered, unanswered = [], {}
    consumed: list[tuple[str, Consumed]] = []
    for answer in answers:
        if answer.error is not None:
            unanswered[answer.service] = answer.error
            continue
        answered.append(answer.service)
        for p in answer.published:
            steps[(p.topic, p.event_id)] = Step(
                p.event_id, p.event_type, p.topic, p.partition, p.offset, answer.service, p.created_at,
                p.published_at, trace_id(p.traceparent), p.status)
        consumed += [(answer.service, c) for c in answer.consumed]
    for service, c in consumed:
        step = steps.get((c.topic, c.event_id))
        if step is None:
            step = steps[(c.topic, c.event_id)] = Step(
                c.event_id, c.event_type, c.topic, c.partition, c.offset, publisher_of_topic(c.topic) or "?")
        if step.partition is None:
            step.partition, step.offset = c.partition, c.offset
        step.handlings.append(Handling(c.consumer, service, c.processed_at, _ms(step.published_at, c.processed_at)))
    for step in steps.values():
        step.handlings.sort(key=lambda h: (h.processed_at is None, h.processed_at or datetime.min, h.consumer))
    ordered = sorted(steps.values(), key=_order)
    return Journey(subject, ordered, sorted(answered), dict(sorted(unanswered.items())))


def _order(step: Step) -> tuple[bool, float, str, int, str]:
    at = step.at
    return (at is None, at.timestamp() if at is not None else 0.0, step.topic, step.offset or 0, step.event_id)

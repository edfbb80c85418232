"""Consumer lag, judged from outside the consumers in the manner of LinkedIn's Burrow.

Every interval the lag monitor samples, for each consumer group and each partition it
has committed an offset on: the committed offset, the partition's log end (exclusive)
and start, and the age of the oldest unread record (the record at the committed
offset). Each (group, topic, partition) keeps a sliding window of its last `size`
samples. Lag in records is `end - committed`; lag in seconds is the age of the oldest
unread record, 0 when nothing is unread.

The status of a partition, the first rule that holds (Burrow's rules, as far as they
can be seen from outside):

1. **ERR** - the newest sampling of this partition failed (broker error), or its lag
   is negative (committed beyond the end), or its offsets are gone (the committed
   offset is below the log start: unread records were deleted before being read).
2. **OK** - the lag was zero in some sample of the window (Burrow's rule 1: a
   consumer that was caught up within the window is fine; this also delays STOP for a
   consumer that was caught up moments ago).
3. **STOP** - nobody reads the partition: the group has no member, or its members'
   assignment is known (a stable group of the `consumer` protocol) and no member holds
   this partition.
4. **STOP** - Burrow's time rule (rule 3: no commit for longer than the window spans).
   Kafka does not tell when an offset was committed, so from outside a commit of the
   same offset cannot be told from no commit at all: the rule is applied to the
   committed offset's *moves*. Records have waited behind an offset that has not moved
   for longer than twice the window's span (counted from its last move, or from the
   last sample where nothing waited). Needed because some
   brokers never drop a departed member (the embedded tansu keeps a closed
   consumer's membership for good), and it is what Burrow says of a consumer that,
   like ours, commits only after its work: a consumer stuck that long is stopped.
5. **STALL** - (full window) the committed offset did not move over the whole window,
   the lag being non-zero throughout, while the group has members (Burrow's rule 4).
6. **WARN** - (full window) the offset moves but the lag never decreased from one
   sample to the next and grew over the window (Burrow's rule 5, with "grew" added: a
   busy consumer whose lag stays exactly level is keeping up).
7. **OK** otherwise, and while the window is not yet full (no judgement on too little).

Burrow's REWIND is not a status here: an offset moved back (a reset by ops) shows as a
lag that jumps and then decreases while the consumer catches up, which is OK.

A group's status is its worst partition's (OK < WARN < STALL < STOP < ERR); a group
whose description or offsets could not be read is ERR; a group without any committed
offset is OK. Windows of groups and partitions that are no longer seen are dropped.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from itertools import pairwise
from typing import NamedTuple


class Status(StrEnum):
    OK = "OK"
    WARN = "WARN"
    STALL = "STALL"
    STOP = "STOP"
    ERR = "ERR"

    @property
    def severity(self) -> int:
        return list(Status).index(self)


STATUSES = tuple(s.value for s in Status)


class PartitionId(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True)
class Sample:
    """One partition of one group at one time (`at`, seconds)."""

    at: float
    committed: int
    end: int
    start: int = 0
    unread_age_s: float = 0.0

    @property
    def lag(self) -> int:
        return self.end - self.committed


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str


# --------------------------------------------------------------------------- the rules

def lag_zero_somewhere(samples: Sequence[Sample]) -> bool:
    return any(s.lag == 0 for s in samples)


def offset_unmoved(samples: Sequence[Sample]) -> bool:
    return all(s.committed == samples[0].committed for s in samples)


def lag_not_decreasing_and_grown(samples: Sequence[Sample]) -> bool:
    steps = pairwise(samples)
    return all(later.lag >= earlier.lag for earlier, later in steps) and samples[-1].lag > samples[0].lag


def span(samples: Sequence[Sample]) -> float:
    return samples[-1].at - samples[0].at


def partition_verdict(samples: Sequence[Sample], *, size: int, unmoved_since: float | None,
                      reading: bool, error: str | None = None) -> Verdict:
    """The status of one partition from its window (oldest first), the time its
    committed offset was first seen at its current value, whether someone reads it,
    and the error of its newest sampling, if any."""
    if error is not None:
        return Verdict(Status.ERR, error)
    if not samples:
        return Verdict(Status.OK, "not sampled yet")
    newest = samples[-1]
    if newest.lag < 0:
        return Verdict(Status.ERR, f"negative lag: committed offset {newest.committed} beyond the end {newest.end}")
    if newest.committed < newest.start:
        return Verdict(Status.ERR, f"offsets gone: committed offset {newest.committed} below the log start "
                                   f"{newest.start} (unread records deleted)")
    if lag_zero_somewhere(samples):
        return Verdict(Status.OK, "caught up within the window")
    if not reading:
        return Verdict(Status.STOP, "no member reads it and records wait")
    full = len(samples) >= max(size, 2)
    if full and unmoved_since is not None and newest.at - unmoved_since > 2 * span(samples):
        return Verdict(Status.STOP, f"offset {newest.committed} has not moved for "
                                    f"{newest.at - unmoved_since:.0f} s while records wait")
    if full and offset_unmoved(samples):
        return Verdict(Status.STALL, f"offset {newest.committed} has not moved over the window while records wait")
    if full and lag_not_decreasing_and_grown(samples):
        return Verdict(Status.WARN, "the offset moves but the lag grew in every interval")
    return Verdict(Status.OK, "reading" if full else "window not full yet")


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: s.severity, default=Status.OK)


# --------------------------------------------------------------------------- observations

@dataclass(frozen=True)
class PartitionOffsets:
    """What was read of one partition for one group; `error` when it could not be."""

    partition: PartitionId
    committed: int
    end: int
    start: int = 0
    unread_age_s: float = 0.0
    error: str | None = None


@dataclass(frozen=True)
class GroupObservation:
    """One consumer group as the broker describes it. `assigned`: the partitions its
    members hold, when known (None: unknown, e.g. during a rebalance)."""

    name: str
    state: str = "Stable"
    members: int = 0
    assigned: frozenset[PartitionId] | None = None
    offsets: tuple[PartitionOffsets, ...] = ()
    error: str | None = None

    def reads(self, partition: PartitionId) -> bool:
        if self.members == 0:
            return False
        return self.assigned is None or partition in self.assigned


@dataclass(frozen=True)
class Observation:
    """One sampling of the broker: every group, and the end of every topic partition."""

    at: float
    groups: tuple[GroupObservation, ...] = ()
    ends: dict[PartitionId, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- results

@dataclass(frozen=True)
class PartitionLag:
    partition: PartitionId
    committed: int
    end: int
    lag_records: int
    lag_seconds: float
    status: Status
    reason: str


@dataclass(frozen=True)
class GroupLag:
    name: str
    status: Status
    reason: str
    state: str
    members: int
    partitions: tuple[PartitionLag, ...]

    @property
    def max_lag_seconds(self) -> float:
        return max((p.lag_seconds for p in self.partitions), default=0.0)

    @property
    def lag_records(self) -> int:
        return sum(max(p.lag_records, 0) for p in self.partitions)


# --------------------------------------------------------------------------- the windows

@dataclass
class Window:
    """The last `size` samples of one partition of one group."""

    size: int
    samples: deque[Sample] = field(init=False)
    unmoved_since: float | None = None
    error: str | None = None

    def __post_init__(self) -> None:
        self.samples = deque(maxlen=self.size)

    def add(self, sample: Sample) -> None:
        """`unmoved_since`: since when records have waited behind the same committed
        offset (reset when the offset moves or nothing waits)."""
        moved = not self.samples or self.samples[-1].committed != sample.committed
        if moved or sample.lag <= 0 or self.unmoved_since is None:
            self.unmoved_since = sample.at
        self.samples.append(sample)
        self.error = None

    def fail(self, reason: str) -> None:
        self.error = reason

    def verdict(self, reading: bool) -> Verdict:
        return partition_verdict(list(self.samples), size=self.size, unmoved_since=self.unmoved_since,
                                 reading=reading, error=self.error)


class LagBook:
    """Every window, fed one observation at a time; what each group's lag and status
    are after it. Windows of what is no longer observed are dropped."""

    def __init__(self, size: int) -> None:
        if size < 2:
            raise ValueError(f"a window holds at least 2 samples (got {size})")
        self.size = size
        self.windows: dict[tuple[str, PartitionId], Window] = {}

    def record(self, observation: Observation) -> list[GroupLag]:
        seen: set[tuple[str, PartitionId]] = set()
        results = []
        for group in observation.groups:
            partitions = []
            for offsets in group.offsets:
                key = (group.name, offsets.partition)
                seen.add(key)
                window = self.windows.setdefault(key, Window(self.size))
                if offsets.error is not None:
                    window.fail(offsets.error)
                else:
                    window.add(Sample(observation.at, offsets.committed, offsets.end, offsets.start,
                                      offsets.unread_age_s))
                verdict = window.verdict(group.reads(offsets.partition))
                lag = offsets.end - offsets.committed
                partitions.append(PartitionLag(
                    offsets.partition, offsets.committed, offsets.end, lag,
                    offsets.unread_age_s if lag > 0 and offsets.error is None else 0.0,
                    verdict.status, verdict.reason))
            results.append(_group_lag(group, partitions))
        for gone in set(self.windows) - seen:
            del self.windows[gone]
        return results


def _group_lag(group: GroupObservation, partitions: list[PartitionLag]) -> GroupLag:
    partitions.sort(key=lambda p: p.partition)
    if group.error is not None:
        status, reason = Status.ERR, group.error
    else:
        status = worst(p.status for p in partitions)
        culprits = [p for p in partitions if p.status is status]
        reason = (f"{culprits[0].partition.topic}:{culprits[0].partition.partition}: {culprits[0].reason}"
                  if culprits and status is not Status.OK else "every partition OK")
    return GroupLag(group.name, status, reason, group.state, group.members, tuple(partitions))

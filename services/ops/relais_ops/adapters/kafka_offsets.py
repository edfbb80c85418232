"""Reads, from outside every consumer, what the lag monitor needs: each consumer group
(any group: the platform's `relais-*`, the operators' `operator-<code>-...`), its state
and members, its committed offsets; each topic partition's start and end; the time of
the oldest record each group has not read. Never joins a group, never commits: an
admin client and a consumer without a group (partitions assigned by hand).

The end a broker reports is not trusted to be exclusive: the embedded tansu reports
the offset after the *first* record of the last batch (records 0 and 1 written as one
batch: it says 1). Every partition is read from its reported end until a fetch finds
nothing more, and the end is one past the last record found (on Apache Kafka that
fetch finds nothing, or records written meanwhile). Offsets are read before the ends,
so a consumer committing meanwhile never looks ahead of the end.

Needs, as Kafka ACLs: Describe on every group (list, describe, fetch offsets), Describe
and Read on every topic it inspects (metadata, ListOffsets, fetch one record)."""

from __future__ import annotations

import contextlib
import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError, OffsetOutOfRangeError, for_code

from relais_kit import kafka
from relais_kit.kafka import KafkaSecurity
from relais_ops.domain.lag import GroupObservation, Observation, PartitionId, PartitionOffsets

# How long a read waits for what follows a position (an end, a committed offset).
PROBE_WAIT_S = 0.3
# Record timestamps kept by (topic, partition, offset): a stuck group is read once.
TIMESTAMP_CACHE = 10_000
NO_OFFSET = -1


class OffsetsUnavailable(RuntimeError):
    """The broker could not be read at all (the message says why)."""


def _pid(tp: TopicPartition) -> PartitionId:
    return PartitionId(tp.topic, tp.partition)


def _tp(pid: PartitionId) -> TopicPartition:
    return TopicPartition(pid.topic, pid.partition)


def assigned_partitions(protocol_type: str, members: Iterable[Any]) -> frozenset[PartitionId] | None:
    """The partitions the members of a `consumer` group hold, from their assignment;
    None when it cannot be known (another protocol, an assignment not given)."""
    if protocol_type != "consumer":
        return None
    held: set[PartitionId] = set()
    for member in members:
        raw = member[4]
        if not raw:
            return None  # the embedded broker does not give it back
        try:
            assignment = ConsumerProtocolMemberAssignment.decode(raw)
        except Exception:
            return None
        held |= {PartitionId(topic, p) for topic, partitions in assignment.assignment for p in partitions}
    return frozenset(held)


class KafkaOffsets:
    def __init__(self, bootstrap: str, security: KafkaSecurity | None = None, *,
                 ignore_groups: re.Pattern[str] | None = None, probe_wait_s: float = PROBE_WAIT_S) -> None:
        self.bootstrap = bootstrap
        self.security = security or KafkaSecurity.from_env()
        self.ignore_groups = ignore_groups
        self.probe_wait_s = probe_wait_s
        self._admin: AIOKafkaAdminClient | None = None
        self._reader: AIOKafkaConsumer | None = None
        self._timestamps: OrderedDict[tuple[str, int, int], int] = OrderedDict()
        self._last_ends: dict[PartitionId, int] = {}

    async def start(self) -> None:
        admin = kafka.admin(self.bootstrap, self.security, client_id="relais-ops-lag")
        reader = kafka.consumer(self.bootstrap, None, security=self.security, client_id="relais-ops-lag",
                                auto_offset_reset="none", enable_auto_commit=False)
        try:
            await admin.start()
            await reader.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await admin.close()
            with contextlib.suppress(Exception):
                await reader.stop()
            raise
        self._admin, self._reader = admin, reader

    async def close(self) -> None:
        admin, reader, self._admin, self._reader = self._admin, self._reader, None, None
        if reader is not None:
            await reader.stop()
        if admin is not None:
            await admin.close()

    @property
    def admin(self) -> AIOKafkaAdminClient:
        if self._admin is None:
            raise OffsetsUnavailable("not started")
        return self._admin

    @property
    def reader(self) -> AIOKafkaConsumer:
        if self._reader is None:
            raise OffsetsUnavailable("not started")
        return self._reader

    # ------------------------------------------------------------------ one sampling

    async def observe(self) -> Observation:
        """Every group's offsets, every partition's end; OffsetsUnavailable when the
        broker cannot be read at all (a group that cannot be read is that group's ERR)."""
        try:
            if self._admin is None:
                await self.start()
            partitions = await self.partitions()
            names = await self.group_names()
            described = {name: await self._describe(name, partitions) for name in names}
            ends, starts = await self.ends(partitions)
            at = time.time()
            committed = {(name, pid): offset for name, (_, offsets) in described.items()
                         for pid, offset in offsets.items()}
            ages = await self._unread_ages(committed, ends, starts, at)
        except KafkaError as exc:
            raise OffsetsUnavailable(f"{type(exc).__name__}: {exc}") from exc
        groups = []
        for name, (group, offsets) in described.items():
            rows = tuple(self._partition(pid, offset, ends, starts, ages.get((name, pid)))
                         for pid, offset in sorted(offsets.items()))
            groups.append(GroupObservation(group.name, group.state, group.members, group.assigned, rows,
                                           group.error))
        return Observation(at, tuple(groups), ends)

    @staticmethod
    def _partition(pid: PartitionId, committed: int, ends: dict[PartitionId, int], starts: dict[PartitionId, int],
                   age: float | None) -> PartitionOffsets:
        if pid not in ends:
            return PartitionOffsets(pid, committed, committed, error="partition gone from the broker")
        return PartitionOffsets(pid, committed, ends[pid], starts.get(pid, 0), age or 0.0)

    async def partitions(self) -> list[PartitionId]:
        """Every partition of every topic this principal may describe (internal ones
        left out)."""
        found = []
        for topic in await self.admin.describe_topics():
            if topic.get("is_internal") or str(topic["topic"]).startswith("__") or topic.get("error_code"):
                continue
            found += [PartitionId(topic["topic"], p["partition"]) for p in topic["partitions"]]
        return sorted(found)

    async def group_names(self) -> list[str]:
        names = sorted(str(g[0]) for g in await self.admin.list_consumer_groups())
        return [n for n in names if not (self.ignore_groups and self.ignore_groups.search(n))]

    async def _describe(self, name: str,
                        partitions: list[PartitionId]) -> tuple[GroupObservation, dict[PartitionId, int]]:
        """The group (state, members, what they hold) and its committed offsets; a
        group that cannot be read comes back with its error and no offsets. One group
        per request: the embedded broker garbles a description of several."""
        try:
            responses = await self.admin.describe_consumer_groups([name])
            raw = next((g for r in responses for g in r.groups if g[1] == name), None)
            if raw is None:
                raise KafkaError(f"the broker did not describe group {name}")
            if raw[0]:
                raise for_code(raw[0])(f"describing group {name}")
            state, protocol_type, members = str(raw[2]), str(raw[3]), list(raw[5])
            assigned = assigned_partitions(protocol_type, members) if state == "Stable" else None
            found = await self.admin.list_consumer_group_offsets(name, partitions=[_tp(p) for p in partitions])
        except (KafkaError, AttributeError) as exc:
            # aiokafka raises AttributeError on some per-partition errors (OffsetFetch v1).
            reason = f"cannot read the group: {type(exc).__name__}: {exc}"
            return GroupObservation(name, "Unknown", error=reason), {}
        offsets = {_pid(tp): meta.offset for tp, meta in found.items() if meta.offset != NO_OFFSET}
        return GroupObservation(name, state, len(members), assigned), offsets

    async def ends(self, partitions: list[PartitionId]) -> tuple[dict[PartitionId, int], dict[PartitionId, int]]:
        """The exclusive end of every partition (the reported end, moved past every
        record found from it), and its start."""
        tps = [_tp(p) for p in partitions]
        if not tps:
            return {}, {}
        reported = {_pid(tp): offset for tp, offset in (await self.reader.end_offsets(tps)).items()}
        starts = {_pid(tp): offset for tp, offset in (await self.reader.beginning_offsets(tps)).items()}
        last = await self._read_past(reported)
        ends = {pid: max(end, last[pid] + 1) if pid in last else end for pid, end in reported.items()}
        if any(end < self._last_ends.get(pid, 0) for pid, end in ends.items()):
            self._timestamps.clear()  # a partition went back: the broker lost its records, offsets are reused
        self._last_ends = ends
        return ends, starts

    async def _read_past(self, positions: dict[PartitionId, int]) -> dict[PartitionId, int]:
        """From each position, reads until a fetch finds nothing more; the last offset
        found per partition (absent: nothing there)."""
        last: dict[PartitionId, int] = {}
        self._assign(positions)
        pending = set(positions)
        while pending:
            batches = await self._fetch(pending)
            if batches is None:
                break
            for tp, records in batches.items():
                if records:
                    pid = _pid(tp)
                    last[pid] = max(last.get(pid, -1), records[-1].offset)
                    self._remember(tp, records)
            pending = {pid for pid in pending if batches.get(_tp(pid))}
        return last

    async def _unread_ages(self, committed: dict[tuple[str, PartitionId], int], ends: dict[PartitionId, int],
                           starts: dict[PartitionId, int], at: float) -> dict[tuple[str, PartitionId], float]:
        """The age (seconds at `at`) of the record at each group's committed offset,
        where something is unread; partitions are read as many times as groups wait on
        them at different offsets (once for all groups at the same one)."""
        wanted = {(pid, offset) for (_, pid), offset in committed.items()
                  if pid in ends and max(offset, starts.get(pid, 0)) < ends[pid]}
        missing = sorted((pid, max(offset, starts.get(pid, 0))) for pid, offset in wanted
                         if self._cached(pid, max(offset, starts.get(pid, 0))) is None)
        while missing:
            round_: dict[PartitionId, int] = {}
            for pid, offset in missing:
                round_.setdefault(pid, offset)
            await self._read_first(round_)
            missing = [(pid, offset) for pid, offset in missing if round_.get(pid) != offset]
        ages = {}
        for (name, pid), offset in committed.items():
            if pid not in ends or max(offset, starts.get(pid, 0)) >= ends[pid]:
                continue
            timestamp_ms = self._cached(pid, max(offset, starts.get(pid, 0)))
            if timestamp_ms is not None:
                ages[(name, pid)] = max(0.0, at - timestamp_ms / 1000)
        return ages

    async def _read_first(self, positions: dict[PartitionId, int]) -> None:
        """Reads the first record at or after each position (its timestamp cached by
        the position asked, so that a compacted-away offset finds its successor)."""
        self._assign(positions)
        pending = dict(positions)
        deadline = time.monotonic() + max(self.probe_wait_s * 3, 1.0)
        while pending and time.monotonic() < deadline:
            batches = await self._fetch(set(pending))
            if batches is None:
                return
            for tp, records in batches.items():
                pid = _pid(tp)
                if records and pid in pending:
                    self._remember(tp, records)
                    self._store(pid, pending.pop(pid), records[0].timestamp)

    async def _fetch(self, partitions: set[PartitionId]) -> dict[TopicPartition, list[Any]] | None:
        """One fetch of the given (assigned) partitions; None when a position fell
        out of the log meanwhile (retention): this round is given up, the next sampling
        sees the new start."""
        try:
            return await self.reader.getmany(*[_tp(p) for p in partitions], timeout_ms=int(self.probe_wait_s * 1000))
        except OffsetOutOfRangeError:
            return None

    def _assign(self, positions: dict[PartitionId, int]) -> None:
        self.reader.assign([_tp(p) for p in positions])
        for pid, offset in positions.items():
            self.reader.seek(_tp(pid), offset)

    def _remember(self, tp: TopicPartition, records: list[Any]) -> None:
        for record in records:
            self._store(_pid(tp), record.offset, record.timestamp)

    def _store(self, pid: PartitionId, offset: int, timestamp_ms: int) -> None:
        key = (pid.topic, pid.partition, offset)
        self._timestamps[key] = timestamp_ms
        self._timestamps.move_to_end(key)
        while len(self._timestamps) > TIMESTAMP_CACHE:
            self._timestamps.popitem(last=False)

    def _cached(self, pid: PartitionId, offset: int) -> int | None:
        return self._timestamps.get((pid.topic, pid.partition, offset))

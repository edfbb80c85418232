"""The lag monitor: every interval, one observation of the broker (adapters.kafka_offsets)
fed to the windows (domain.lag), and the result kept for the API and as Prometheus
metrics. A group that disappeared loses its series; so does a partition a group no
longer has an offset on, and a topic partition that is gone. When the broker cannot
be read at all, every known group is ERR (its lag is not known any more) and /healthz
says why."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from relais_kit.logs import log
from relais_ops.domain.lag import STATUSES, GroupLag, LagBook, Observation, PartitionId, Status


class OffsetsSource(Protocol):
    async def observe(self) -> Observation: ...


class LagMetrics:
    """The lag monitor's series (names shared with the alert rules and the console)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.lag_records = Gauge("relais_consumergroup_lag_records",
                                 "Records a consumer group has not read yet (log end - committed offset).",
                                 ["group", "topic", "partition"], registry=registry)
        self.lag_seconds = Gauge("relais_consumergroup_lag_seconds",
                                 "Age of the oldest record the group has not read (0 when none).",
                                 ["group", "topic", "partition"], registry=registry)
        # Enum-style: one series per status, 1 for the current one. A gauge labelled
        # `status` rather than prometheus_client's Enum, whose state label must bear the
        # metric's own name: the alert rules and the console select on `status`.
        self.status = Gauge("relais_consumergroup_status",
                            "Burrow-style status of the group over the sliding window (1: the current one).",
                            ["group", "status"], registry=registry)
        self.max_lag_seconds = Gauge("relais_consumergroup_max_lag_seconds",
                                     "The group's largest lag in seconds over its partitions.",
                                     ["group"], registry=registry)
        self.end_offset = Gauge("relais_topic_end_offset", "The partition's log end offset (exclusive).",
                                ["topic", "partition"], registry=registry)
        self._partitions: set[tuple[str, str, str]] = set()
        self._groups: set[str] = set()
        self._ends: set[tuple[str, str]] = set()

    def show(self, groups: list[GroupLag], ends: dict[PartitionId, int]) -> None:
        partitions, names = set(), set()
        for group in groups:
            names.add(group.name)
            self._set_status(group.name, group.status)
            self.max_lag_seconds.labels(group.name).set(group.max_lag_seconds)
            for p in group.partitions:
                labels = (group.name, p.partition.topic, str(p.partition.partition))
                partitions.add(labels)
                self.lag_records.labels(*labels).set(p.lag_records)
                self.lag_seconds.labels(*labels).set(p.lag_seconds)
        end_labels = set()
        for pid, end in ends.items():
            labels2 = (pid.topic, str(pid.partition))
            end_labels.add(labels2)
            self.end_offset.labels(*labels2).set(end)
        for gone in self._partitions - partitions:
            self.lag_records.remove(*gone)
            self.lag_seconds.remove(*gone)
        for name in self._groups - names:
            for state in STATUSES:
                self.status.remove(name, state)
            self.max_lag_seconds.remove(name)
        for gone_end in self._ends - end_labels:
            self.end_offset.remove(*gone_end)
        self._partitions, self._groups, self._ends = partitions, names, end_labels

    def _set_status(self, group: str, status: Status) -> None:
        for state in STATUSES:
            self.status.labels(group, state).set(1.0 if state == status.value else 0.0)

    def all_err(self) -> None:
        for name in self._groups:
            self._set_status(name, Status.ERR)


@dataclass
class Health:
    """What /healthz answers: the last sampling succeeded recently enough."""

    last_success: float | None = None  # time.monotonic()
    last_error: str | None = None
    started: float = field(default_factory=time.monotonic)

    def problem(self, max_age_s: float, now: float | None = None) -> str | None:
        now = time.monotonic() if now is None else now
        if self.last_success is None:
            return f"no sampling succeeded yet: {self.last_error}" if self.last_error else "no sampling yet"
        age = now - self.last_success
        if age > max_age_s:
            why = f": {self.last_error}" if self.last_error else ""
            return f"the last successful sampling was {age:.0f} s ago{why}"
        return None


class LagMonitor:
    def __init__(self, source: OffsetsSource, *, interval_s: float, window: int,
                 metrics: LagMetrics | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.interval_s = interval_s
        self.book = LagBook(window)
        self.metrics = metrics
        self.clock = clock
        self.health = Health()
        self.groups: list[GroupLag] = []
        self.ends: dict[PartitionId, int] = {}
        self.sampled_at: float | None = None  # Unix time of the last observation
        self.updated = asyncio.Event()  # set after each sampling, successful or not
        # A sampling that takes longer (a broker that stopped answering) is given up.
        self.sampling_timeout_s = max(2 * interval_s, 20.0)

    @property
    def healthy_within_s(self) -> float:
        """How old the last successful sampling may be: three intervals (a slow
        broker answer included)."""
        return 3 * self.interval_s + 10.0

    async def sample(self) -> None:
        try:
            observation = await asyncio.wait_for(self.source.observe(), self.sampling_timeout_s)
        except TimeoutError:
            self._failed(f"the broker did not answer within {self.sampling_timeout_s:g} s")
        except Exception as exc:
            self._failed(str(exc) or type(exc).__name__)
        else:
            self._record(observation)
        self.updated.set()

    def _failed(self, error: str) -> None:
        self.health.last_error = error
        self.groups = [GroupLag(g.name, Status.ERR, f"the broker cannot be read: {error}", g.state, g.members,
                                g.partitions) for g in self.groups]
        if self.metrics is not None:
            self.metrics.all_err()
        log.warning("lag_sampling_failed", error=error)

    def _record(self, observation: Observation) -> None:
        before = {g.name: g.status for g in self.groups}
        self.groups = self.book.record(observation)
        self.ends = dict(observation.ends)
        self.sampled_at = observation.at
        self.health.last_success, self.health.last_error = self.clock(), None
        if self.metrics is not None:
            self.metrics.show(self.groups, self.ends)
        for group in self.groups:
            if before.get(group.name) != group.status:
                log.info("consumer_group_status", group=group.name, status=group.status.value,
                         previous=before[group.name].value if group.name in before else None, reason=group.reason)

    async def run(self) -> None:
        """Samples every interval (start to start) until cancelled."""
        while True:
            began = self.clock()
            self.updated.clear()
            await self.sample()
            await asyncio.sleep(max(0.0, self.interval_s - (self.clock() - began)))


_DEFAULT_METRICS: list[LagMetrics] = []


def default_metrics() -> LagMetrics:
    """The series on prometheus-client's default registry, made once per process."""
    if not _DEFAULT_METRICS:
        _DEFAULT_METRICS.append(LagMetrics())
    return _DEFAULT_METRICS[0]

"""The console's overview, built from what Prometheus answers and what the lag monitor
knows: throughput, consumer groups, the operators' inboxes, dead letters, outbox
backlogs, processes. Pure: the figures come in as samples (adapters.prometheus'
`Sample`, `Series`) and `GroupLag`s, the rows go out, with their French wording.
Nothing here names a person: operators, topics, schemas, services, groups."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from relais_ops.domain.lag import GroupLag, Status
from relais_ops.domain.series import Sample, Series
from relais_ops.domain.sparkline import Sparkline, sparkline

# The window of the charts: six hours at five-minute steps.
HISTORY_S = 6 * 3600
STEP_S = 300

# What the page asks Prometheus (names of the metric spec).
THROUGHPUT_NOW = "sum(rate(messaging_client_consumed_messages_total[1m])) * 60"
THROUGHPUT_BY_TOPIC = ("sum by (messaging_destination_name) "
                       "(rate(messaging_client_consumed_messages_total[1m])) * 60")
# Each point covers its whole step (a 1-minute rate every 5 minutes would skip 4 of 5).
THROUGHPUT_HISTORY = "sum(rate(messaging_client_consumed_messages_total[5m])) * 60"
GROUP_LAG_HISTORY = "max by (group) (max_over_time(relais_consumergroup_max_lag_seconds[5m]))"
INBOX_UNACKNOWLEDGED = "max by (operator) (relais_operator_inbox_unacknowledged_referrals)"
INBOX_OLDEST = "max by (operator) (relais_operator_inbox_oldest_unacknowledged_age_seconds)"
OVERDUE = "max by (operator) (relais_referrals_overdue)"
DEAD_LETTERS = "sum by (source_topic, error) (relais_dead_letters_total)"
OUTBOX_PENDING = "max by (schema) (relais_outbox_pending_rows)"
OUTBOX_OLDEST = "max by (schema) (relais_outbox_oldest_pending_age_seconds)"
OUTBOX_PARKED = "max by (schema) (relais_outbox_parked_rows)"
UP = "up"
LOOPS = "relais_loop_healthy"

STATUS_LABELS: dict[str, str] = {
    Status.OK.value: "À jour",
    Status.WARN.value: "Retard croissant",
    Status.STALL.value: "Bloqué",
    Status.STOP.value: "Arrêté",
    Status.ERR.value: "Erreur",
}
# DSFR badge of each status.
STATUS_BADGES: dict[str, str] = {
    Status.OK.value: "success", Status.WARN.value: "warning", Status.STALL.value: "error",
    Status.STOP.value: "error", Status.ERR.value: "error",
}


# --------------------------------------------------------------------------- rows

@dataclass(frozen=True)
class TopicRate:
    topic: str
    per_minute: float


@dataclass(frozen=True)
class Throughput:
    per_minute: float | None  # the last minute, across the platform
    by_topic: tuple[TopicRate, ...]
    history: Sparkline


@dataclass(frozen=True)
class GroupRow:
    name: str
    status: str
    status_label: str
    badge: str
    reason: str
    state: str
    members: int
    lag_records: int
    max_lag_seconds: float
    history: Sparkline | None  # its largest lag over the window (Prometheus), when known

    @property
    def healthy(self) -> bool:
        return self.status == Status.OK.value


@dataclass(frozen=True)
class InboxRow:
    operator: str
    unacknowledged: float | None
    oldest_age_s: float | None
    overdue: float | None


@dataclass(frozen=True)
class DeadLetterRow:
    topic: str
    error: str
    count: float


@dataclass(frozen=True)
class OutboxRow:
    schema: str
    pending: float | None
    oldest_age_s: float | None
    parked: float | None

    @property
    def attention(self) -> bool:
        return bool(self.parked) or (self.oldest_age_s or 0) > 60


@dataclass(frozen=True)
class ProcessRow:
    service: str
    instance: str
    up: bool
    stalled_loops: tuple[str, ...]

    @property
    def healthy(self) -> bool:
        return self.up and not self.stalled_loops


@dataclass(frozen=True)
class PlatformFigures:
    """Everything Prometheus told (None on the overview when it does not answer)."""

    throughput: Throughput
    inboxes: tuple[InboxRow, ...]
    dead_letters: tuple[DeadLetterRow, ...]
    outboxes: tuple[OutboxRow, ...]
    processes: tuple[ProcessRow, ...]
    group_history: Mapping[str, Sparkline] = field(default_factory=dict)

    @property
    def dead_letters_total(self) -> float:
        return sum(row.count for row in self.dead_letters)

    @property
    def processes_down(self) -> int:
        return sum(1 for row in self.processes if not row.healthy)


@dataclass(frozen=True)
class Overview:
    groups: tuple[GroupRow, ...]
    lag_sampled_at: float | None  # Unix time of the lag monitor's last sampling
    lag_problem: str | None  # why the lag monitor cannot tell (its /healthz reason)
    figures: PlatformFigures | None
    prometheus_problem: str | None  # why Prometheus did not answer

    @property
    def groups_in_trouble(self) -> int:
        return sum(1 for g in self.groups if not g.healthy)


# --------------------------------------------------------------------------- building

def _by(samples: Iterable[Sample], label: str) -> dict[str, float]:
    return {s.labels.get(label, ""): s.value for s in samples}


def single(samples: Sequence[Sample]) -> float | None:
    """The value of a query that sums everything (no sample: nothing was counted)."""
    return samples[0].value if samples else None


def throughput(now: Sequence[Sample], by_topic: Sequence[Sample], history: Sequence[Series], *,
               start: float, end: float) -> Throughput:
    points = history[0].points if history else ()
    topics = sorted((TopicRate(s.labels.get("messaging_destination_name", "?"), s.value) for s in by_topic),
                    key=lambda r: (-r.per_minute, r.topic))
    return Throughput(single(now), tuple(topics), sparkline(points, start=start, end=end, step_s=STEP_S,
                                                            width=560, height=96))


def group_rows(groups: Sequence[GroupLag], history: Mapping[str, Sparkline] | None = None) -> tuple[GroupRow, ...]:
    """The worst first, then by name."""
    rows = [GroupRow(g.name, g.status.value, STATUS_LABELS[g.status.value], STATUS_BADGES[g.status.value], g.reason,
                     g.state, g.members, g.lag_records, g.max_lag_seconds, (history or {}).get(g.name))
            for g in groups]
    order = list(STATUS_LABELS)
    return tuple(sorted(rows, key=lambda r: (-order.index(r.status), r.name)))


def group_history(series: Sequence[Series], *, start: float, end: float) -> dict[str, Sparkline]:
    return {s.labels.get("group", ""): sparkline(s.points, start=start, end=end, step_s=STEP_S, width=160,
                                                 height=32) for s in series}


def inbox_rows(unacknowledged: Sequence[Sample], oldest: Sequence[Sample],
               overdue: Sequence[Sample]) -> tuple[InboxRow, ...]:
    """One row per operator any of the three names; the most overdue first."""
    counts, ages, late = _by(unacknowledged, "operator"), _by(oldest, "operator"), _by(overdue, "operator")
    operators = sorted(set(counts) | set(ages) | set(late))
    rows = [InboxRow(op, counts.get(op), ages.get(op), late.get(op)) for op in operators]
    return tuple(sorted(rows, key=lambda r: (-(r.overdue or 0), -(r.oldest_age_s or 0), r.operator)))


def dead_letter_rows(samples: Sequence[Sample]) -> tuple[DeadLetterRow, ...]:
    rows = [DeadLetterRow(s.labels.get("source_topic", "?"), s.labels.get("error", "?"), s.value)
            for s in samples if s.value > 0]
    return tuple(sorted(rows, key=lambda r: (-r.count, r.topic, r.error)))


def outbox_rows(pending: Sequence[Sample], oldest: Sequence[Sample], parked: Sequence[Sample]) -> tuple[OutboxRow, ...]:
    counts, ages, stuck = _by(pending, "schema"), _by(oldest, "schema"), _by(parked, "schema")
    return tuple(OutboxRow(schema, counts.get(schema), ages.get(schema), stuck.get(schema))
                 for schema in sorted(set(counts) | set(ages) | set(stuck)))


def process_rows(up: Sequence[Sample], loops: Sequence[Sample]) -> tuple[ProcessRow, ...]:
    """One row per scraped process (`service`, `instance` labels; `job` when there is no
    `service`), with the loops it reports stalled; the unhealthy first."""
    stalled: dict[tuple[str, str], list[str]] = {}
    for sample in loops:
        if sample.value < 1:
            key = (sample.labels.get("service") or sample.labels.get("job", "?"), sample.labels.get("instance", "?"))
            stalled.setdefault(key, []).append(sample.labels.get("loop", "?"))
    rows = []
    for sample in up:
        key = (sample.labels.get("service") or sample.labels.get("job", "?"), sample.labels.get("instance", "?"))
        rows.append(ProcessRow(key[0], key[1], sample.value >= 1, tuple(sorted(stalled.get(key, [])))))
    return tuple(sorted(rows, key=lambda r: (r.healthy, r.service, r.instance)))

"""The lag monitor's rules (relais_ops.domain.lag), its metrics and health
(service_layer.lag_monitor, fed by a fake of its port), its API (the ops role), and the
reading of a group's assignment (adapters.kafka_offsets). The broker itself:
tests/integration/test_ops_lag.py."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from prometheus_client import CollectorRegistry

from relais_kit.auth import User, api_audience
from relais_ops.adapters.kafka_offsets import assigned_partitions
from relais_ops.app import create_app
from relais_ops.domain.lag import (
    GroupObservation,
    LagBook,
    Observation,
    PartitionId,
    PartitionOffsets,
    Sample,
    Status,
    partition_verdict,
    worst,
)
from relais_ops.service_layer.lag_monitor import Health, LagMetrics, LagMonitor
from relais_ops.settings import OpsSettings
from tests.tokens_support import JWKS_URL, bearer_for

P0 = PartitionId("referrals", 0)
P1 = PartitionId("referrals", 1)
SIZE = 4


def window(*rows: tuple[int, int], start: int = 0, every: float = 10.0) -> list[Sample]:
    """Samples (committed, end), `every` seconds apart."""
    return [Sample(at=i * every, committed=c, end=e, start=start) for i, (c, e) in enumerate(rows)]


def verdict(samples: list[Sample], *, reading: bool = True, unmoved_since: float | None = None,
            error: str | None = None, size: int = SIZE) -> Status:
    if unmoved_since is None and samples:
        unmoved_since = next(s.at for s in samples if s.committed == samples[-1].committed)
    return partition_verdict(samples, size=size, unmoved_since=unmoved_since, reading=reading, error=error).status


# --------------------------------------------------------------------------- partition rules

def test_a_consumer_that_keeps_up_is_ok() -> None:
    assert verdict(window((10, 10), (20, 20), (30, 30), (40, 40))) is Status.OK


def test_zero_lag_anywhere_in_the_window_is_ok_even_stalled_and_even_unread() -> None:
    rows = ((10, 10), (10, 15), (10, 20), (10, 25))
    assert verdict(window(*rows)) is Status.OK
    assert verdict(window(*rows), reading=False) is Status.OK  # caught up moments ago: not STOP yet


def test_a_consumer_whose_lag_grows_in_every_interval_while_it_moves_is_warn() -> None:
    assert verdict(window((10, 15), (12, 20), (14, 25), (16, 30))) is Status.WARN


def test_a_level_lag_is_not_a_warning() -> None:
    assert verdict(window((10, 15), (15, 20), (20, 25), (25, 30))) is Status.OK


def test_a_lag_that_decreases_once_is_not_a_warning() -> None:
    assert verdict(window((10, 15), (12, 20), (18, 22), (20, 30))) is Status.OK


def test_an_offset_that_does_not_move_while_records_wait_is_stall() -> None:
    assert verdict(window((10, 15), (10, 16), (10, 17), (10, 18))) is Status.STALL


def test_a_stall_that_lasts_another_window_is_stop_burrows_time_rule() -> None:
    samples = window((10, 15), (10, 16), (10, 17), (10, 18))  # span 30 s
    assert verdict(samples, unmoved_since=0.0) is Status.STALL
    assert verdict(samples, unmoved_since=-30.0) is Status.STALL  # 60 s unmoved: not more than twice the span
    assert verdict(samples, unmoved_since=-31.0) is Status.STOP


def test_nobody_reading_while_records_wait_is_stop_at_once() -> None:
    assert verdict(window((10, 15)), reading=False) is Status.STOP
    assert verdict(window((10, 15), (12, 20), (14, 25), (16, 30)), reading=False) is Status.STOP


def test_no_judgement_on_a_window_not_full_yet() -> None:
    assert verdict(window((10, 15), (10, 16), (10, 17))) is Status.OK
    assert verdict(window((10, 15), (11, 20), (12, 25))) is Status.OK


def test_negative_lag_gone_offsets_and_errors_are_err_whatever_else() -> None:
    assert verdict(window((10, 10), (10, 10), (10, 10), (12, 11))) is Status.ERR
    assert verdict(window((10, 20), (10, 20), (10, 20), (10, 20), start=15)) is Status.ERR
    assert verdict(window((10, 10), (20, 20)), error="broker said no") is Status.ERR


def test_nothing_sampled_is_ok() -> None:
    assert verdict([]) is Status.OK


def test_a_group_is_its_worst_partition() -> None:
    assert worst([Status.OK, Status.STALL, Status.WARN]) is Status.STALL
    assert worst([Status.STOP, Status.ERR, Status.OK]) is Status.ERR
    assert worst([]) is Status.OK


# --------------------------------------------------------------------------- the book

def observe(at: float, *groups: GroupObservation) -> Observation:
    return Observation(at=at, groups=groups, ends={P0: 0, P1: 0})


def group(name: str, *offsets: PartitionOffsets, members: int = 1,
          assigned: frozenset[PartitionId] | None = None, error: str | None = None) -> GroupObservation:
    return GroupObservation(name, "Stable" if members else "Empty", members, assigned, tuple(offsets), error)


def test_the_book_slides_the_window_and_judges_each_group() -> None:
    book = LagBook(3)
    results = []
    for i in range(5):  # the slow group reads 1 where 5 arrive; the fast one keeps up
        results = book.record(observe(
            10.0 * i,
            group("relais-notifications-referrals", PartitionOffsets(P0, 10 + i, 15 + 5 * i, unread_age_s=2.0 + i)),
            group("relais-referral-outboxes", PartitionOffsets(P0, 100 + i, 100 + i))))
        if i == 1:
            assert [g.status for g in results] == [Status.OK, Status.OK]  # window not full yet
    slow, fast = results
    assert (slow.status, fast.status) == (Status.WARN, Status.OK)
    assert slow.partitions[0].lag_records == 15 + 20 - 14
    assert slow.partitions[0].lag_seconds == 6.0
    assert slow.max_lag_seconds == 6.0 and slow.lag_records == 21
    assert fast.partitions[0].lag_seconds == 0.0 and fast.max_lag_seconds == 0.0
    assert "referrals:0" in slow.reason
    assert len(book.windows[("relais-notifications-referrals", P0)].samples) == 3


def test_lag_seconds_is_zero_when_nothing_is_unread() -> None:
    [result] = LagBook(2).record(observe(0.0, group("g", PartitionOffsets(P0, 5, 5, unread_age_s=99.0))))
    assert result.partitions[0].lag_seconds == 0.0


def test_a_group_without_members_and_with_lag_is_stop_and_one_caught_up_is_ok() -> None:
    book = LagBook(3)
    [stopped, idle] = book.record(observe(0.0, group("operator-caf-inbox", PartitionOffsets(P0, 3, 8), members=0),
                                          group("operator-cnam-inbox", PartitionOffsets(P0, 8, 8), members=0)))
    assert (stopped.status, idle.status) == (Status.STOP, Status.OK)
    assert stopped.reason.startswith("referrals:0: no member reads it")


def test_a_partition_no_member_holds_is_stop_when_the_assignment_is_known() -> None:
    book = LagBook(3)
    [result] = book.record(observe(0.0, group("g", PartitionOffsets(P0, 3, 8), PartitionOffsets(P1, 3, 8),
                                              assigned=frozenset({P1}))))
    assert [p.status for p in result.partitions] == [Status.STOP, Status.OK]
    assert result.status is Status.STOP


def test_a_group_that_cannot_be_read_is_err_and_a_partition_that_cannot_be_read_too() -> None:
    book = LagBook(3)
    [unreadable, partly] = book.record(observe(
        0.0, group("g1", error="cannot read the group: GroupAuthorizationFailedError"),
        group("g2", PartitionOffsets(P0, 0, 0, error="partition gone from the broker"), PartitionOffsets(P1, 1, 1))))
    assert unreadable.status is Status.ERR and "GroupAuthorization" in unreadable.reason
    assert partly.status is Status.ERR and [p.status for p in partly.partitions] == [Status.ERR, Status.OK]


def test_windows_of_groups_and_partitions_no_longer_seen_are_dropped() -> None:
    book = LagBook(3)
    book.record(observe(0.0, group("a", PartitionOffsets(P0, 1, 1), PartitionOffsets(P1, 1, 1)),
                        group("b", PartitionOffsets(P0, 1, 1))))
    book.record(observe(10.0, group("a", PartitionOffsets(P0, 1, 1))))
    assert set(book.windows) == {("a", P0)}


def test_a_window_holds_two_samples_at_least() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        LagBook(1)


def test_stopped_consumer_goes_ok_stall_stop_as_its_zero_lag_leaves_the_window() -> None:
    """The integration test's scenario, sample by sample: caught up, then closed while
    records keep coming, its membership left on the broker (the embedded one keeps it)."""
    book = LagBook(3)
    seen = []
    for i in range(8):
        end = 10 if i < 2 else 10 + i
        [result] = book.record(observe(1.0 * i, group("g", PartitionOffsets(P0, 10, end))))
        seen.append(result.status)
    assert seen[:4] == [Status.OK] * 4
    assert Status.STALL in seen and seen[-1] is Status.STOP
    assert seen.index(Status.STALL) < seen.index(Status.STOP)


def test_records_arriving_after_a_long_idle_time_are_not_a_stop_at_once() -> None:
    """The time rule counts from when records began to wait, not from the offset's last
    move: a consumer idle (caught up) for an hour that gets records is judged afresh."""
    book = LagBook(3)
    [idle] = book.record(observe(0.0, group("g", PartitionOffsets(P0, 10, 10))))
    [still_idle] = book.record(observe(3600.0, group("g", PartitionOffsets(P0, 10, 10))))
    seen = [book.record(observe(3600.0 + i, group("g", PartitionOffsets(P0, 10, 11 + i))))[0].status
            for i in range(1, 4)]
    assert (idle.status, still_idle.status) == (Status.OK, Status.OK)
    assert seen == [Status.OK, Status.OK, Status.STALL]  # then STOP after as long again
    assert book.windows[("g", P0)].unmoved_since == 3600.0


def test_an_offset_that_moves_resets_the_time_rule() -> None:
    book = LagBook(3)
    for i in range(6):
        book.record(observe(float(i), group("g", PartitionOffsets(P0, 10, 20))))
    [stopped] = book.record(observe(6.0, group("g", PartitionOffsets(P0, 10, 20))))
    [moving] = book.record(observe(7.0, group("g", PartitionOffsets(P0, 15, 25))))  # lag level
    assert (stopped.status, moving.status) == (Status.STOP, Status.OK)


# --------------------------------------------------------------------------- the monitor

class FakeOffsets:
    """The adapter's port, answering what the test queues."""

    def __init__(self, *answers: Observation | Exception) -> None:
        self.answers = list(answers)

    async def observe(self) -> Observation:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def series(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for metric in registry.collect() for s in metric.samples}


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return series(registry).get((name, tuple(sorted(labels.items()))))


async def test_the_metrics_follow_the_groups_and_forget_those_gone() -> None:
    registry = CollectorRegistry()
    first = Observation(0.0, (group("operator-caf-inbox", PartitionOffsets(P0, 2, 7, unread_age_s=42.0), members=0),
                              group("relais-referral-outboxes", PartitionOffsets(P1, 3, 3))),
                        {P0: 7, P1: 3})
    second = Observation(10.0, (group("relais-referral-outboxes", PartitionOffsets(P1, 4, 4)),), {P0: 7})
    monitor = LagMonitor(FakeOffsets(first, second), interval_s=10, window=3, metrics=LagMetrics(registry))
    await monitor.sample()
    assert value(registry, "relais_consumergroup_lag_records", group="operator-caf-inbox", topic="referrals",
                 partition="0") == 5
    assert value(registry, "relais_consumergroup_lag_seconds", group="operator-caf-inbox", topic="referrals",
                 partition="0") == 42.0
    assert value(registry, "relais_consumergroup_max_lag_seconds", group="operator-caf-inbox") == 42.0
    assert value(registry, "relais_consumergroup_status", group="operator-caf-inbox",
                 status="STOP") == 1
    assert value(registry, "relais_consumergroup_status", group="operator-caf-inbox",
                 status="OK") == 0
    assert value(registry, "relais_topic_end_offset", topic="referrals", partition="1") == 3
    await monitor.sample()
    names = {labels for name, labels in series(registry) if dict(labels).get("group") == "operator-caf-inbox"}
    assert names == set()  # the group is gone: its series too
    assert value(registry, "relais_topic_end_offset", topic="referrals", partition="1") is None
    assert value(registry, "relais_consumergroup_lag_records", group="relais-referral-outboxes",
                 topic="referrals", partition="1") == 0


async def test_a_failed_sampling_makes_every_known_group_err_and_health_says_why() -> None:
    registry = CollectorRegistry()
    clock = [100.0]
    ok = Observation(0.0, (group("g", PartitionOffsets(P0, 1, 1)),), {P0: 1})
    monitor = LagMonitor(FakeOffsets(ok, RuntimeError("KafkaConnectionError: broker away")), interval_s=1, window=3,
                         metrics=LagMetrics(registry), clock=lambda: clock[0])
    assert monitor.health.problem(monitor.healthy_within_s, now=clock[0]) == "no sampling yet"
    await monitor.sample()
    assert monitor.health.problem(monitor.healthy_within_s, now=clock[0]) is None
    clock[0] += 1
    await monitor.sample()
    assert [g.status for g in monitor.groups] == [Status.ERR]
    assert value(registry, "relais_consumergroup_status", group="g", status="ERR") == 1
    problem = monitor.health.problem(monitor.healthy_within_s, now=clock[0] + monitor.healthy_within_s)
    assert problem is not None and "broker away" in problem


def test_health_before_any_success_names_the_error() -> None:
    assert Health(last_error="boom").problem(30.0) == "no sampling succeeded yet: boom"


async def test_the_monitor_samples_every_interval_until_cancelled() -> None:
    observations = [Observation(float(i), (), {}) for i in range(50)]
    monitor = LagMonitor(FakeOffsets(*observations), interval_s=0.01, window=3)
    task = asyncio.create_task(monitor.run())
    for _ in range(3):
        monitor.updated.clear()
        await asyncio.wait_for(monitor.updated.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert monitor.sampled_at is not None and monitor.sampled_at >= 2.0


# --------------------------------------------------------------------------- the group's assignment

def test_the_assignment_of_a_stable_consumer_group_is_read_from_its_members() -> None:
    raw = ConsumerProtocolMemberAssignment(0, [("referrals", [0, 2])], b"").encode()
    member = ("m1", "client", "/127.0.0.1", b"", raw)
    assert assigned_partitions("consumer", [member]) == {PartitionId("referrals", 0), PartitionId("referrals", 2)}
    assert assigned_partitions("consumer", [("m1", "", "", b"", b"")]) is None  # the embedded broker's
    assert assigned_partitions("connect", [member]) is None


# --------------------------------------------------------------------------- the API

@pytest.fixture
def app_with_lag() -> httpx.AsyncClient:
    app = create_app(OpsSettings(RELAIS_ENV="test", RELAIS_TOKEN_JWKS_URL=JWKS_URL))  # type: ignore[call-arg]
    monitor = LagMonitor(FakeOffsets(), interval_s=10, window=3, metrics=LagMetrics(CollectorRegistry()))
    monitor._record(Observation(5.0, (group("operator-caf-inbox", PartitionOffsets(P0, 2, 7, unread_age_s=4.5),
                                            members=0),), {P0: 7}))
    app.state.lag_monitor = monitor
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops")


async def test_the_lag_api_is_for_the_ops_role(app_with_lag: httpx.AsyncClient) -> None:
    async with app_with_lag as web:
        assert (await web.get("/api/lag")).status_code == 401
        adviser = User("a1", "adviser", "fs-paris-01", "Adviser")
        assert (await web.get("/api/lag", headers=bearer_for(adviser))).status_code == 403
        elsewhere = bearer_for(User("o1", "ops", None, "Ops"), [api_audience("sites")])
        assert (await web.get("/api/lag", headers=elsewhere)).status_code == 401
        response = await web.get("/api/lag", headers=bearer_for(User("o1", "ops", None, "Ops")))
    assert response.status_code == 200
    body = response.json()
    [caf] = body["groups"]
    assert (caf["group"], caf["status"], caf["members"], caf["lag_records"], caf["max_lag_seconds"]) == \
        ("operator-caf-inbox", "STOP", 0, 5, 4.5)
    assert caf["partitions"] == [{"topic": "referrals", "partition": 0, "committed_offset": 2, "end_offset": 7,
                                  "lag_records": 5, "lag_seconds": 4.5, "status": "STOP",
                                  "reason": "no member reads it and records wait"}]
    assert body["ends"] == [{"topic": "referrals", "partition": 0, "end_offset": 7}]
    assert body["sampled_at"] == 5.0 and body["window"] == 3


async def test_healthz_and_metrics_need_no_token(app_with_lag: httpx.AsyncClient) -> None:
    async with app_with_lag as web:
        health = await web.get("/healthz")
        metrics = await web.get("/metrics")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")


async def test_healthz_is_503_with_the_reason_when_sampling_fails() -> None:
    app = create_app(OpsSettings(RELAIS_ENV="test", RELAIS_TOKEN_JWKS_URL=JWKS_URL))  # type: ignore[call-arg]
    monitor = LagMonitor(FakeOffsets(RuntimeError("cannot reach the broker")), interval_s=10, window=3)
    await monitor.sample()
    app.state.lag_monitor = monitor
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ops") as web:
        response = await web.get("/healthz")
        alive, ready = await web.get("/livez"), await web.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unhealthy",
                               "reason": "no sampling succeeded yet: cannot reach the broker"}
    # The orchestrator leaves it running and routed: it is the one telling that the broker is away.
    assert alive.status_code == 200 and ready.status_code == 200


# --------------------------------------------------------------------------- settings

def test_settings_defaults_and_production(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RELAIS_ENV", "RELAIS_TOKEN_JWKS_URL", "RELAIS_DATA_KEYS_FILE", "RELAIS_LAG_INTERVAL_S",
                 "RELAIS_LAG_WINDOW", "RELAIS_LAG_IGNORE_GROUPS", "RELAIS_OPS_PORT"):
        monkeypatch.delenv(name, raising=False)
    settings = OpsSettings()  # type: ignore[call-arg]
    assert (settings.lag_interval_s, settings.lag_window, settings.port) == (10.0, 10, 8004)
    assert settings.ignore_groups is not None and settings.ignore_groups.search("relais-sites-broker-marker")
    assert not settings.ignore_groups.search("relais-referral-outboxes")
    with pytest.raises(ValueError, match="RELAIS_TOKEN_JWKS_URL must be set"):
        OpsSettings(RELAIS_ENV="production")  # type: ignore[call-arg]
    jwks = "https://relais.example/.well-known/jwks.json"
    # The console's session cookie is signed with the service's own keys...
    with pytest.raises(ValueError, match="RELAIS_TOKEN_KEYS_FILE must be set"):
        OpsSettings(RELAIS_ENV="production", RELAIS_TOKEN_JWKS_URL=jwks)  # type: ignore[call-arg]
    # ... but no personal data here: no data keys required.
    OpsSettings(RELAIS_ENV="production", RELAIS_TOKEN_JWKS_URL=jwks,  # type: ignore[call-arg]
                RELAIS_TOKEN_KEYS_FILE="/etc/relais/token-keys/keys.json")
    with pytest.raises(ValueError, match="RELAIS_LAG_IGNORE_GROUPS"):
        OpsSettings(RELAIS_LAG_IGNORE_GROUPS="(")  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        OpsSettings(RELAIS_LAG_WINDOW=1)  # type: ignore[call-arg]


async def test_a_sampling_that_hangs_is_given_up_as_a_failure() -> None:
    class Hanging:
        async def observe(self) -> Observation:
            await asyncio.Event().wait()
            raise AssertionError("never")

    monitor = LagMonitor(Hanging(), interval_s=10, window=3)
    monitor.sampling_timeout_s = 0.05
    await monitor.sample()
    assert monitor.health.last_error == "the broker did not answer within 0.05 s"
    assert monitor.updated.is_set()

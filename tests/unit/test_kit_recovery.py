"""Losing the broker: how a service tells that the broker lost what it published, how
far back it re-publishes, and which rows an ops re-publication selects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from relais_kit.recovery import (
    Seen,
    State,
    Stored,
    fitting_replication_factor,
    new_marker,
    republish_window,
    verdict,
)
from relais_kit.republish import Selection, SelectionError
from relais_kit.settings import REPO_ROOT
from relais_kit.topics import load_topics

TOPICS = load_topics(REPO_ROOT / "deploy" / "topics.yaml")
STORED = Stored(marker=42, topic="referrals", cluster_id="tansu_cluster")


def test_the_same_marker_on_the_same_cluster_is_an_intact_broker() -> None:
    assert verdict(STORED, Seen("tansu_cluster", 42)).state is State.INTACT


@pytest.mark.parametrize(("seen", "reason"), [
    (Seen("tansu_cluster", None), "marker is gone"),
    (Seen("tansu_cluster", 41), "another marker"),
    (Seen("rebuilt-cluster", 42), "cluster id changed"),
])
def test_a_broker_without_our_marker_or_of_another_cluster_has_lost_what_we_published(
        seen: Seen, reason: str) -> None:
    found = verdict(STORED, seen)
    assert found.state is State.LOST
    assert reason in found.reason


def test_a_constant_cluster_id_alone_does_not_hide_a_lost_broker() -> None:
    """tansu's cluster id is a flag that stays the same across restarts."""
    assert verdict(STORED, Seen(STORED.cluster_id, None)).state is State.LOST


def test_no_marker_recorded_yet_is_a_first_meeting_not_a_loss() -> None:
    """A new database has published nothing to another broker: nothing to re-publish."""
    assert verdict(None, Seen("tansu_cluster", 42)).state is State.NEW
    assert verdict(None, Seen("tansu_cluster", None)).state is State.NEW


def test_markers_are_positive_and_differ() -> None:
    markers = {new_marker() for _ in range(100)}
    assert len(markers) == 100
    assert all(0 < m < 2**63 for m in markers)


def test_the_window_is_the_longest_retention_of_the_service_topics() -> None:
    assert republish_window(TOPICS, ["referrals", "operator.caf.inbox"], outbox_days=30) == timedelta(days=30)
    # privacy keeps 7 days: a service writing only there needs no more.
    assert republish_window(TOPICS, ["privacy"], outbox_days=30) == timedelta(days=7)


def test_the_window_never_exceeds_what_the_outbox_keeps_nor_the_override() -> None:
    assert republish_window(TOPICS, ["referrals"], outbox_days=10) == timedelta(days=10)
    assert republish_window(TOPICS, ["referrals"], outbox_days=30, override_days=0.5) == timedelta(hours=12)
    # a dead-letter topic's 90 days are bounded by the outbox's 30
    assert republish_window(TOPICS, ["referrals.dlq"], outbox_days=30) == timedelta(days=30)


def test_a_single_broker_gets_a_replication_factor_it_can_honour() -> None:
    assert fitting_replication_factor(TOPICS, 1) == 1
    assert fitting_replication_factor(TOPICS, 3) is None
    assert fitting_replication_factor(TOPICS, 0) is None


def test_a_selection_by_time_and_referral_is_parameterised() -> None:
    since = datetime(2026, 12, 1, 8, tzinfo=UTC)
    attack = "x' OR '1'='1"
    where, args = Selection(since=since, until=since + timedelta(hours=1), subject=attack,
                            topics=("referrals",)).where()
    assert attack not in where
    assert args == [since, since + timedelta(hours=1), attack, ["referrals"]]
    assert where.startswith("published_at IS NOT NULL")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "say what to re-publish"),
    ({"topics": ("referrals",)}, "say what to re-publish"),
    ({"since": datetime(2026, 12, 1, 8)}, "time zone"),
    ({"since": datetime(2026, 12, 1, 9, tzinfo=UTC), "until": datetime(2026, 12, 1, 8, tzinfo=UTC)},
     "--until must come after --since"),
])
def test_a_vague_or_wrong_selection_is_refused_with_a_reason(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SelectionError, match=message):
        Selection(**kwargs)

"""The gauges of referrals waiting on each operator, counted from a fake of the query:
every operator has its series (0 when nothing waits), an age only when something is
unacknowledged, and an operator seen once goes back to 0 rather than keeping a stale
figure."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from relais_referral.domain.inboxes import InboxFigures, per_operator
from relais_referral.service_layer.inbox_gauges import InboxGauges

# Operator codes of these tests alone: the registry is the process's.
KNOWN = ("unit-caf", "unit-ants", "unit-justice")


def sample(name: str, operator: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"operator": operator})


def gauges(*operators: str) -> dict[str, tuple[float | None, ...]]:
    return {o: (sample("relais_referrals_overdue", o),
                sample("relais_operator_inbox_unacknowledged_referrals", o),
                sample("relais_operator_inbox_oldest_unacknowledged_age_seconds", o)) for o in operators}


class FakeCount:
    """What `store.awaiting_operators` would find, set by the test."""

    def __init__(self) -> None:
        self.found: list[InboxFigures] = []
        self.calls = 0

    async def __call__(self) -> list[InboxFigures]:
        self.calls += 1
        return list(self.found)


def test_every_known_operator_gets_zeros_and_others_are_kept():
    figures = per_operator(["caf", "ants"], [InboxFigures("crous", 1, 2, 30.0)])
    assert list(figures) == ["ants", "caf", "crous"]
    assert figures["caf"] == InboxFigures("caf", 0, 0, 0.0)
    assert figures["crous"] == InboxFigures("crous", 1, 2, 30.0)


def test_the_age_is_zero_without_unacknowledged_referrals_and_never_negative():
    figures = per_operator([], [InboxFigures("caf", 3, 0, 120.0), InboxFigures("ants", 0, 1, -0.4)])
    assert figures["caf"].oldest_unacknowledged_age_s == 0.0 and figures["caf"].overdue == 3
    assert figures["ants"].oldest_unacknowledged_age_s == 0.0 and figures["ants"].unacknowledged == 1


async def test_the_gauges_show_the_last_count_for_every_operator():
    count = FakeCount()
    watch = InboxGauges(count, KNOWN)
    await watch.refresh()
    assert gauges(*KNOWN) == {o: (0.0, 0.0, 0.0) for o in KNOWN}

    count.found = [InboxFigures("unit-caf", overdue=1, unacknowledged=4, oldest_unacknowledged_age_s=7260.5),
                   InboxFigures("unit-ants", overdue=2, unacknowledged=0, oldest_unacknowledged_age_s=0.0),
                   InboxFigures("unit-gone", overdue=0, unacknowledged=1, oldest_unacknowledged_age_s=5.0)]
    await watch.refresh()
    assert gauges(*KNOWN, "unit-gone") == {"unit-caf": (1.0, 4.0, 7260.5), "unit-ants": (2.0, 0.0, 0.0),
                                           "unit-justice": (0.0, 0.0, 0.0), "unit-gone": (0.0, 1.0, 5.0)}

    # Everything acknowledged and answered: back to 0, the operator outside the list too.
    count.found = []
    await watch.refresh()
    assert gauges(*KNOWN, "unit-gone") == {o: (0.0, 0.0, 0.0) for o in (*KNOWN, "unit-gone")}
    assert count.calls == 3  # one count per refresh, none at the scrape


async def test_a_failed_count_keeps_the_last_figures_and_ends_the_loop_for_the_runtime_to_restart():
    class DatabaseAway(Exception):
        pass

    async def away() -> list[InboxFigures]:
        raise DatabaseAway

    count = FakeCount()
    count.found = [InboxFigures("unit-cnav", overdue=0, unacknowledged=2, oldest_unacknowledged_age_s=60.0)]
    await InboxGauges(count, ["unit-cnav"]).refresh()
    with pytest.raises(DatabaseAway):
        await InboxGauges(away, ["unit-cnav"]).run(every_s=0.01)
    assert gauges("unit-cnav") == {"unit-cnav": (0.0, 2.0, 60.0)}

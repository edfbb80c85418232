"""Bad input everywhere, for the referral domain: any sequence of moves by any actor
follows RULES or is refused naming the current status; closed and cancelled are
final; deadlines land on working days, grow with the days and come after the request."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from relais_referral.domain.deadlines import PARIS, add_working_days, due_at, is_working_day
from relais_referral.domain.lifecycle import (
    OPEN,
    RULES,
    Actor,
    ForbiddenTransition,
    Move,
    Status,
    next_status,
)

PROFILE = settings(max_examples=300, deadline=None, derandomize=True)
FINAL = {Status.CLOSED, Status.CANCELLED}
STEPS = st.lists(st.tuples(st.sampled_from(Move), st.sampled_from(Actor)), max_size=30)


def _check_one(current: Status, move: Move, actor: Actor) -> Status:
    """Applies one move, checking it against RULES; returns the status after it."""
    allowed_actor, starts, target = RULES[move]
    try:
        after = next_status(current, move, actor)
    except ForbiddenTransition as exc:
        assert actor != allowed_actor or current not in starts, (current, move, actor)
        assert (exc.current, exc.move, exc.actor) == (current, move, actor)
        assert f"current status is {current.value}" in str(exc)
        assert move.value in str(exc)
        return current
    assert actor == allowed_actor and current in starts, (current, move, actor)
    assert after == target
    return after


@PROFILE
@given(start=st.sampled_from(Status), steps=STEPS)
def test_any_sequence_follows_the_rules_or_names_the_current_status(start: Status,
                                                                    steps: list[tuple[Move, Actor]]) -> None:
    current = start
    for move, actor in steps:
        before = current
        current = _check_one(current, move, actor)
        if before in FINAL:
            assert current == before


@PROFILE
@given(final=st.sampled_from(sorted(FINAL)), steps=STEPS)
def test_closed_and_cancelled_are_final(final: Status, steps: list[tuple[Move, Actor]]) -> None:
    for move, actor in steps:
        try:
            next_status(final, move, actor)
        except ForbiddenTransition as exc:
            assert exc.current == final and str(exc).endswith(f"current status is {final.value}")
        else:
            raise AssertionError(f"{final} referral moved by {move} from {actor}")


def _reachable(start: Status) -> set[Status]:
    reached, frontier = {start}, [start]
    while frontier:
        current = frontier.pop()
        for move, (actor, starts, _) in RULES.items():
            if current in starts and (target := next_status(current, move, actor)) not in reached:
                reached.add(target)
                frontier.append(target)
    return reached


def test_every_status_is_reached_from_requested_and_every_referral_can_end() -> None:
    assert _reachable(Status.REQUESTED) == set(Status)
    for status in Status:
        assert _reachable(status) & FINAL, status
    assert all(status in RULES[Move.CANCEL][1] for status in OPEN)


class ReferralLife(RuleBasedStateMachine):
    """A referral driven by random moves from random actors; the model is RULES."""

    def __init__(self) -> None:
        super().__init__()
        self.status = Status.REQUESTED
        self.history: list[Status] = [Status.REQUESTED]

    @rule(move=st.sampled_from(Move), actor=st.sampled_from(Actor))
    def make_a_move(self, move: Move, actor: Actor) -> None:
        self.status = _check_one(self.status, move, actor)
        if self.status != self.history[-1]:
            self.history.append(self.status)

    @invariant()
    def final_statuses_stay_final(self) -> None:
        for i, status in enumerate(self.history):
            if status in FINAL:
                assert i == len(self.history) - 1, self.history

    @invariant()
    def requested_is_only_the_start(self) -> None:
        assert Status.REQUESTED not in self.history[1:]


ReferralLife.TestCase.settings = settings(max_examples=150, stateful_step_count=25, deadline=None,
                                          derandomize=True)
TestReferralLife = ReferralLife.TestCase


# --- deadlines ----------------------------------------------------------------------

DAYS = st.dates(min_value=date(2020, 1, 1), max_value=date(2035, 12, 31))
WORKING_DAYS = st.integers(min_value=1, max_value=60)
ZONES = st.sampled_from([UTC, PARIS, timezone(timedelta(hours=-10)), timezone(timedelta(hours=14)),
                         timezone(timedelta(hours=5, minutes=30))])
REQUEST_TIMES = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31),
                             timezones=ZONES)


def _working_days_between(start: date, end: date) -> int:
    """Working days after `start`, up to and including `end`."""
    return sum(is_working_day(start + timedelta(days=i)) for i in range(1, (end - start).days + 1))


@PROFILE
@given(start=DAYS, days=WORKING_DAYS)
def test_add_working_days_lands_on_the_nth_working_day(start: date, days: int) -> None:
    end = add_working_days(start, days)
    assert end > start
    assert is_working_day(end)
    assert end.weekday() < 5
    assert _working_days_between(start, end) == days


@PROFILE
@given(start=DAYS, days=st.integers(min_value=0, max_value=60), later=st.integers(min_value=0, max_value=40))
def test_add_working_days_is_monotonic(start: date, days: int, later: int) -> None:
    assert add_working_days(start, days + 1) > add_working_days(start, days)
    assert add_working_days(start + timedelta(days=later), days) >= add_working_days(start, days)
    assert add_working_days(start, 0) == start


@PROFILE
@given(requested_at=REQUEST_TIMES, days=WORKING_DAYS)
def test_due_at_is_the_close_of_a_working_day_after_the_request(requested_at: datetime, days: int) -> None:
    due = due_at(requested_at, days)
    assert due > requested_at
    local = due.astimezone(PARIS)
    assert (local.hour, local.minute) == (18, 0)
    assert is_working_day(local.date())
    assert _working_days_between(requested_at.astimezone(PARIS).date(), local.date()) == days
    assert due_at(requested_at, days + 1) > due

"""The desk's case state machine: which expert action is allowed in which status, in
step with the platform's lifecycle, with a clear French refusal otherwise."""

from __future__ import annotations

import pytest

from relais_desk.domain.cases import (
    ALLOWED,
    CLOSED,
    Action,
    NotAllowed,
    Status,
    after,
    after_info_provided,
    allowed_actions,
)
from relais_referral.domain.lifecycle import Actor, ForbiddenTransition, Move, next_status
from relais_referral.domain.lifecycle import Status as Platform

EXPECTED = {
    Status.NEW: [Action.ACKNOWLEDGE, Action.REQUEST_INFO, Action.ANSWER, Action.REJECT],
    Status.ACKNOWLEDGED: [Action.REQUEST_INFO, Action.ANSWER, Action.REJECT],
    Status.INFO_REQUESTED: [Action.ANSWER, Action.REJECT],
    Status.INFO_RECEIVED: [Action.REQUEST_INFO, Action.ANSWER, Action.REJECT],
    Status.ANSWERED: [],
    Status.REJECTED: [],
    Status.CANCELLED: [],
}


@pytest.mark.parametrize("status", list(Status))
def test_allowed_actions_per_status(status: Status) -> None:
    assert allowed_actions(status) == EXPECTED[status]


@pytest.mark.parametrize(("action", "target"), [
    (Action.ACKNOWLEDGE, Status.ACKNOWLEDGED), (Action.REQUEST_INFO, Status.INFO_REQUESTED),
    (Action.ANSWER, Status.ANSWERED), (Action.REJECT, Status.REJECTED)])
def test_an_allowed_action_leads_to_its_status(action: Action, target: Status) -> None:
    assert after(action, Status.NEW) == target


@pytest.mark.parametrize("action", list(Action))
def test_nothing_is_possible_on_a_cancelled_case(action: Action) -> None:
    with pytest.raises(NotAllowed) as refused:
        after(action, Status.CANCELLED)
    assert "annulé" in str(refused.value)
    assert str(refused.value).startswith("Impossible de ")


def test_the_refusal_says_why_in_french() -> None:
    with pytest.raises(NotAllowed, match="déjà pris en charge"):
        after(Action.ACKNOWLEDGE, Status.ACKNOWLEDGED)
    with pytest.raises(NotAllowed, match="une réponse a déjà été envoyée"):
        after(Action.ANSWER, Status.ANSWERED)
    with pytest.raises(NotAllowed, match="pas encore arrivée"):
        after(Action.REQUEST_INFO, Status.INFO_REQUESTED)


def test_information_from_the_adviser_reopens_an_open_case_only() -> None:
    for status in set(Status) - CLOSED:
        assert after_info_provided(status) == Status.INFO_RECEIVED
    for status in CLOSED:
        assert after_info_provided(status) == status


# The desk's statuses as the platform sees the referral.
AS_PLATFORM = {Status.NEW: Platform.ROUTED, Status.ACKNOWLEDGED: Platform.ACKNOWLEDGED,
               Status.INFO_REQUESTED: Platform.INFO_REQUESTED, Status.INFO_RECEIVED: Platform.ACKNOWLEDGED,
               Status.ANSWERED: Platform.ANSWERED, Status.REJECTED: Platform.REJECTED,
               Status.CANCELLED: Platform.CANCELLED}
MOVES = {Action.ACKNOWLEDGE: Move.ACKNOWLEDGE, Action.REQUEST_INFO: Move.REQUEST_INFO,
         Action.ANSWER: Move.ANSWER, Action.REJECT: Move.REJECT}


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("status", list(Status))
def test_the_desk_allows_exactly_what_the_platform_accepts(action: Action, status: Status) -> None:
    try:
        next_status(AS_PLATFORM[status], MOVES[action], Actor.OPERATOR)
        platform_accepts = True
    except ForbiddenTransition:
        platform_accepts = False
    assert (status in ALLOWED[action]) == platform_accepts

import pytest

from relais_referral.domain.lifecycle import (
    OPEN,
    RULES,
    Actor,
    ForbiddenTransition,
    Move,
    Status,
    next_status,
)

ALLOWED = [
    (Status.REQUESTED, Move.ROUTE, Actor.PLATFORM, Status.ROUTED),
    (Status.ROUTED, Move.ACKNOWLEDGE, Actor.OPERATOR, Status.ACKNOWLEDGED),
    (Status.ROUTED, Move.ANSWER, Actor.OPERATOR, Status.ANSWERED),
    (Status.ACKNOWLEDGED, Move.ANSWER, Actor.OPERATOR, Status.ANSWERED),
    (Status.ACKNOWLEDGED, Move.REQUEST_INFO, Actor.OPERATOR, Status.INFO_REQUESTED),
    (Status.INFO_REQUESTED, Move.PROVIDE_INFO, Actor.ADVISER, Status.ACKNOWLEDGED),
    (Status.ROUTED, Move.REJECT, Actor.OPERATOR, Status.REJECTED),
    (Status.ANSWERED, Move.CLOSE, Actor.ADVISER, Status.CLOSED),
    (Status.REJECTED, Move.CLOSE, Actor.ADVISER, Status.CLOSED),
    (Status.ACKNOWLEDGED, Move.CANCEL, Actor.ADVISER, Status.CANCELLED),
]


@pytest.mark.parametrize(("current", "move", "actor", "expected"), ALLOWED)
def test_allowed_moves(current, move, actor, expected):
    assert next_status(current, move, actor) is expected


def test_every_other_move_is_refused_with_the_current_status():
    refused = 0
    for move, (actor, starts, _) in RULES.items():
        for current in Status:
            for who in Actor:
                if who == actor and current in starts:
                    continue
                with pytest.raises(ForbiddenTransition) as caught:
                    next_status(current, move, who)
                assert current.value in str(caught.value)
                refused += 1
    assert refused > 100


def test_only_the_operator_answers():
    with pytest.raises(ForbiddenTransition, match="only the operator"):
        next_status(Status.ACKNOWLEDGED, Move.ANSWER, Actor.ADVISER)


def test_answered_cannot_be_answered_again():
    with pytest.raises(ForbiddenTransition, match="a answered referral cannot be answered"):
        next_status(Status.ANSWERED, Move.ANSWER, Actor.OPERATOR)


def test_closed_and_cancelled_are_final():
    for final in (Status.CLOSED, Status.CANCELLED):
        assert final not in OPEN
        for move, (actor, _, _) in RULES.items():
            with pytest.raises(ForbiddenTransition):
                next_status(final, move, actor)

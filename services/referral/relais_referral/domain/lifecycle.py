"""The referral lifecycle of the contract: which move is allowed from which status,
and who may make it. Pure: no I/O."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    REQUESTED = "requested"
    ROUTED = "routed"
    ACKNOWLEDGED = "acknowledged"
    INFO_REQUESTED = "info_requested"
    REJECTED = "rejected"
    ANSWERED = "answered"
    CLOSED = "closed"
    CANCELLED = "cancelled"


class Actor(StrEnum):
    PLATFORM = "platform"
    OPERATOR = "operator"
    ADVISER = "adviser"


class Move(StrEnum):
    """Each move is named by the lifecycle event it produces on `referrals`."""

    ROUTE = "routed"
    ACKNOWLEDGE = "acknowledged"
    REQUEST_INFO = "info_requested"
    PROVIDE_INFO = "info_provided"
    REJECT = "rejected"
    ANSWER = "answered"
    CLOSE = "closed"
    CANCEL = "cancelled"


OPEN = frozenset({Status.REQUESTED, Status.ROUTED, Status.ACKNOWLEDGED, Status.INFO_REQUESTED})

# move → (who may make it, the statuses it may start from, the status it leads to)
RULES: dict[Move, tuple[Actor, frozenset[Status], Status]] = {
    Move.ROUTE: (Actor.PLATFORM, frozenset({Status.REQUESTED}), Status.ROUTED),
    Move.ACKNOWLEDGE: (Actor.OPERATOR, frozenset({Status.ROUTED}), Status.ACKNOWLEDGED),
    Move.REQUEST_INFO: (Actor.OPERATOR, frozenset({Status.ROUTED, Status.ACKNOWLEDGED}),
                        Status.INFO_REQUESTED),
    Move.PROVIDE_INFO: (Actor.ADVISER, frozenset({Status.INFO_REQUESTED}), Status.ACKNOWLEDGED),
    Move.REJECT: (Actor.OPERATOR, frozenset({Status.ROUTED, Status.ACKNOWLEDGED, Status.INFO_REQUESTED}),
                  Status.REJECTED),
    Move.ANSWER: (Actor.OPERATOR, frozenset({Status.ROUTED, Status.ACKNOWLEDGED, Status.INFO_REQUESTED}),
                  Status.ANSWERED),
    Move.CLOSE: (Actor.ADVISER, frozenset({Status.ANSWERED, Status.REJECTED}), Status.CLOSED),
    Move.CANCEL: (Actor.ADVISER, OPEN, Status.CANCELLED),
}


class ForbiddenTransition(Exception):
    def __init__(self, move: Move, actor: Actor, current: Status) -> None:
        self.move, self.actor, self.current = move, actor, current
        allowed_actor, starts, _ = RULES[move]
        if actor != allowed_actor:
            why = f"only the {allowed_actor.value} may make a referral {move.value}"
        else:
            why = (f"a {current.value} referral cannot be {move.value} "
                   f"(allowed from: {', '.join(sorted(s.value for s in starts))})")
        super().__init__(f"{why}; current status is {current.value}")


def next_status(current: Status, move: Move, actor: Actor) -> Status:
    """The status after `move` by `actor`, or ForbiddenTransition saying why not."""
    allowed_actor, starts, target = RULES[move]
    if actor != allowed_actor or current not in starts:
        raise ForbiddenTransition(move, actor, current)
    return target

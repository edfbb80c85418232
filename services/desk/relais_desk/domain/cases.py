"""A case on the desk: one referral routed to this operator, seen from the operator's
side. Which expert action is allowed in which status, in the same terms as the
platform's lifecycle (an action the platform would refuse is refused here first).
Pure: no I/O."""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    NEW = "new"                        # routed to us, nobody has touched it yet
    ACKNOWLEDGED = "acknowledged"      # an expert took it in charge
    INFO_REQUESTED = "info_requested"  # waiting for the adviser's information
    INFO_RECEIVED = "info_received"    # the adviser answered our question
    ANSWERED = "answered"
    REJECTED = "rejected"
    CANCELLED = "cancelled"            # the citizen withdrew


class Action(StrEnum):
    ACKNOWLEDGE = "acknowledge"
    REQUEST_INFO = "request_info"
    ANSWER = "answer"
    REJECT = "reject"


CLOSED = frozenset({Status.ANSWERED, Status.REJECTED, Status.CANCELLED})

# The platform: acknowledge from routed; ask from routed or acknowledged (info provided
# brings the referral back to acknowledged); answer and reject from any open status.
ALLOWED: dict[Action, frozenset[Status]] = {
    Action.ACKNOWLEDGE: frozenset({Status.NEW}),
    Action.REQUEST_INFO: frozenset({Status.NEW, Status.ACKNOWLEDGED, Status.INFO_RECEIVED}),
    Action.ANSWER: frozenset({Status.NEW, Status.ACKNOWLEDGED, Status.INFO_REQUESTED, Status.INFO_RECEIVED}),
    Action.REJECT: frozenset({Status.NEW, Status.ACKNOWLEDGED, Status.INFO_REQUESTED, Status.INFO_RECEIVED}),
}

AFTER: dict[Action, Status] = {
    Action.ACKNOWLEDGE: Status.ACKNOWLEDGED,
    Action.REQUEST_INFO: Status.INFO_REQUESTED,
    Action.ANSWER: Status.ANSWERED,
    Action.REJECT: Status.REJECTED,
}

STATUS_LABELS: dict[Status, str] = {
    Status.NEW: "Nouveau",
    Status.ACKNOWLEDGED: "Pris en charge",
    Status.INFO_REQUESTED: "Information demandée",
    Status.INFO_RECEIVED: "Information reçue",
    Status.ANSWERED: "Répondu",
    Status.REJECTED: "Refusé",
    Status.CANCELLED: "Annulé",
}

ACTION_LABELS: dict[Action, str] = {
    Action.ACKNOWLEDGE: "accuser réception de ce dossier",
    Action.REQUEST_INFO: "demander une information",
    Action.ANSWER: "répondre",
    Action.REJECT: "refuser ce dossier",
}

_WHY: dict[Status, str] = {
    Status.CANCELLED: "la personne a retiré sa demande : le dossier est annulé",
    Status.ANSWERED: "une réponse a déjà été envoyée",
    Status.REJECTED: "le dossier a déjà été refusé",
    Status.INFO_REQUESTED: "une information a été demandée au conseiller et sa réponse n'est pas encore arrivée",
    Status.ACKNOWLEDGED: "le dossier est déjà pris en charge",
    Status.INFO_RECEIVED: "le dossier est déjà pris en charge",
    Status.NEW: "le dossier n'est pas encore pris en charge",
}


class NotAllowed(Exception):
    """An action the case's status does not allow; the message is for the expert."""

    def __init__(self, action: Action, status: Status) -> None:
        self.action, self.status = action, status
        super().__init__(f"Impossible de {ACTION_LABELS[action]} : {_WHY[status]} "
                         f"(statut : {STATUS_LABELS[status].lower()}).")


def allowed_actions(status: Status) -> list[Action]:
    return [action for action in Action if status in ALLOWED[action]]


def after(action: Action, status: Status) -> Status:
    """The case's status after `action`, or NotAllowed saying why not."""
    if status not in ALLOWED[action]:
        raise NotAllowed(action, status)
    return AFTER[action]


def after_info_provided(status: Status) -> Status:
    """The adviser's information reopens the work on an open case; a closed one only
    gets it in its timeline."""
    return status if status in CLOSED else Status.INFO_RECEIVED

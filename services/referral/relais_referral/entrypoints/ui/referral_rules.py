"""What a referral's page says and checks, without I/O: the French labels of the
timeline, the moves an adviser may make from the current status (domain/lifecycle.py
RULES), why a move is refused, and the fields of its forms."""

from __future__ import annotations

import re
from collections.abc import Mapping

from relais_referral.domain.lifecycle import RULES, Move, Status
from relais_referral.entrypoints.ui.pages import STATUS_LABELS
from relais_referral.service_layer.context import Context

EVENT_LABELS: dict[str, str] = {
    "requested": "Demande envoyée",
    "routed": "Transmise à l'opérateur",
    "acknowledged": "Prise en charge par l'opérateur",
    "info_requested": "L'opérateur demande une information",
    "info_provided": "Information transmise à l'opérateur",
    "rejected": "Refusée par l'opérateur",
    "answered": "Réponse de l'opérateur",
    "closed": "Demande clôturée",
    "cancelled": "Demande annulée",
    "overdue": "Délai de réponse dépassé",
    "notification.sent": "Message envoyé à la personne",
    "notification.failed": "La personne n'a pas pu être informée",
    "notification.delivered": "SMS reçu par la personne",
}
CLOSE_OUTCOMES: dict[str, str] = {
    "resolved": "Résolue", "partially_resolved": "Partiellement résolue",
    "not_resolved": "Non résolue", "citizen_unreachable": "Personne injoignable",
    "rerouted": "Réorientée vers un autre opérateur",
}
ANSWER_OUTCOMES: dict[str, str] = {
    "resolved": "Demande traitée", "appointment_offered": "Rendez-vous proposé",
    "documents_needed": "Pièces à fournir", "refused": "Demande refusée", "other": "Autre",
}
REASON_CODES: dict[str, str] = {
    "not_competent": "Ne relève pas de sa compétence", "duplicate": "Doublon d'une demande déjà reçue",
    "incomplete": "Demande incomplète", "out_of_scope": "Hors du champ de la démarche", "other": "Autre motif",
}
CHANNELS: dict[str, str] = {"email": "par courriel", "sms": "par SMS", "letter": "par courrier"}
# The moves of this page: URL slug → lifecycle move, what is said once done, why refused.
MOVES: dict[str, Move] = {"complement": Move.PROVIDE_INFO, "reorienter": Move.CLOSE,
                          "cloturer": Move.CLOSE, "annuler": Move.CANCEL}
DONE: dict[str, str] = {
    "complement": "Votre réponse a été transmise à l'opérateur.",
    "annuler": "La demande est annulée ; l'opérateur en est informé.",
    "cloturer": "La demande est clôturée.",
    "reorienter": "La demande refusée est réorientée : voici la nouvelle demande, envoyée à l'opérateur.",
}
WHY_REFUSED: dict[str, str] = {
    "complement": "On ne répond à l'opérateur que lorsqu'il a demandé une information.",
    "reorienter": "Seule une demande refusée par l'opérateur peut être réorientée.",
    "cloturer": "Une demande se clôture après la réponse ou le refus de l'opérateur.",
    "annuler": "Seule une demande encore en cours peut être annulée.",
}
AWAITING = frozenset({Status.ROUTED, Status.ACKNOWLEDGED, Status.INFO_REQUESTED})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def allowed_actions(role: str, status: Status) -> list[str]:
    """The slugs of the moves an adviser may make now; none for supervisors and ops."""
    if role != "adviser":
        return []
    found = [slug for slug, move in MOVES.items() if status in RULES[move][1] and slug != "reorienter"]
    if status is Status.REJECTED:
        found.insert(0, "reorienter")
    return found


def refusal(slug: str, current: str) -> str:
    label = STATUS_LABELS.get(current, current)
    return f"{WHY_REFUSED[slug]} Cette demande est maintenant « {label} »."


def actor_label(actor: str, names: Mapping[str, str], operators: Mapping[str, str]) -> str:
    kind, _, who = actor.partition(":")
    if kind == "adviser":
        return names.get(actor, who)
    if kind == "operator":
        return operators.get(who, who)
    return "Relais"


def text(form: Mapping[str, str], name: str, errors: dict[str, str], *, max_length: int,
         missing: str | None = None) -> str | None:
    """A free text field: trimmed; `missing` is the message when it is required and empty."""
    value = (form.get(name) or "").replace("\r\n", "\n").strip()
    if not value:
        if missing:
            errors[name] = missing
        return None
    if _CONTROL.search(value):
        errors[name] = "Ce texte contient un caractère non autorisé."
    elif len(value) > max_length:
        errors[name] = f"{max_length} caractères au plus ({len(value)} saisis)."
    return value


def check_reroute(form: Mapping[str, str], ctx: Context) -> tuple[dict[str, str], dict[str, str]]:
    """The re-routing form: (values, errors)."""
    errors: dict[str, str] = {}
    operator, procedure = form.get("operator", ""), form.get("procedure", "")
    if ctx.catalogue.operator(operator) is None:
        errors["operator"] = "Choisissez l'opérateur vers lequel réorienter la demande."
    elif ctx.catalogue.procedure(operator, procedure) is None:
        errors["procedure"] = "Choisissez une démarche de l'opérateur choisi."
    summary = text(form, "summary", errors, max_length=4000,
                   missing="Résumez la demande pour le nouvel opérateur.")
    if form.get("consent") != "oui":
        errors["consent"] = "La personne doit accepter que sa demande soit transmise à cet opérateur."
    return {"operator": operator, "procedure": procedure, "summary": summary or "",
            "consent": form.get("consent", "")}, errors

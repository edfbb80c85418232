"""The expert's forms: each field checked (a French message per field, shown next to
it) and turned into the data of the operator event, in the terms of the contract
(`schemas/events/operator.*.v1.json`). Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")

OUTCOMES: dict[str, str] = {
    "resolved": "Demande traitée",
    "appointment_offered": "Rendez-vous proposé",
    "documents_needed": "Pièces à fournir",
    "refused": "Demande refusée",
    "other": "Autre",
}
REASON_CODES: dict[str, str] = {
    "not_competent": "Ne relève pas de notre compétence",
    "duplicate": "Doublon d'une demande déjà reçue",
    "incomplete": "Demande incomplète",
    "out_of_scope": "Hors du champ de la démarche",
    "other": "Autre motif",
}
OPERATORS: dict[str, str] = {
    "la-poste": "La Poste", "caf": "CAF", "france-travail": "France Travail", "cnam": "Assurance maladie",
    "cnav": "Assurance retraite", "msa": "MSA", "dgfip": "Finances publiques (DGFiP)", "ants": "ANTS",
    "justice": "Justice", "crous": "Crous", "banque-de-france": "Banque de France",
}
# The procedures' names as an expert reads them (the referral service's catalogue says the
# same: tests/unit/test_desk_procedure_labels.py); a code not listed is shown as it is.
PROCEDURES: dict[str, str] = {
    "la-poste.compte-bancaire": "Compte La Banque Postale",
    "la-poste.reexpedition-courrier": "Réexpédition du courrier",
    "caf.prime-activite": "Prime d'activité",
    "caf.aide-logement": "Aide au logement (APL)",
    "caf.rsa": "Revenu de solidarité active",
    "france-travail.inscription": "Inscription et actualisation",
    "france-travail.indemnisation": "Indemnisation chômage",
    "cnam.carte-vitale": "Carte Vitale",
    "cnam.complementaire-sante-solidaire": "Complémentaire santé solidaire",
    "cnav.demande-retraite": "Demande de retraite",
    "msa.prestations-familiales": "Prestations familiales agricoles",
    "dgfip.declaration-revenus": "Déclaration de revenus",
    "dgfip.prelevement-source": "Prélèvement à la source",
    "ants.carte-grise.changement-adresse": "Carte grise : changement d'adresse",
    "ants.permis-conduire": "Permis de conduire",
    "ants.carte-identite": "Carte d'identité et passeport",
    "justice.casier-judiciaire": "Extrait de casier judiciaire",
    "justice.aide-juridictionnelle": "Aide juridictionnelle",
    "crous.bourse": "Bourse sur critères sociaux",
    "banque-de-france.surendettement": "Surendettement",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class Checked:
    """What a form gave: the event data when `errors` is empty."""

    data: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _text(form: Mapping[str, str], name: str, errors: dict[str, str], *, required: bool,
          max_length: int, label: str) -> str | None:
    value = (form.get(name) or "").replace("\r\n", "\n").strip()
    if not value:
        if required:
            errors[name] = f"Indiquez {label}."
        return None
    if _CONTROL.search(value):
        errors[name] = "Ce texte contient un caractère non autorisé."
    elif len(value) > max_length:
        errors[name] = f"{max_length} caractères au plus ({len(value)} saisis)."
    return value


def _lines(form: Mapping[str, str], name: str, errors: dict[str, str], *, required: bool,
           label: str) -> list[str] | None:
    text = _text(form, name, errors, required=required, max_length=50 * 501, label=label)
    if text is None or name in errors:
        return None
    items = [line.strip() for line in text.split("\n") if line.strip()]
    if len(items) > 50:
        errors[name] = f"50 pièces au plus ({len(items)} saisies)."
    elif any(len(item) > 500 for item in items):
        errors[name] = "Chaque ligne fait 500 caractères au plus."
    return items


def _choice(form: Mapping[str, str], name: str, choices: Mapping[str, str], errors: dict[str, str],
            *, required: bool, label: str) -> str | None:
    value = (form.get(name) or "").strip()
    if not value:
        if required:
            errors[name] = f"Choisissez {label}."
        return None
    if value not in choices:
        errors[name] = f"Choisissez {label} dans la liste."
        return None
    return value


def parse_local_datetime(text: str) -> datetime | None:
    """`2026-12-01T10:30` (an `<input type="datetime-local">`, Paris time) → aware time."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return parsed.replace(tzinfo=PARIS) if parsed.tzinfo is None else parsed


def _stamp(at: datetime) -> str:
    return at.isoformat(timespec="seconds")


def acknowledge(form: Mapping[str, str], *, referral_id: str, expert: str, at: datetime) -> Checked:
    errors: dict[str, str] = {}
    reference = _text(form, "case_reference", errors, required=False, max_length=100,
                      label="la référence du dossier")
    data: dict[str, Any] = {"referral_id": referral_id, "acknowledged_at": _stamp(at), "expert": expert[:200]}
    if reference:
        data["case_reference"] = reference
    return Checked(data, errors)


def request_info(form: Mapping[str, str], *, referral_id: str, at: datetime) -> Checked:
    errors: dict[str, str] = {}
    question = _text(form, "question", errors, required=True, max_length=2000, label="votre question")
    documents = _lines(form, "documents", errors, required=False, label="les pièces souhaitées")
    data: dict[str, Any] = {"referral_id": referral_id, "requested_at": _stamp(at), "question": question}
    if documents:
        data["documents"] = documents
    return Checked(data, errors)


def answer(form: Mapping[str, str], *, referral_id: str, at: datetime) -> Checked:
    errors: dict[str, str] = {}
    outcome = _choice(form, "outcome", OUTCOMES, errors, required=True, label="l'issue de la demande")
    to_citizen = _text(form, "message_to_citizen", errors, required=True, max_length=4000,
                       label="le message pour la personne")
    to_adviser = _text(form, "message_to_adviser", errors, required=True, max_length=4000,
                       label="le message pour le conseiller")
    data: dict[str, Any] = {"referral_id": referral_id, "answered_at": _stamp(at), "outcome": outcome,
                            "message_to_citizen": to_citizen, "message_to_adviser": to_adviser}
    wants_appointment = outcome == "appointment_offered"
    when_text = (form.get("appointment_at") or "").strip()
    place = _text(form, "appointment_place", errors, required=wants_appointment, max_length=500,
                  label="le lieu du rendez-vous")
    if wants_appointment:
        when = parse_local_datetime(when_text) if when_text else None
        if not when_text:
            errors["appointment_at"] = "Indiquez la date et l'heure du rendez-vous."
        elif when is None:
            errors["appointment_at"] = "Date et heure attendues au format JJ/MM/AAAA HH:MM."
        elif when < at:
            errors["appointment_at"] = "Le rendez-vous doit être dans le futur."
        if when is not None and place and not errors.keys() & {"appointment_at", "appointment_place"}:
            data["appointment"] = {"at": _stamp(when), "place": place}
    documents = _lines(form, "documents", errors, required=outcome == "documents_needed",
                       label="les pièces à fournir (une par ligne)")
    if documents and outcome == "documents_needed":
        data["documents"] = documents
    return Checked(data, errors)


def reject(form: Mapping[str, str], *, referral_id: str, at: datetime, operator: str) -> Checked:
    errors: dict[str, str] = {}
    code = _choice(form, "reason_code", REASON_CODES, errors, required=True, label="le motif du refus")
    reason = _text(form, "reason", errors, required=code == "other", max_length=1000,
                   label="la raison du refus")
    suggested = _choice(form, "suggested_operator", OPERATORS, errors, required=False,
                        label="l'organisme à solliciter")
    if suggested == operator:
        errors["suggested_operator"] = "Choisissez un autre organisme que le vôtre."
    data: dict[str, Any] = {"referral_id": referral_id, "rejected_at": _stamp(at), "reason_code": code}
    if reason:
        data["reason"] = reason
    if suggested and suggested != operator:
        data["suggested_operator"] = suggested
    return Checked(data, errors)

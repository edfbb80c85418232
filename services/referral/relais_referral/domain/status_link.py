"""The citizen's status link (issue #13 item 3): a short code, written on the receipt the
adviser hands over, that opens the page where the request stands — no account. What the
page says of each status, in plain easy-to-read French, and when a link stops working.
Pure: no I/O.

A code is 10 characters of an alphabet of 32 that has no 0, O, 1 or I (nothing to
misread on paper): 50 bits of chance, so that guessing one among a million live codes
takes about 10⁹ tries on average, far beyond the per-address limit of the page. It is
written in groups (« K7QM-9TXH-2C ») to be read aloud; a typed code is compared after
folding case, spaces and dashes (`typed_code`). Only a keyed hash of the code is stored
(the vault's blind index): the database never holds a code in clear."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"
LENGTH = 10
GROUPS = (4, 4, 2)
INDEX_KIND = "status-code"
EXPIRES_AFTER = timedelta(days=30)
PARIS = ZoneInfo("Europe/Paris")
_SEPARATORS = str.maketrans("", "", " -–—._/\u00a0\u202f\t")


def new_code() -> str:
    """A fresh code, canonical form (no dashes): LENGTH characters of ALPHABET from the
    system's cryptographic source."""
    return "".join(secrets.choice(ALPHABET) for _ in range(LENGTH))


def grouped(code: str) -> str:
    """« K7QM9TXH2C » → « K7QM-9TXH-2C », to read aloud and copy."""
    parts, start = [], 0
    for size in GROUPS:
        parts.append(code[start:start + size])
        start += size
    return "-".join(p for p in parts if p)


def typed_code(typed: str) -> str | None:
    """What a person typed, as the canonical code, or None when it cannot be one.
    Case, spaces and dashes do not matter; 0, O, 1 and I are never in a code, so a code
    that contains one was mistyped and is refused (looked up, it would be one more
    guess against the limit, for nothing)."""
    code = typed.strip().upper().translate(_SEPARATORS)
    if len(code) != LENGTH or any(c not in ALPHABET for c in code):
        return None
    return code


def expired(status: str, ended_at: datetime | None, at: datetime) -> bool:
    """A link works while the request is under way, and for EXPIRES_AFTER after it was
    closed or cancelled (then the citizen asks the counter for a new one)."""
    if status not in ("closed", "cancelled"):
        return False
    return ended_at is None or at >= ended_at + EXPIRES_AFTER


# -- what the page says -----------------------------------------------------------------------

@dataclass(frozen=True)
class Situation:
    """Where the request stands, in plain words: one sentence, what happens next, and
    what to bring (documents) when the operator asked for some."""

    sentence: str
    next_step: str
    bring: tuple[str, ...] = ()
    show_deadline: bool = False


ANSWERS = {
    "resolved": "votre demande est traitée.",
    "appointment_offered": "un rendez-vous vous est proposé.",
    "documents_needed": "des documents sont nécessaires.",
    "refused": "votre demande ne peut pas aboutir.",
    "other": "votre conseiller France Services vous explique la réponse.",
}
MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août", "septembre", "octobre",
          "novembre", "décembre")
WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")


def day_words(value: datetime | date) -> str:
    """« le 4 décembre » (the year only when it is not this one's: the caller adds it)."""
    day = value.astimezone(PARIS).date() if isinstance(value, datetime) else value
    return f"{'1er' if day.day == 1 else day.day} {MONTHS[day.month - 1]}"


def time_words(value: datetime) -> str:
    local = value.astimezone(PARIS)
    return f"{local.hour} h {local.minute:02d}" if local.minute else f"{local.hour} h"


# Each operator as the citizen says it, alone (« la CAF ») and after « à » (« à la CAF »).
OPERATOR_WORDS: dict[str, tuple[str, str]] = {
    "la-poste": ("La Poste", "à La Poste"), "caf": ("la CAF", "à la CAF"),
    "france-travail": ("France Travail", "à France Travail"),
    "cnam": ("l'Assurance Maladie", "à l'Assurance Maladie"),
    "cnav": ("l'Assurance retraite", "à l'Assurance retraite"), "msa": ("la MSA", "à la MSA"),
    "dgfip": ("les Finances publiques", "aux Finances publiques"), "ants": ("l'ANTS", "à l'ANTS"),
    "justice": ("le ministère de la Justice", "au ministère de la Justice"),
    "crous": ("le Crous", "au Crous"), "banque-de-france": ("la Banque de France", "à la Banque de France"),
}


def operator_words(code: str, name: str) -> tuple[str, str]:
    """(« la CAF », « à la CAF »); an operator not listed: its catalogue name."""
    return OPERATOR_WORDS.get(code, (name, f"à {name}"))


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _last(timeline: list[dict[str, Any]], event: str) -> dict[str, Any] | None:
    return next((e for e in reversed(timeline) if e.get("event") == event), None)


def _documents(entry: dict[str, Any] | None) -> tuple[str, ...]:
    detail = (entry or {}).get("detail") or {}
    docs = detail.get("documents") if isinstance(detail, dict) else None
    return tuple(str(d) for d in docs if isinstance(d, str) and d.strip()) if isinstance(docs, list) else ()


def situation(status: str, operator: tuple[str, str], requested_at: datetime,
              timeline: list[dict[str, Any]]) -> Situation:
    """One sentence per status. `operator`: its words (`operator_words`); the timeline
    (store.timeline's entries) gives when, what was answered and the documents asked."""
    who, to = operator
    sent = f"Votre demande a été envoyée {to} le {day_words(requested_at)}."
    if status in ("requested", "routed"):
        return Situation(sent, f"{_cap(who)} va l'étudier. Vous serez prévenu de sa réponse.", show_deadline=True)
    if status == "acknowledged":
        entry = _last(timeline, "acknowledged")
        when = day_words(entry["at"]) if entry else day_words(requested_at)
        return Situation(f"{_cap(who)} a bien reçu votre demande le {when}. Elle est en cours d'étude.",
                         "Vous serez prévenu de sa réponse.", show_deadline=True)
    if status == "info_requested":
        docs = _documents(_last(timeline, "info_requested"))
        return Situation(f"{_cap(who)} demande une information : revenez au France Services.",
                         "Votre conseiller transmettra l'information. Ensuite, "
                         f"{who} continuera l'étude de votre demande.", docs)
    if status == "answered":
        entry = _last(timeline, "answered")
        detail = (entry or {}).get("detail") or {}
        outcome = ANSWERS.get(str(detail.get("outcome")), ANSWERS["other"])
        when = day_words(entry["at"]) if entry else ""
        sentence = f"{_cap(who)} a répondu{f' le {when}' if when else ''} : {outcome}"
        appointment = detail.get("appointment") if isinstance(detail, dict) else None
        next_step = "Vous pouvez revenir au France Services si vous avez une question."
        if isinstance(appointment, dict) and appointment.get("at"):
            try:
                at = datetime.fromisoformat(str(appointment["at"]))
                next_step = f"Votre rendez-vous : le {WEEKDAYS[at.astimezone(PARIS).weekday()]} " \
                            f"{day_words(at)} à {time_words(at)}" + \
                            (f", {appointment['place']}." if appointment.get("place") else ".")
            except ValueError:
                pass
        return Situation(sentence, next_step, _documents(entry))
    if status == "rejected":
        return Situation(f"{_cap(who)} ne peut pas traiter votre demande.",
                         "Votre conseiller France Services cherche une autre solution avec vous. "
                         "Revenez le voir.")
    if status == "closed" and ((_last(timeline, "closed") or {}).get("detail") or {}).get("outcome") == "rerouted":
        return Situation("Votre demande a été envoyée à un autre organisme, plus à même d'y répondre.",
                         "Le France Services vous remet un nouveau récépissé pour la suivre.")
    if status == "closed":
        return Situation("Votre demande est terminée.",
                         "Si vous avez encore une question, revenez au France Services.")
    if status == "cancelled":
        return Situation("Votre demande a été annulée.",
                         "Si vous avez encore besoin d'aide, revenez au France Services.")
    return Situation(sent, "Vous serez prévenu de la suite.")


@dataclass(frozen=True)
class Opening:
    starts: datetime
    ends: datetime
    place: str


def next_openings(schedule: list[dict[str, Any]], place: str, at: datetime, count: int = 3,
                  days: int = 14) -> list[Opening]:
    """The next `count` slots of a site's schedule (ISO weekdays, local HH:MM) still to
    come or under way at `at`, Paris time, within `days` days. `place`: where, when a
    slot names no place of its own."""
    local = at.astimezone(PARIS)
    found: list[Opening] = []
    for offset in range(days + 1):
        day = local.date() + timedelta(days=offset)
        for slot in sorted(schedule, key=lambda s: (str(s.get("opens")), str(s.get("closes")))):
            if slot.get("weekday") != day.isoweekday():
                continue
            try:
                starts = datetime.combine(day, time.fromisoformat(str(slot["opens"])), PARIS)
                ends = datetime.combine(day, time.fromisoformat(str(slot["closes"])), PARIS)
            except (KeyError, ValueError):
                continue
            if ends > local:
                found.append(Opening(starts, ends, str(slot.get("place") or place)))
            if len(found) == count:
                return found
    return found


def opening_words(opening: Opening) -> str:
    """« mardi 8 décembre, de 9 h à 12 h »."""
    return f"{WEEKDAYS[opening.starts.weekday()]} {day_words(opening.starts)}, " \
           f"de {time_words(opening.starts)} à {time_words(opening.ends)}"

"""French wording: operators' names as a citizen knows them, dates in Europe/Paris."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

PARIS = ZoneInfo("Europe/Paris")

OPERATOR_NAMES = {
    "caf": "la CAF",
    "cnam": "l'Assurance Maladie (CPAM)",
    "france-travail": "France Travail",
    "dgfip": "la DGFiP (impôts)",
    "ants": "l'ANTS",
    "la-poste": "La Poste",
    "cnav": "l'Assurance retraite (CNAV)",
    "msa": "la MSA",
    "justice": "la Justice",
    "crous": "le Crous",
    "banque-de-france": "la Banque de France",
}

_WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_MONTHS = ("janvier", "février", "mars", "avril", "mai", "juin", "juillet", "août",
           "septembre", "octobre", "novembre", "décembre")


def operator_name(code: str) -> str:
    """`caf` → `la CAF`; an unknown code is shown as it is."""
    return OPERATOR_NAMES.get(code, code)


def capitalised(text: str) -> str:
    """`la CAF` → `La CAF`, `l'ANTS` → `L'ANTS` (only the first letter changes)."""
    return text[:1].upper() + text[1:]


def of(name: str) -> str:
    """`la CAF` → `de la CAF`, `le Crous` → `du Crous`, `l'ANTS` → `de l'ANTS`."""
    if name.startswith("le "):
        return "du " + name[3:]
    if name.startswith("les "):
        return "des " + name[4:]
    return "de " + name


def in_paris(moment: datetime) -> datetime:
    return moment.astimezone(PARIS)


def date_fr(moment: datetime) -> str:
    """`25 mars 2025` (`1er avril 2025` on the first), in Paris time."""
    local = in_paris(moment)
    day = "1er" if local.day == 1 else str(local.day)
    return f"{day} {_MONTHS[local.month - 1]} {local.year}"


def time_fr(moment: datetime) -> str:
    """`10 h 30`, `14 h` on the hour, in Paris time."""
    local = in_paris(moment)
    return f"{local.hour} h {local.minute:02d}" if local.minute else f"{local.hour} h"


def datetime_fr(moment: datetime) -> str:
    """`mardi 25 mars 2025 à 10 h 30`, in Paris time."""
    local = in_paris(moment)
    return f"{_WEEKDAYS[local.weekday()]} {date_fr(local)} à {time_fr(local)}"


def short_datetime_fr(moment: datetime) -> str:
    """`mardi 25/03 à 10h30`, for an SMS."""
    local = in_paris(moment)
    return f"{_WEEKDAYS[local.weekday()]} {local:%d/%m} à {local.hour}h{local.minute:02d}"


def short_date_fr(moment: datetime) -> str:
    """`25/03`, for an SMS."""
    return f"{in_paris(moment):%d/%m}"

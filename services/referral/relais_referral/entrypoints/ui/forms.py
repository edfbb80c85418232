"""The adviser's forms, checked field by field with a French message next to each, then
turned into the API's models (the same rules as the JSON API); and the places an adviser
may work at today. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import ValidationError

from relais_kit import numbers
from relais_referral.domain.catalogue import Catalogue
from relais_referral.domain.model import Citizen, PostalAddress
from relais_referral.entrypoints.schemas import CitizenCompletionIn, CitizenIn

_ONE_LINE = re.compile(r"^[^\x00-\x1f\x7f]*$")
_FREE_TEXT = re.compile(r"^[^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$")
_PHONE = re.compile(r"^\+?[0-9 .]{8,20}$")
_POSTCODE = re.compile(r"^\d{5}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CHANNELS = ("sms", "email", "letter", "none")
VISIT_FIELDS = ("given_name", "family_name", "birth_date", "contact_channel", "phone", "email",
                "street", "postcode", "city")
PERMANENCE_KINDS = ("mobile_permanence", "bus")


@dataclass
class Checked:
    value: Any = None
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors


def _text(form: Mapping[str, str], name: str, errors: dict[str, str], *, label: str, required: bool,
          max_length: int, one_line: bool = True) -> str | None:
    value = (form.get(name) or "").replace("\r\n", "\n").strip()
    if not value:
        if required:
            errors[name] = f"Indiquez {label}."
        return None
    if not (_ONE_LINE if one_line else _FREE_TEXT).match(value):
        errors[name] = "Ce texte contient un caractère non autorisé."
    elif len(value) > max_length:
        errors[name] = f"{max_length} caractères au plus ({len(value)} saisis)."
    return value


def _date(text: str) -> date | None:
    """A date as a date field sends it (1963-04-02), or as a French person types it
    where the browser has no date field (02/04/1963)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass
    day, _, rest = text.partition("/")
    month, _, year = rest.partition("/")
    y, m, d = numbers.bounded(year, 1000, 9999), numbers.bounded(month, 1, 12), numbers.bounded(day, 1, 31)
    if y is None or m is None or d is None:
        return None
    try:
        return date(y, m, d)
    except ValueError:  # 31/02
        return None



def check_visit(form: Mapping[str, str], today: date) -> Checked:
    """A `Citizen` from the visit form, or the errors (field name → message)."""
    errors: dict[str, str] = {}
    given = _text(form, "given_name", errors, label="le prénom", required=True, max_length=100)
    family = _text(form, "family_name", errors, label="le nom de famille", required=True, max_length=100)
    birth: date | None = None
    raw_birth = (form.get("birth_date") or "").strip()
    if raw_birth:
        birth = _date(raw_birth)
        if birth is None:
            errors["birth_date"] = "Indiquez une date de naissance comme 02/04/1963."
        else:
            if birth > today or birth.year < 1900:
                errors["birth_date"] = "Cette date de naissance n'est pas plausible."
    channel = (form.get("contact_channel") or "").strip()
    phone = email = street = postcode = city = None
    if channel not in CHANNELS:
        errors["contact_channel"] = "Choisissez comment recontacter la personne."
    if channel == "sms":
        phone = _text(form, "phone", errors, label="le numéro de téléphone portable", required=True, max_length=20)
        if phone and "phone" not in errors and not _PHONE.match(phone):
            errors["phone"] = "Indiquez un numéro de téléphone, par exemple 06 12 34 56 78."
    elif channel == "email":
        email = _text(form, "email", errors, label="l'adresse électronique", required=True, max_length=254)
        if email and "email" not in errors and not _EMAIL.match(email):
            errors["email"] = "Indiquez une adresse électronique valide, par exemple nom@exemple.fr."
    elif channel == "letter":
        street = _text(form, "street", errors, label="le numéro et la voie", required=True, max_length=200)
        postcode = _text(form, "postcode", errors, label="le code postal", required=True, max_length=5)
        if postcode and "postcode" not in errors and not _POSTCODE.match(postcode):
            errors["postcode"] = "Le code postal compte 5 chiffres, par exemple 47000."
        city = _text(form, "city", errors, label="la commune", required=True, max_length=100)
    if errors:
        return Checked(errors=errors)
    contact: dict[str, Any] = {"channel": channel, "phone": phone, "email": email,
                               "postal_address": {"street": street, "postcode": postcode, "city": city}
                               if channel == "letter" else None}
    try:  # the API's own model: the same rules whichever way a visit is opened
        checked = CitizenIn(given_name=given or "", family_name=family or "", birth_date=birth, contact=contact)
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(p) for p in error.get("loc", ())]
            name = loc[-1] if loc and loc[-1] in VISIT_FIELDS else "contact_channel"
            errors.setdefault(name, "Cette valeur n'est pas acceptée.")
        return Checked(errors=errors)
    c = checked.contact
    address = c.postal_address
    return Checked(Citizen(
        given_name=checked.given_name, family_name=checked.family_name, birth_date=checked.birth_date,
        contact_channel=c.channel.value, email=c.email, phone=c.phone,
        postal_address=PostalAddress(address.street, address.postcode, address.city) if address else None))


# What a procedure may need that a visit lacks, in words (domain.catalogue.ASKED_FIELDS),
# and the form fields that give each.
NEEDED_LABELS = {"birth_date": "date de naissance", "postal_address": "adresse postale",
                 "email": "adresse électronique", "phone": "numéro de téléphone portable"}
NEEDED_INPUTS = {"birth_date": ("birth_date",), "postal_address": ("street", "postcode", "city"),
                 "email": ("email",), "phone": ("phone",)}


def needed_in_words(fields: Sequence[str]) -> str:
    """("birth_date", "postal_address") → "date de naissance et adresse postale"."""
    words = [NEEDED_LABELS[f] for f in fields]
    return ", ".join(words[:-1]) + " et " + words[-1] if len(words) > 1 else "".join(words)


def missing_in_words(field: str) -> str:
    """Why a procedure cannot be sent, for a page: what the visit lacks, in words."""
    what = {"birth_date": "la date de naissance", "postal_address": "l'adresse postale",
            "email": "l'adresse électronique", "phone": "le numéro de téléphone portable"}.get(field, "une information")
    return (f"Cette démarche demande {what} de la personne, que sa visite n'indique pas : ouvrez une nouvelle "
            "visite pour l'orienter vers cette démarche.")


def check_additions(form: Mapping[str, str], missing: Sequence[str], today: date) -> Checked:
    """The fields a procedure needs and the visit lacks, as typed at the referral's
    confirmation: all required. The value: keyword arguments of
    service_layer.visits.complete_citizen."""
    errors: dict[str, str] = {}
    value: dict[str, Any] = {}
    if "birth_date" in missing:
        raw = (form.get("birth_date") or "").strip()
        birth = _date(raw) if raw else None
        if not raw:
            errors["birth_date"] = "Indiquez la date de naissance : cette démarche en a besoin."
        elif birth is None:
            errors["birth_date"] = "Indiquez une date de naissance comme 02/04/1963."
        elif birth > today or birth.year < 1900:
            errors["birth_date"] = "Cette date de naissance n'est pas plausible."
        value["birth_date"] = birth
    if "postal_address" in missing:
        street = _text(form, "street", errors, label="le numéro et la voie", required=True, max_length=200)
        postcode = _text(form, "postcode", errors, label="le code postal", required=True, max_length=5)
        if postcode and "postcode" not in errors and not _POSTCODE.match(postcode):
            errors["postcode"] = "Le code postal compte 5 chiffres, par exemple 47000."
        city = _text(form, "city", errors, label="la commune", required=True, max_length=100)
        value["postal_address"] = PostalAddress(street or "", postcode or "", city or "")
    if "email" in missing:
        email = _text(form, "email", errors, label="l'adresse électronique", required=True, max_length=254)
        if email and "email" not in errors and not _EMAIL.match(email):
            errors["email"] = "Indiquez une adresse électronique valide, par exemple nom@exemple.fr."
        value["email"] = email
    if "phone" in missing:
        phone = _text(form, "phone", errors, label="le numéro de téléphone portable", required=True, max_length=20)
        if phone and "phone" not in errors and not _PHONE.match(phone):
            errors["phone"] = "Indiquez un numéro de téléphone, par exemple 06 12 34 56 78."
        value["phone"] = phone
    if errors:
        return Checked(errors=errors)
    address = value.get("postal_address")
    try:  # the API's own model: the same rules whichever way a visit is completed
        CitizenCompletionIn(birth_date=value.get("birth_date"), email=value.get("email"), phone=value.get("phone"),
                            postal_address=vars(address) if address else None)
    except ValidationError as exc:
        for error in exc.errors():
            loc = [str(p) for p in error.get("loc", ())]
            name = loc[-1] if loc and loc[-1] in VISIT_FIELDS else NEEDED_INPUTS[loc[0]][0] if loc else "_form"
            errors.setdefault(name, "Cette valeur n'est pas acceptée.")
        return Checked(errors=errors)
    return Checked(value)


@dataclass(frozen=True)
class ReferralChoice:
    operator: str
    procedure: str
    summary: str


def check_referral(form: Mapping[str, str], catalogue: Catalogue, served: Sequence[str], *,
                   final: bool) -> Checked:
    """The referral form: operator (served at the visit's site), then procedure, summary;
    `final` (the send step) also needs the citizen's consent."""
    errors: dict[str, str] = {}
    operator = (form.get("operator") or "").strip()
    procedure = (form.get("procedure") or "").strip()
    if not operator:
        errors["operator"] = "Choisissez l'opérateur."
    elif catalogue.operator(operator) is None or operator not in served:
        errors["operator"] = "Cet opérateur n'est pas proposé dans ce lieu."
    elif not procedure:
        errors["procedure"] = "Choisissez la démarche."
    elif catalogue.procedure(operator, procedure) is None:
        errors["procedure"] = "Cette démarche n'est pas une démarche de cet opérateur."
    summary = _text(form, "summary", errors, label="la demande de la personne", required=True,
                    max_length=4000, one_line=False)
    if final and form.get("consent") != "oui":
        errors["consent"] = "La personne doit accepter que sa demande soit transmise à l'opérateur."
    if errors:
        return Checked(errors=errors)
    return Checked(ReferralChoice(operator, procedure, summary or ""))


@dataclass(frozen=True)
class Place:
    site_id: str
    name: str
    kind: str
    home: bool
    today: bool  # the home site, or a permanence with a slot today
    slots: tuple[str, ...]  # today's slots, "09:00–12:00 (Mairie de Pont-du-Casse)"


def places_today(sites: Sequence[Mapping[str, Any]], home_id: str, weekday: int) -> list[Place]:
    """The home site, then its permanences: those scheduled on `weekday` (ISO, 1 =
    Monday) first. `sites` as read by adapters.places.home_and_permanences."""
    places = []
    for site in sites:
        home = site["site_id"] == home_id
        if not home and site.get("parent_site_id") != home_id:
            continue
        slots = tuple(
            f"{s['opens']}–{s['closes']}" + (f" ({s['place']})" if s.get("place") else "")
            for s in site.get("schedule") or [] if s.get("weekday") == weekday)
        places.append(Place(site["site_id"], site["name"], site.get("kind", ""), home, home or bool(slots), slots))
    return sorted(places, key=lambda p: (not p.home, not p.today, p.name))


def choose_place(places: Sequence[Place], wanted: str) -> Place | None:
    """The place chosen, if the adviser may work there (scheduled today or not: an
    unscheduled permanence is shown marked, and may still be chosen)."""
    return next((p for p in places if p.site_id == wanted), None)

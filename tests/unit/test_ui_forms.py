"""The adviser's forms (a French message per field, the API's rules) and the place of
the day (home site, permanences scheduled today first, the others marked)."""

from __future__ import annotations

from datetime import date

import pytest

from relais_referral.domain.catalogue import load_catalogue
from relais_referral.domain.model import PostalAddress
from relais_referral.entrypoints.ui.forms import check_referral, check_visit, choose_place, places_today

TODAY = date(2026, 11, 24)
BASE = {"given_name": "Michel", "family_name": "Cordier", "birth_date": "1963-04-02"}


def test_a_complete_visit_gives_the_citizen() -> None:
    checked = check_visit({**BASE, "contact_channel": "letter", "street": "3 rue des Lilas",
                           "postcode": "47000", "city": "Agen", "email": "ignored@example.org"}, TODAY)
    assert checked.ok
    citizen = checked.value
    assert (citizen.given_name, citizen.birth_date, citizen.contact_channel) == ("Michel", date(1963, 4, 2), "letter")
    assert citizen.postal_address == PostalAddress("3 rue des Lilas", "47000", "Agen")
    assert citizen.email is None  # only the channel's address is kept


@pytest.mark.parametrize("typed", ["1963-04-02", "02/04/1963", "2/4/1963"])
def test_a_birth_date_as_a_date_field_sends_it_or_as_typed_in_french(typed: str) -> None:
    checked = check_visit({**BASE, "birth_date": typed, "contact_channel": "none"}, TODAY)
    assert checked.ok and checked.value.birth_date == date(1963, 4, 2)


def test_no_contact_and_no_birth_date_is_fine() -> None:
    checked = check_visit({"given_name": " Anne ", "family_name": "Roux", "contact_channel": "none"}, TODAY)
    assert checked.ok and checked.value.given_name == "Anne" and checked.value.birth_date is None


@pytest.mark.parametrize(("form", "field", "message"), [
    ({"family_name": "", "contact_channel": "none"}, "family_name", "Indiquez le nom de famille."),
    ({"contact_channel": ""}, "contact_channel", "Choisissez comment recontacter la personne."),
    ({"contact_channel": "pigeon"}, "contact_channel", "Choisissez comment recontacter la personne."),
    ({"contact_channel": "sms"}, "phone", "Indiquez le numéro de téléphone portable."),
    ({"contact_channel": "sms", "phone": "abc"}, "phone", "Indiquez un numéro de téléphone"),
    ({"contact_channel": "email"}, "email", "Indiquez l'adresse électronique."),
    ({"contact_channel": "email", "email": "nope"}, "email", "adresse électronique valide"),
    ({"contact_channel": "letter", "street": "1 rue X", "city": "Agen"}, "postcode", "Indiquez le code postal."),
    ({"contact_channel": "letter", "street": "1 rue X", "city": "Agen", "postcode": "4700"}, "postcode", "5 chiffres"),
    ({"contact_channel": "none", "birth_date": "2 avril 1963"}, "birth_date", "comme 02/04/1963"),
    ({"contact_channel": "none", "birth_date": "31/02/1963"}, "birth_date", "comme 02/04/1963"),
    ({"contact_channel": "none", "birth_date": "02/04/١٩٦٣"}, "birth_date", "comme 02/04/1963"),
    ({"contact_channel": "none", "birth_date": "²/04/1963"}, "birth_date", "comme 02/04/1963"),
    ({"contact_channel": "none", "birth_date": "2030-01-01"}, "birth_date", "pas plausible"),
    ({"contact_channel": "none", "given_name": "Mi\x00chel"}, "given_name", "caractère non autorisé"),
    ({"contact_channel": "none", "given_name": "x" * 101}, "given_name", "100 caractères au plus"),
])
def test_each_missing_or_wrong_field_has_its_message(form: dict[str, str], field: str, message: str) -> None:
    checked = check_visit({**BASE, **form}, TODAY)
    assert not checked.ok and message in checked.errors[field]


CATALOGUE = load_catalogue()
SERVED = ["caf", "ants"]


def test_a_referral_needs_a_served_operator_its_procedure_a_summary_and_consent_to_send() -> None:
    form = {"operator": "caf", "procedure": "caf.prime-activite", "summary": "Montant en baisse."}
    assert check_referral(form, CATALOGUE, SERVED, final=False).ok
    assert check_referral(form, CATALOGUE, SERVED, final=True).errors == {
        "consent": "La personne doit accepter que sa demande soit transmise à l'opérateur."}
    assert check_referral({**form, "consent": "oui"}, CATALOGUE, SERVED, final=True).value.operator == "caf"
    assert "operator" in check_referral({**form, "operator": "msa"}, CATALOGUE, SERVED, final=False).errors
    assert "operator" in check_referral({**form, "operator": "nope"}, CATALOGUE, SERVED, final=False).errors
    assert "procedure" in check_referral({**form, "procedure": "ants.passeport"}, CATALOGUE, SERVED,
                                         final=False).errors
    assert "summary" in check_referral({**form, "summary": "  "}, CATALOGUE, SERVED, final=False).errors


SITES = [
    {"site_id": "agen", "name": "Agen Léon Blum", "kind": "post_office", "parent_site_id": None,
     "schedule": [{"weekday": 2, "opens": "14:00", "closes": "17:30"}]},
    {"site_id": "foulayronnes", "name": "Foulayronnes", "kind": "mobile_permanence", "parent_site_id": "agen",
     "schedule": [{"weekday": 3, "opens": "09:00", "closes": "12:00"}]},
    {"site_id": "pont-du-casse", "name": "Pont-du-Casse", "kind": "mobile_permanence", "parent_site_id": "agen",
     "schedule": [{"weekday": 2, "opens": "09:00", "closes": "12:00", "place": "Mairie"}]},
    {"site_id": "martignas", "name": "Martignas", "kind": "post_office", "parent_site_id": None, "schedule": []},
]


def test_the_places_of_the_day_home_first_then_scheduled_permanences() -> None:
    places = places_today(SITES, "agen", weekday=2)
    assert [(p.site_id, p.home, p.today) for p in places] == [
        ("agen", True, True), ("pont-du-casse", False, True), ("foulayronnes", False, False)]
    assert places[1].slots == ("09:00–12:00 (Mairie)",)
    assert places[2].slots == ()  # shown, marked as not scheduled today


def test_only_the_advisers_own_places_may_be_chosen() -> None:
    places = places_today(SITES, "agen", weekday=2)
    assert choose_place(places, "pont-du-casse") is not None
    assert choose_place(places, "foulayronnes") is not None  # not scheduled today: allowed, marked
    assert choose_place(places, "martignas") is None
    assert choose_place(places, "") is None

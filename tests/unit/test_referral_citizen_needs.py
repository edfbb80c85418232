"""What a procedure needs of the citizen (catalogue.yaml, `citizen_fields`) and the visit
lacks: one rule in the domain, used by the pages (asked at the confirmation step) and by
the API (a 422 naming the field); and the confirmation's fields that supply it."""

from __future__ import annotations

from datetime import date

from relais_referral.domain.catalogue import Procedure, load_catalogue, missing_citizen_fields
from relais_referral.domain.model import Citizen, PostalAddress
from relais_referral.entrypoints.ui.forms import (
    VISIT_FIELDS,
    check_additions,
    missing_in_words,
    needed_in_words,
)

CATALOGUE = load_catalogue()
TODAY = date(2026, 11, 24)
NAMES_ONLY = Citizen("Michel", "Cordier", "none")


def _procedure(operator: str, code: str) -> Procedure:
    found = CATALOGUE.procedure(operator, code)
    assert found is not None
    return found


def test_a_criminal_record_extract_needs_a_birth_date() -> None:
    casier = _procedure("justice", "justice.casier-judiciaire")
    assert missing_citizen_fields(casier, NAMES_ONLY) == ("birth_date",)
    assert missing_citizen_fields(casier, Citizen("Michel", "Cordier", "none", birth_date=date(1963, 4, 2))) == ()


def test_every_missing_field_is_named_in_order_and_in_words() -> None:
    prime = _procedure("caf", "caf.prime-activite")
    assert missing_citizen_fields(prime, NAMES_ONLY) == ("birth_date", "postal_address")
    inscription = _procedure("france-travail", "france-travail.inscription")
    by_mail = Citizen("Michel", "Cordier", "email", birth_date=date(1963, 4, 2), email="m@example.org")
    assert missing_citizen_fields(inscription, by_mail) == ("phone",)
    assert needed_in_words(("birth_date", "postal_address")) == "date de naissance et adresse postale"
    assert needed_in_words(("phone",)) == "numéro de téléphone portable"
    assert "la date de naissance" in missing_in_words("birth_date")


def test_the_confirmation_asks_exactly_what_is_missing_all_required() -> None:
    checked = check_additions({}, ("birth_date", "postal_address"), TODAY)
    assert set(checked.errors) == {"birth_date", "street", "postcode", "city"}
    assert "cette démarche en a besoin" in checked.errors["birth_date"]
    checked = check_additions({"birth_date": "02/04/1963", "street": "3 rue des Lilas", "postcode": "47000",
                               "city": "Agen", "email": "ignored@example.org"}, ("birth_date", "postal_address"), TODAY)
    assert checked.ok
    assert checked.value == {"birth_date": date(1963, 4, 2),
                             "postal_address": PostalAddress("3 rue des Lilas", "47000", "Agen")}


def test_forged_or_implausible_additions_are_refused() -> None:
    assert "pas plausible" in check_additions({"birth_date": "2030-01-01"}, ("birth_date",), TODAY).errors["birth_date"]
    assert "5 chiffres" in check_additions({"street": "1 rue X", "postcode": "47", "city": "Agen"},
                                           ("postal_address",), TODAY).errors["postcode"]
    assert "phone" in check_additions({"phone": "abc"}, ("phone",), TODAY).errors
    assert "email" in check_additions({"email": "pas-une-adresse"}, ("email",), TODAY).errors
    assert "caractère non autorisé" in check_additions({"street": "1 rue\x00X", "postcode": "47000", "city": "Agen"},
                                                       ("postal_address",), TODAY).errors["street"]


def test_the_visit_form_no_longer_carries_a_consent() -> None:
    assert "consent" not in VISIT_FIELDS

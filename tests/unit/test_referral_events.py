from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from relais_kit.contract import ContractViolation, load_contract
from relais_kit.envelope import event_type
from relais_kit.settings import REPO_ROOT
from relais_referral.domain import events
from relais_referral.domain.catalogue import load_catalogue
from relais_referral.domain.lifecycle import Status
from relais_referral.domain.model import Citizen, PostalAddress, Referral, Site
from relais_referral.settings import ReferralSettings
from tests.support import open_as, seal_for

AT = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
CITIZEN = Citizen("Michel", "Cordier", "email", date(1963, 4, 2), "michel@example.org", "0600000000",
                  PostalAddress("1 rue de la Mairie", "47480", "Pont-du-Casse"))
SITE = Site("pont-du-casse-mairie", "Mairie de Pont-du-Casse", "mobile_permanence", "47480",
            "Pont-du-Casse", "47", frozenset({"ants"}), "agen-leon-blum-poste")
REFERRAL = Referral("6f1c2a52-3f0d-4a8e-9a55-1d2f3c4b5a69", "0b7e2b8e-7d1f-4c55-8a3e-2b9a1c0d4e5f",
                    "ants", "ants.carte-grise.changement-adresse", SITE.site_id, "demo-adviser",
                    "Changer l'adresse de la carte grise", AT, AT, Status.ROUTED, AT)
CONTRACT = load_contract(REPO_ROOT / "schemas")


def test_inbox_event_carries_only_what_the_procedure_needs():
    procedure = load_catalogue().procedure("dgfip", "dgfip.declaration-revenus")
    assert procedure is not None
    citizen = events.citizen_for(CITIZEN, procedure)
    assert set(citizen) == {"given_name", "family_name", "birth_date"}


def test_routed_to_inbox_is_valid_and_its_personal_data_is_sealed_for_the_operator():
    procedure = load_catalogue().procedure("ants", "ants.carte-grise.changement-adresse")
    assert procedure is not None
    personal = events.personal_routed(REFERRAL, CITIZEN, procedure)
    CONTRACT.check_personal("referral.routed", personal)
    assert personal["citizen"]["postal_address"]["city"] == "Pont-du-Casse"
    assert "email" not in personal["citizen"]
    data = events.routed_to_inbox(REFERRAL, AT, SITE, "Sophie", procedure, seal_for("ants", personal))
    CONTRACT.check(event_type("referral.routed"), data)
    assert "Cordier" not in str(data) and "carte grise" not in str(data)
    assert open_as("ants", data) == personal


def test_info_provided_to_inbox_seals_the_message():
    personal = events.personal_info_provided(REFERRAL, "Justificatif de domicile de mars, vu au guichet.")
    CONTRACT.check_personal("referral.info_provided", personal)
    data = events.info_provided_to_inbox(REFERRAL, AT, seal_for("ants", personal))
    CONTRACT.check(event_type("referral.info_provided"), data)
    assert "domicile" not in str(data)
    assert open_as("ants", data)["message"] == personal["message"]


def test_personal_data_that_breaks_its_schema_is_named_without_its_value():
    personal = {"referral_id": REFERRAL.referral_id, "summary": "", "citizen": {"email": "Cordier"}}
    with pytest.raises(ContractViolation) as caught:
        CONTRACT.check_personal("referral.routed", personal)
    assert "personal_data.summary" in caught.value.reason and "Cordier" not in caught.value.reason


def test_lifecycle_events_on_referrals_carry_no_personal_data():
    data = events.routed(REFERRAL, AT, "operator.ants.inbox")
    CONTRACT.check(event_type("referral.routed"), data)
    flat = str(data)
    assert "Cordier" not in flat and "michel@" not in flat


def test_the_answer_names_only_the_channel_address():
    recipient = events.recipient(CITIZEN)
    assert recipient == {"display_name": "Michel Cordier", "channel": "email", "email": "michel@example.org"}
    data = events.lifecycle(REFERRAL, AT, outcome="resolved", message_to_citizen="Fait.",
                            message_to_adviser="Fait.", recipient=recipient)
    data["status"] = "answered"
    CONTRACT.check(event_type("referral.answered"), data)


# --- what the citizen is told of each step with (issue #13 item 4) ---------------------------

LINK = events.status_link("https://relais.example.fr/", "K7QM9TXH2C")
SMS_CITIZEN = Citizen("Aline", "Brunetière", "sms", date(1970, 5, 6), None, "06 12 34 56 78",
                      PostalAddress("3 rue des Lilas", "47000", "Agen"))


def test_the_status_link_is_the_page_address_and_the_grouped_code():
    assert LINK == {"url": "https://relais.example.fr/suivi/K7QM-9TXH-2C", "code": "K7QM-9TXH-2C"}
    assert events.status_link("http://localhost:8000", "K7QM9TXH2C")["url"] == \
        "http://localhost:8000/suivi/K7QM-9TXH-2C"


def test_an_sms_recipient_gives_the_address_a_failed_sms_falls_back_to():
    assert events.recipient(SMS_CITIZEN) == {
        "display_name": "Aline Brunetière", "channel": "sms", "phone": "06 12 34 56 78",
        "postal_address": {"street": "3 rue des Lilas", "postcode": "47000", "city": "Agen"}}
    no_address = Citizen("Aline", "Brunetière", "sms", phone="06 12 34 56 78")
    assert events.recipient(no_address) == {"display_name": "Aline Brunetière", "channel": "sms",
                                            "phone": "06 12 34 56 78"}
    assert "postal_address" not in events.recipient(CITIZEN)  # e-mail: that address only


def test_routed_on_referrals_carries_the_recipient_and_the_link_the_inbox_copy_neither():
    data = events.routed(REFERRAL, AT, "operator.ants.inbox", events.recipient(SMS_CITIZEN), LINK)
    CONTRACT.check(event_type("referral.routed"), data)
    assert data["recipient"]["phone"] == "06 12 34 56 78" and data["status_link"] == LINK
    procedure = load_catalogue().procedure("ants", "ants.carte-grise.changement-adresse")
    assert procedure is not None
    inbox = events.routed_to_inbox(REFERRAL, AT, SITE, "Sophie", procedure,
                                   seal_for("ants", events.personal_routed(REFERRAL, CITIZEN, procedure)))
    assert "recipient" not in inbox and "status_link" not in inbox
    # …and the contract refuses an inbox copy that carries them.
    for extra in ({"status_link": LINK}, {"recipient": events.recipient(CITIZEN)}):
        with pytest.raises(ContractViolation):
            CONTRACT.check(event_type("referral.routed"), inbox | extra)


@pytest.mark.parametrize(("name", "status", "own"), [
    ("referral.info_requested", "info_requested", {"question": "Un justificatif ?", "documents": ["Avis"]}),
    ("referral.rejected", "rejected", {"reason_code": "not_competent", "suggested_operator": "cnam"}),
    ("referral.answered", "answered", {"outcome": "resolved", "message_to_citizen": "Fait.",
                                       "message_to_adviser": "Fait."}),
])
def test_the_steps_the_citizen_is_told_of_carry_the_recipient_and_the_link(name, status, own):
    data = events.lifecycle(REFERRAL, AT, **own, recipient=events.recipient(SMS_CITIZEN), status_link=LINK)
    data["status"] = status
    CONTRACT.check(event_type(name), data)
    # Erased: nobody to notify, and no link (the service sends None, dropped here).
    erased = events.lifecycle(REFERRAL, AT, **own, recipient=events.recipient(None), status_link=None)
    erased["status"] = status
    CONTRACT.check(event_type(name), erased)
    assert "status_link" not in erased and erased["recipient"] == events.ERASED_RECIPIENT


def test_a_link_that_is_not_a_status_page_is_refused():
    data = events.routed(REFERRAL, AT, "operator.ants.inbox", events.recipient(CITIZEN), LINK)
    for bad in ({"url": "https://relais.example.fr/demandes/x", "code": "K7QM-9TXH-2C"},
                {"url": LINK["url"], "code": "K7QM9TXH2C"},
                {"url": "relais/suivi/K7QM-9TXH-2C", "code": "K7QM-9TXH-2C"},
                {**LINK, "referral_id": REFERRAL.referral_id}):
        with pytest.raises(ContractViolation):
            CONTRACT.check(event_type("referral.routed"), data | {"status_link": bad})


def test_the_links_address_is_the_public_one_else_the_service_own() -> None:
    assert ReferralSettings(RELAIS_PUBLIC_URL=" https://relais.example.fr/ ").public_address == \
        "https://relais.example.fr"
    assert ReferralSettings(RELAIS_HOST="0.0.0.0", RELAIS_REFERRAL_PORT=8010).public_address == \
        "http://localhost:8010"
    assert ReferralSettings(RELAIS_HOST="::1").public_address == "http://[::1]:8000"


def test_production_needs_the_https_address_of_the_status_links(tmp_path: Path) -> None:
    production = {"RELAIS_ENV": "production", "RELAIS_DATA_KEYS_FILE": "/run/secrets/data-keys.json",
                  "RELAIS_TOKEN_KEYS_FILE": str(tmp_path / "tokens.json")}
    for address in ("", "http://relais.example.fr"):
        with pytest.raises(ValueError, match="RELAIS_PUBLIC_URL must be the https://"):
            ReferralSettings(**production, RELAIS_PUBLIC_URL=address)
    assert ReferralSettings(**production, RELAIS_PUBLIC_URL="https://relais.example.fr").public_address == \
        "https://relais.example.fr"

"""The notifications an answered referral gives rise to: pure, no I/O."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from relais_kit.contract import load_contract
from relais_kit.settings import REPO_ROOT
from relais_notifications.adapters.templates import wordings
from relais_notifications.domain import policy, privacy, sms
from relais_notifications.domain.french import datetime_fr, of, operator_name, short_datetime_fr
from relais_notifications.domain.model import (
    OUTCOMES,
    Step,
    UnusableStep,
    addressee,
    delivery_id,
    message_id,
)
from relais_notifications.domain.notifications import notifications_for
from relais_notifications.domain.sites import SiteState

EVENT_ID = "e1b9c3d7-6f2a-4b8e-9c0d-3f5a7b9c1d2e"

WORDINGS = wordings()


def answered(outcome: str = "resolved", channel: str = "email", operator: str = "caf",
             **extra: Any) -> dict[str, Any]:
    recipient: dict[str, Any] = {"display_name": "Mme Dupont", "channel": channel}
    if channel == "email":
        recipient["email"] = "nadia.dupont@example.fr"
    if channel == "sms":
        recipient["phone"] = "+33612345678"
    if channel == "letter":
        recipient["postal_address"] = {"street": "12 avenue de la Libération", "postcode": "33127",
                                       "city": "Martignas-sur-Jalle"}
    data: dict[str, Any] = {
        "referral_id": "3f1c9e2a-7b4d-4c8e-9a51-2d6f0b8e4c17",
        "visit_id": "b7e2d4f1-1c3a-4e5b-8d9f-6a0c2e4b7d93",
        "operator": operator, "procedure": f"{operator}.demarche", "site_id": "agen-leon-blum-poste",
        "adviser_id": "adv-agen-0142", "status": "answered", "occurred_at": "2025-03-18T16:10:00+01:00",
        "outcome": outcome,
        "message_to_citizen": "Votre dossier a été mis à jour, vous recevrez un courrier.",
        "message_to_adviser": "Dossier CAF-47-2025-000813 traité.",
        "recipient": recipient,
    }
    if outcome == "appointment_offered":
        data["appointment"] = {"at": "2025-03-25T09:30:00Z", "place": "CAF de Lot-et-Garonne, 47000 Agen"}
    if outcome == "documents_needed":
        data["documents"] = ["Justificatif de domicile de moins de 6 mois",
                             "Trois derniers bulletins de salaire"]
    data.update(extra)
    return data


def answer(**kwargs: Any) -> Step:
    return Step.from_event_data(answered(**kwargs))


def one_line(text: str) -> str:
    return " ".join(text.split())


# --- French wording -------------------------------------------------------------------

@pytest.mark.parametrize(("code", "name"), [
    ("caf", "la CAF"), ("cnam", "l'Assurance Maladie (CPAM)"), ("france-travail", "France Travail"),
    ("dgfip", "la DGFiP (impôts)"), ("ants", "l'ANTS"), ("la-poste", "La Poste"),
    ("cnav", "l'Assurance retraite (CNAV)"), ("msa", "la MSA"), ("justice", "la Justice"),
    ("crous", "le Crous"), ("banque-de-france", "la Banque de France"),
])
def test_every_operator_has_a_human_name(code: str, name: str) -> None:
    assert operator_name(code) == name


def test_de_contracts_with_le() -> None:
    assert of("le Crous") == "du Crous"
    assert of("la CAF") == "de la CAF"
    assert of("l'ANTS") == "de l'ANTS"


def test_dates_are_french_in_paris_time() -> None:
    # 09:30 UTC on 25 March 2025 is 10:30 in Paris (winter time).
    assert datetime_fr(datetime(2025, 3, 25, 9, 30, tzinfo=UTC)) == "mardi 25 mars 2025 à 10 h 30"
    # After the switch to summer time, +2 h; the first of the month is "1er"; no ":00".
    assert datetime_fr(datetime(2025, 4, 1, 12, 0, tzinfo=UTC)) == "mardi 1er avril 2025 à 14 h"
    assert short_datetime_fr(datetime(2025, 3, 25, 9, 30, tzinfo=UTC)) == "mardi 25/03 à 10h30"


# --- which notifications ---------------------------------------------------------------

@pytest.mark.parametrize("channel", ["email", "sms", "letter"])
def test_citizen_then_adviser(channel: str) -> None:
    found = notifications_for(answer(channel=channel), EVENT_ID, WORDINGS)
    assert [(n.recipient, n.channel) for n in found] == [("citizen", channel), ("adviser", "adviser_screen")]
    citizen, adviser = found
    assert citizen.announce and not adviser.announce
    assert citizen.status == ("sent" if channel == "letter" else "pending")
    assert adviser.status == "sent"
    assert adviser.body == "Dossier CAF-47-2025-000813 traité."
    assert adviser.address is None


def test_channel_none_only_tells_the_adviser() -> None:
    found = notifications_for(answer(channel="none"), EVENT_ID, WORDINGS)
    assert [(n.recipient, n.channel) for n in found] == [("adviser", "adviser_screen")]


def test_ids_are_deterministic() -> None:
    first = notifications_for(answer(), EVENT_ID, WORDINGS)
    again = notifications_for(answer(), EVENT_ID, WORDINGS)
    assert [n.id for n in first] == [n.id for n in again]
    assert first[0].id == delivery_id(EVENT_ID, "citizen") != delivery_id(EVENT_ID, "adviser")
    assert notifications_for(answer(), "another-event", WORDINGS)[0].id != first[0].id
    assert message_id(first[0].id, "france-services.example") == f"<{first[0].id}@france-services.example>"


def test_email_address_is_a_quoted_mailbox() -> None:
    citizen = notifications_for(answer(), EVENT_ID, WORDINGS)[0]
    assert citizen.address == "Mme Dupont <nadia.dupont@example.fr>"


# --- the name a message is addressed to ---------------------------------------------------

@pytest.mark.parametrize(("given", "shown"), [
    ("Mme\nDupont", "Mme Dupont"),
    ("  Mme\r\n\tDupont\x00 ", "Mme Dupont"),
    ("M.\u2028Jean\u2029Martin\x85", "M. Jean Martin"),
    ("Mme  Nadia   Dupont", "Mme Nadia Dupont"),
    ("Mme Élodie N'Guessan-Ça", "Mme Élodie N'Guessan-Ça"),
    ("\n \x7f\t", "Madame, Monsieur"),
])
def test_the_addressee_is_one_clean_line(given: str, shown: str) -> None:
    assert addressee(given) == shown


@pytest.mark.parametrize("channel", ["email", "letter"])
def test_a_line_break_in_the_name_never_reaches_a_header_or_a_greeting(channel: str) -> None:
    data = answered(channel=channel)
    data["recipient"]["display_name"] = "Mme\nDupont"
    citizen = notifications_for(Step.from_event_data(data), EVENT_ID, WORDINGS)[0]
    assert citizen.status != "failed"
    assert citizen.body is not None and "Bonjour Mme Dupont," in citizen.body
    if channel == "email":
        assert citizen.address == "Mme Dupont <nadia.dupont@example.fr>"


def test_a_blank_name_is_addressed_neutrally() -> None:
    data = answered()
    data["recipient"]["display_name"] = "\r\n"
    citizen = notifications_for(Step.from_event_data(data), EVENT_ID, WORDINGS)[0]
    assert citizen.address == '"Madame, Monsieur" <nadia.dupont@example.fr>'
    assert citizen.body is not None and citizen.body.startswith("Bonjour Madame, Monsieur,")


@pytest.mark.parametrize(("channel", "changes", "error"), [
    ("email", {"outcome": "unheard-of"}, "TemplateNotFound"),
    ("letter", {"outcome": "unheard-of"}, "TemplateNotFound"),
    ("sms", {"outcome": "unheard-of"}, "TemplateNotFound"),
])
def test_a_citizen_message_that_cannot_be_written_fails_alone(channel: str, changes: dict[str, Any],
                                                              error: str) -> None:
    # Answers the contract would not let through, built directly: writing the citizen's
    # message breaks; the adviser is told all the same.
    broken = dataclasses.replace(answer(channel=channel), **changes)
    citizen, adviser = notifications_for(broken, EVENT_ID, WORDINGS)
    assert (citizen.recipient, citizen.channel, citizen.status) == ("citizen", channel, "failed")
    assert citizen.body is None and citizen.address is None
    assert citizen.reason == f"message impossible à rédiger ({error})"
    assert citizen.id == delivery_id(EVENT_ID, "citizen")
    assert (adviser.recipient, adviser.status) == ("adviser", "sent")
    assert adviser.body == "Dossier CAF-47-2025-000813 traité."


# --- the citizen's e-mail, one template per outcome ------------------------------------

def test_resolved() -> None:
    a = answer(outcome="resolved")
    text = one_line(WORDINGS.citizen_text(a))
    assert WORDINGS.subject(a) == "La CAF a répondu à votre demande"
    assert text.startswith("Bonjour Mme Dupont,")
    assert "Bonne nouvelle : la CAF a répondu à votre demande. Votre démarche est réglée." in text
    assert "Voici le message de la CAF : Votre dossier a été mis à jour, vous recevrez un courrier." in text
    assert "votre conseiller France Services" in text
    assert "Merci de ne pas y répondre" in text


def test_appointment_offered_gives_date_time_and_place_in_french() -> None:
    a = answer(outcome="appointment_offered", operator="cnam")
    text = one_line(WORDINGS.citizen_text(a))
    assert WORDINGS.subject(a) == "L'Assurance Maladie (CPAM) vous propose un rendez-vous"
    assert "L'Assurance Maladie (CPAM) vous propose un rendez-vous :" in text
    # How to change it, in plain words.
    assert "Vous ne pouvez pas venir à ce rendez-vous ?" in text
    assert "Quand : le mardi 25 mars 2025 à 10 h 30" in text
    assert "Où : CAF de Lot-et-Garonne, 47000 Agen" in text
    assert "Voici le message de l'Assurance Maladie (CPAM)" in text


def test_documents_needed_lists_the_documents() -> None:
    a = answer(outcome="documents_needed", operator="ants")
    body = WORDINGS.citizen_text(a)
    assert WORDINGS.subject(a) == "L'ANTS a besoin de documents"
    assert "  - Justificatif de domicile de moins de 6 mois\n" in body
    assert "  - Trois derniers bulletins de salaire\n" in body
    assert "L'ANTS a bien reçu votre demande." in one_line(body)


def test_refused_is_kind_and_points_to_the_adviser() -> None:
    a = answer(outcome="refused", operator="crous")
    text = one_line(WORDINGS.citizen_text(a))
    assert WORDINGS.subject(a) == "Réponse du Crous à votre demande"
    assert "Le Crous a étudié votre demande. Le Crous ne peut pas l'accepter." in text
    assert "Voici le message du Crous" in text
    assert "Il peut chercher une autre solution avec vous." in text


def test_other() -> None:
    a = answer(outcome="other", operator="dgfip")
    text = one_line(WORDINGS.citizen_text(a))
    assert WORDINGS.subject(a) == "La DGFiP (impôts) a répondu à votre demande"
    assert "La DGFiP (impôts) a répondu à votre demande." in text


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_lines_fit_a_mail_reader(outcome: str) -> None:
    long_message = "Nous avons bien étudié votre situation personnelle et professionnelle. " * 8
    body = WORDINGS.citizen_text(answer(outcome=outcome, message_to_citizen=long_message))
    assert max(len(line) for line in body.splitlines()) <= 76
    assert "\n\n\n" not in body
    assert one_line(long_message) in one_line(body)


# --- the printable letter ---------------------------------------------------------------

def test_letter_has_address_date_and_subject_and_no_reply_footer() -> None:
    a = answer(outcome="documents_needed", channel="letter", operator="la-poste")
    letter = notifications_for(a, EVENT_ID, WORDINGS)[0]
    assert letter.channel == "letter" and letter.address is None
    lines = letter.body.splitlines()
    assert lines[0] == "France Services"
    assert "Mme Dupont" in lines
    assert "12 avenue de la Libération" in lines
    assert "33127 Martignas-sur-Jalle" in lines
    assert "Le 18 mars 2025" in lines
    assert "Objet : La Poste a besoin de documents" in lines
    assert "  - Justificatif de domicile de moins de 6 mois" in lines
    assert "Merci de ne pas y répondre" not in letter.body


# --- the SMS ------------------------------------------------------------------------------

@pytest.mark.parametrize("outcome", OUTCOMES)
def test_sms_fits_one_gsm_message(outcome: str) -> None:
    text = WORDINGS.sms_text(answer(outcome=outcome, channel="sms", operator="dgfip",
                           message_to_citizen="Très long message de l'opérateur. " * 20))
    assert sms.gsm7_length(text) <= 160
    assert sms.to_gsm7(text) == text  # no character forces UCS-2
    assert text.startswith("La DGFiP (impots)")
    assert text.endswith(": votre conseiller France Services.")


def test_sms_keeps_the_appointment_date() -> None:
    text = WORDINGS.sms_text(answer(outcome="appointment_offered", channel="sms"))
    assert "mardi 25/03 à 10h30" in text
    assert "CAF de Lot-et-Garonne" in text


def test_sms_lists_the_documents_cut_when_too_long() -> None:
    text = WORDINGS.sms_text(answer(outcome="documents_needed", channel="sms",
                           documents=[f"Document numéro {i} à fournir" for i in range(10)]))
    assert "a besoin de : Document numéro 0 à fournir" in text
    assert "..." in text
    assert sms.gsm7_length(text) <= 160


def test_gsm_transliteration() -> None:
    assert sms.to_gsm7("Où êtes-vous ? Ça coûte 5 €… « œuvre »") == \
        'Où etes-vous ? Ça coute 5 €... " oeuvre "'
    assert sms.gsm7_length("5 €") == 4


# --- retries ------------------------------------------------------------------------------

def test_backoff_doubles_and_is_capped() -> None:
    assert [policy.backoff(n, 10, 60) for n in (1, 2, 3, 4, 5)] == [
        timedelta(seconds=s) for s in (10, 20, 40, 60, 60)]
    assert not policy.gives_up(4, 5)
    assert policy.gives_up(5, 5)
    assert policy.gives_up(1, 5, permanent=True)


# --- what the schema should have caught -------------------------------------------------

def test_unusable_answers_are_refused() -> None:
    with pytest.raises(UnusableStep):
        Step.from_event_data(answered(outcome="appointment_offered") | {"appointment": None})
    with pytest.raises(UnusableStep):
        Step.from_event_data(answered(channel="email") | {"recipient": {"display_name": "X",
                                                                          "channel": "email"}})
    with pytest.raises(UnusableStep):
        Step.from_event_data({"referral_id": str(uuid.uuid4())})


# --- the view of the sites registry ----------------------------------------------------

def test_site_states_from_the_sites_topic() -> None:
    upserted = SiteState.upserted({"site_id": "martignas-sur-jalle-poste", "department": "33",
                                   "parent_site_id": "merignac-centre", "updated_at": "2025-02-10T10:15:00+01:00"})
    assert upserted == SiteState("martignas-sur-jalle-poste", datetime(2025, 2, 10, 9, 15, tzinfo=UTC),
                                 parent_site_id="merignac-centre", department="33")
    retired = SiteState.retired_from({"site_id": "martignas-sur-jalle-poste", "retired_at": "2025-06-30T16:00:00Z"})
    assert retired.retired and retired.department is None
    assert retired.updated_at == datetime(2025, 6, 30, 16, tzinfo=UTC)


# --- the citizen's rights ------------------------------------------------------------------

def test_answers_to_a_request_have_ids_of_their_own_derived_from_it() -> None:
    request_id = str(uuid.uuid4())
    erased = privacy.answer_event_id(request_id, "personal_data.erased")
    assert erased == privacy.answer_event_id(request_id, "personal_data.erased")
    assert erased != privacy.answer_event_id(request_id, "personal_data.access_answered")
    assert erased != privacy.answer_event_id(str(uuid.uuid4()), "personal_data.erased")
    assert uuid.UUID(erased).version == 5


def test_an_access_answer_lists_every_delivery_in_json() -> None:
    request_id, delivery, referral = str(uuid.uuid4()), uuid.uuid4(), uuid.uuid4()
    at = datetime(2025, 3, 18, 15, 10, tzinfo=UTC)
    plaintext = privacy.access_records(request_id, [{
        "delivery_id": delivery, "referral_id": referral, "recipient": "citizen", "channel": "email",
        "status": "sent", "address": "Mme Dupont <nadia.dupont@example.fr>", "subject": "La CAF a répondu",
        "body": "Bonjour Mme Dupont,", "reason": None, "created_at": at, "sent_at": at, "failed_at": None,
        "erased_at": None}])
    load_contract(REPO_ROOT / "schemas").check_personal("personal_data.access_answered", plaintext)
    assert plaintext == {"request_id": request_id, "service": "notifications", "records": {"deliveries": [{
        "delivery_id": str(delivery), "referral_id": str(referral), "recipient": "citizen", "channel": "email",
        "status": "sent", "address": "Mme Dupont <nadia.dupont@example.fr>", "subject": "La CAF a répondu",
        "body": "Bonjour Mme Dupont,", "fallback_subject": None, "fallback_body": None, "reason": None,
        "created_at": "2025-03-18T15:10:00+00:00",
        "sent_at": "2025-03-18T15:10:00+00:00", "failed_at": None, "erased_at": None}]}}
    assert privacy.access_records(request_id, [])["records"] == {"deliveries": []}

"""The citizen told at every step (issue #13 item 4): which messages each moment of a
referral gives, in which words, from templates an ops person can change, reviewed
against the easy-to-read rules. Pure: no I/O but reading template files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relais_notifications.adapters.templates import BrokenTemplate, wordings
from relais_notifications.domain import easy_to_read, sms, texts
from relais_notifications.domain.letter import status_code, status_url
from relais_notifications.domain.model import MOMENTS, Step
from relais_notifications.domain.notifications import notifications_for

WORDINGS = wordings()
EVENT_ID = "0b9f6a3e-2c1d-4e5f-8a7b-9c0d1e2f3a4b"
LINK = {"url": "https://france-services.example/suivi/K7QM-9TXH-2C", "code": "K7QM-9TXH-2C"}


def event(moment: str, channel: str = "email", **extra: Any) -> Step:
    recipient: dict[str, Any] = {"display_name": "M. Karim Benali", "channel": channel}
    if channel == "email":
        recipient["email"] = "karim.benali@example.fr"
    if channel in ("sms", "sms+letter"):
        recipient.update(channel="sms", phone="+33612345678")
    if channel in ("letter", "sms+letter"):
        recipient["postal_address"] = {"street": "4 rue des Lilas", "postcode": "47000", "city": "Agen"}
    data: dict[str, Any] = {
        "referral_id": "3f1c9e2a-7b4d-4c8e-9a51-2d6f0b8e4c17", "visit_id": "b7e2d4f1-1c3a-4e5b-8d9f-6a0c2e4b7d93",
        "operator": "caf", "procedure": "caf.prime-activite", "site_id": "fs-agen", "adviser_id": "adv-1",
        "status": "routed", "occurred_at": "2026-12-01T10:00:00+01:00", "recipient": recipient,
        "status_link": LINK, **extra}
    if moment == "sent":
        data.setdefault("due_at", "2026-12-15T18:00:00+01:00")
    if moment == "answered":
        data.update(outcome=data.get("outcome", "resolved"), message_to_citizen="C'est fait.",
                    message_to_adviser="Traité.")
    return Step.from_event_data(data, moment)  # type: ignore[arg-type]


def flat(text: str | None) -> str:
    return " ".join((text or "").split())


def test_every_moment_of_the_lifecycle_the_citizen_cares_about_has_its_event() -> None:
    assert MOMENTS == {"referral.routed": "sent", "referral.info_requested": "info_requested",
                       "referral.answered": "answered", "referral.rejected": "rejected"}


def test_sent_tells_the_deadline_and_gives_the_status_link() -> None:
    (mail,) = notifications_for(event("sent"), EVENT_ID, WORDINGS)
    assert (mail.recipient, mail.channel, mail.status) == ("citizen", "email", "pending")
    assert mail.subject == "Votre demande est envoyée à la CAF"
    body = flat(mail.body)
    assert "La CAF doit répondre avant le 15 décembre 2026." in body
    assert "allez sur : https://france-services.example/suivi/K7QM-9TXH-2C" in body
    assert "Votre code de suivi est : K7QM-9TXH-2C" in body


def test_sent_by_sms_carries_the_link_in_two_messages_at_most() -> None:
    (text,) = [n.body for n in notifications_for(event("sent", "sms"), EVENT_ID, WORDINGS)]
    assert text is not None and LINK["url"] in text and "K7QM-9TXH-2C" in text
    assert "Réponse avant le 15/12" in text
    assert sms.gsm7_length(text) <= texts.SMS_WITH_LINK_LIMIT and sms.to_gsm7(text) == text


def test_no_letter_for_the_sending_the_receipt_is_the_paper() -> None:
    assert notifications_for(event("sent", "letter"), EVENT_ID, WORDINGS) == []
    (letter,) = notifications_for(event("info_requested", "letter", documents=["Avis d'impôt 2025"]),
                                  EVENT_ID, WORDINGS)
    assert (letter.channel, letter.status) == ("letter", "sent")


def test_info_requested_says_what_and_where_to_bring_it() -> None:
    step = event("info_requested", documents=["Avis d'impôt 2025", "RIB"], question="Quel est son RIB ?")
    (mail,) = notifications_for(step, EVENT_ID, WORDINGS, site=texts.SAMPLE_SITE)
    body = mail.body or ""
    assert "  - Avis d'impôt 2025\n  - RIB\n" in body
    assert "Apportez-les à votre France Services." in body
    assert "France Services d'Agen\n1 place du Pin\n47000 Agen" in body
    assert "Quel est son RIB" not in body  # the question is the adviser's to read


def test_an_information_request_without_documents_asks_to_come_back() -> None:
    (mail,) = notifications_for(event("info_requested"), EVENT_ID, WORDINGS)
    assert "Revenez voir votre conseiller France Services." in (mail.body or "")


def test_rejected_points_to_the_other_operator_and_the_adviser() -> None:
    (mail,) = notifications_for(event("rejected", suggested_operator="france-travail", reason_code="wrong_operator"),
                                EVENT_ID, WORDINGS)
    body = flat(mail.body)
    assert mail.subject == "La CAF ne peut pas traiter votre demande"
    assert "France Travail peut sans doute vous aider." in body
    assert "Votre conseiller France Services cherche une autre solution avec vous." in body


def test_only_an_answer_reaches_the_advisers_screen() -> None:
    for moment in ("sent", "info_requested", "rejected"):
        assert [n.recipient for n in notifications_for(event(moment), EVENT_ID, WORDINGS)] == ["citizen"]
    answered = notifications_for(event("answered"), EVENT_ID, WORDINGS)
    assert [n.recipient for n in answered] == ["citizen", "adviser"]
    assert LINK["url"] in (answered[0].body or "")


def test_an_sms_to_a_citizen_with_an_address_carries_its_letter_in_case_it_fails() -> None:
    text, _ = notifications_for(event("answered", "sms+letter"), EVENT_ID, WORDINGS)
    assert text.channel == "sms" and text.fallback_subject == "La CAF a répondu à votre demande"
    assert text.fallback_body is not None and text.fallback_body.startswith("France Services\n\nM. Karim Benali\n")
    without_address, _ = notifications_for(event("answered", "sms"), EVENT_ID, WORDINGS)
    assert without_address.fallback_body is None
    (sent,) = notifications_for(event("sent", "sms+letter"), EVENT_ID, WORDINGS)
    assert sent.fallback_body is None  # the receipt was printed at the counter


def test_without_a_link_no_line_about_it_and_one_sms() -> None:
    step = event("answered", "sms", status_link=None)
    text, _ = notifications_for(step, EVENT_ID, WORDINGS)
    assert text.body is not None and "suivi" not in text.body.lower()
    assert sms.gsm7_length(text.body) <= sms.SMS_LIMIT


@pytest.mark.parametrize("step", texts.samples(), ids=lambda s: f"{s.wording}-{bool(s.status_link)}")
def test_every_template_is_easy_to_read(step: Step) -> None:
    for site in (None, texts.SAMPLE_SITE):
        for text in (WORDINGS.citizen_text(step, site=site), WORDINGS.citizen_text(step, letter=True, site=site),
                     WORDINGS.sms_text(step, site)):
            assert easy_to_read.review(text, quoted=texts.operator_words(step)) == []


def test_the_review_catches_long_sentences_hard_words_and_acronyms() -> None:
    long = ("Votre conseiller a transmis votre demande au service compétent"
            " qui l'étudiera dans les tout meilleurs délais.")
    assert easy_to_read.review(long)[0].startswith("phrase de 16 mots")
    assert easy_to_read.review("Nous ne pouvons malheureusement pas donner suite favorable.") == [
        "mot difficile « suite favorable » : écrire plutôt « accepter »",
        "mot difficile « malheureusement » : écrire plutôt « (à retirer) »"]
    assert easy_to_read.review("Votre RDV à la CARSAT.") == [
        "mot difficile « RDV » : écrire plutôt « rendez-vous »", "sigle « CARSAT » non expliqué"]
    assert easy_to_read.review("La CAF a répondu.", quoted=["un texte de l'opérateur, très long, " * 9]) == []


def test_an_ops_person_changes_a_text_without_code(tmp_path: Path) -> None:
    (tmp_path / "sms").mkdir()
    (tmp_path / "sent.txt.j2").write_text(
        '{% extends "_base.txt.j2" %}\n{% block subject %}{{ Operator }} a reçu votre demande{% endblock %}\n'
        "{% block body %}\nC'est parti.\n{% endblock %}\n", encoding="utf-8")
    (tmp_path / "sms" / "rejected.txt.j2").write_text("Revenez nous voir. France Services\n", encoding="utf-8")
    changed = wordings(tmp_path)
    assert changed.subject(event("sent")) == "La CAF a reçu votre demande"
    assert "C'est parti." in changed.citizen_text(event("sent"))
    assert changed.sms_text(event("rejected", "sms")) == "Revenez nous voir. France Services"
    # The others stay the package's.
    assert changed.subject(event("rejected")) == WORDINGS.subject(event("rejected"))


def test_a_broken_template_stops_the_service_with_its_name(tmp_path: Path) -> None:
    (tmp_path / "sms").mkdir()
    (tmp_path / "sms" / "resolved.txt.j2").write_text("{{ operateur }} a répondu.\n", encoding="utf-8")
    with pytest.raises(BrokenTemplate, match=r"sms/resolved\.txt\.j2.*operateur"):
        wordings(tmp_path)
    (tmp_path / "sms" / "resolved.txt.j2").write_text("{% if %}\n", encoding="utf-8")
    with pytest.raises(BrokenTemplate, match=r"sms/resolved\.txt\.j2"):
        wordings(tmp_path)
    with pytest.raises(BrokenTemplate, match="not a directory"):
        wordings(tmp_path / "absent")


def test_the_letter_finds_its_status_link_for_the_qr_code() -> None:
    (letter,) = notifications_for(event("rejected", "letter"), EVENT_ID, WORDINGS)
    assert letter.body is not None
    assert status_url(letter.body) == LINK["url"]
    assert status_code(letter.body) == "K7QM-9TXH-2C"
    assert status_url("Bonjour,\nhttps://example.org/autre\n") is None

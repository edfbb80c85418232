"""The expert's forms: each field checked with a French message, and the event data
built from them valid against the contract (schemas/events/operator.*.v1.json)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from relais_desk.domain import forms
from relais_kit.contract import load_contract
from relais_kit.envelope import event_type
from relais_kit.settings import REPO_ROOT

CONTRACT = load_contract(REPO_ROOT / "schemas")
RID = str(uuid.uuid4())
AT = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def valid(name: str, data: dict[str, object]) -> None:
    CONTRACT.check(event_type(name), data)


def test_acknowledge_names_the_expert_and_keeps_an_optional_reference() -> None:
    checked = forms.acknowledge({"case_reference": "  JUS-2026-0042 "}, referral_id=RID,
                                expert="Chantal Experte", at=AT)
    assert checked.ok
    assert checked.data == {"referral_id": RID, "acknowledged_at": "2026-11-23T09:30:00+00:00",
                            "expert": "Chantal Experte", "case_reference": "JUS-2026-0042"}
    valid("operator.acknowledged", checked.data)
    bare = forms.acknowledge({}, referral_id=RID, expert="Chantal Experte", at=AT)
    assert bare.ok and "case_reference" not in bare.data
    valid("operator.acknowledged", bare.data)


def test_a_reference_too_long_is_refused_next_to_its_field() -> None:
    checked = forms.acknowledge({"case_reference": "x" * 101}, referral_id=RID, expert="E", at=AT)
    assert checked.errors == {"case_reference": "100 caractères au plus (101 saisis)."}


def test_request_info_needs_a_question_and_lists_documents_one_per_line() -> None:
    assert forms.request_info({}, referral_id=RID, at=AT).errors == {"question": "Indiquez votre question."}
    checked = forms.request_info({"question": "Quel est le numéro de dossier ?",
                                  "documents": "Avis d'imposition\r\n\r\n  Pièce d'identité  \n"},
                                 referral_id=RID, at=AT)
    assert checked.ok
    assert checked.data["documents"] == ["Avis d'imposition", "Pièce d'identité"]
    valid("operator.info_requested", checked.data)


def test_control_characters_are_refused() -> None:
    checked = forms.request_info({"question": "a\x00b"}, referral_id=RID, at=AT)
    assert checked.errors == {"question": "Ce texte contient un caractère non autorisé."}


def answer_form(**fields: str) -> dict[str, str]:
    return {"outcome": "resolved", "message_to_citizen": "Votre demande est traitée.",
            "message_to_adviser": "Dossier traité.", **fields}


def test_answer_resolved_is_valid() -> None:
    checked = forms.answer(answer_form(), referral_id=RID, at=AT)
    assert checked.ok
    valid("operator.answered", checked.data)
    assert "appointment" not in checked.data and "documents" not in checked.data


@pytest.mark.parametrize("missing", ["outcome", "message_to_citizen", "message_to_adviser"])
def test_answer_names_each_missing_field(missing: str) -> None:
    form = answer_form()
    del form[missing]
    checked = forms.answer(form, referral_id=RID, at=AT)
    assert list(checked.errors) == [missing]


def test_an_unknown_outcome_is_refused() -> None:
    checked = forms.answer(answer_form(outcome="maybe"), referral_id=RID, at=AT)
    assert checked.errors == {"outcome": "Choisissez l'issue de la demande dans la liste."}


def test_an_appointment_needs_a_future_time_and_a_place_in_paris_time() -> None:
    checked = forms.answer(answer_form(outcome="appointment_offered"), referral_id=RID, at=AT)
    assert set(checked.errors) == {"appointment_at", "appointment_place"}
    past = forms.answer(answer_form(outcome="appointment_offered", appointment_at="2026-11-01T10:00",
                                    appointment_place="Tribunal d'Agen"), referral_id=RID, at=AT)
    assert past.errors == {"appointment_at": "Le rendez-vous doit être dans le futur."}
    garbled = forms.answer(answer_form(outcome="appointment_offered", appointment_at="demain",
                                       appointment_place="Tribunal d'Agen"), referral_id=RID, at=AT)
    assert list(garbled.errors) == ["appointment_at"]
    checked = forms.answer(answer_form(outcome="appointment_offered", appointment_at="2026-12-01T10:30",
                                       appointment_place="Tribunal judiciaire d'Agen"), referral_id=RID, at=AT)
    assert checked.ok
    assert checked.data["appointment"] == {"at": "2026-12-01T10:30:00+01:00", "place": "Tribunal judiciaire d'Agen"}
    valid("operator.answered", checked.data)


def test_documents_needed_needs_documents() -> None:
    checked = forms.answer(answer_form(outcome="documents_needed"), referral_id=RID, at=AT)
    assert list(checked.errors) == ["documents"]
    checked = forms.answer(answer_form(outcome="documents_needed", documents="Justificatif de domicile"),
                           referral_id=RID, at=AT)
    assert checked.ok and checked.data["documents"] == ["Justificatif de domicile"]
    valid("operator.answered", checked.data)


def test_reject_needs_a_code_and_a_reason_for_other() -> None:
    assert list(forms.reject({}, referral_id=RID, at=AT, operator="justice").errors) == ["reason_code"]
    assert list(forms.reject({"reason_code": "other"}, referral_id=RID, at=AT,
                             operator="justice").errors) == ["reason"]
    checked = forms.reject({"reason_code": "not_competent", "reason": "Relève de la CAF.",
                            "suggested_operator": "caf"}, referral_id=RID, at=AT, operator="justice")
    assert checked.ok
    assert checked.data == {"referral_id": RID, "rejected_at": "2026-11-23T09:30:00+00:00",
                            "reason_code": "not_competent", "reason": "Relève de la CAF.",
                            "suggested_operator": "caf"}
    valid("operator.rejected", checked.data)


def test_reject_does_not_suggest_the_operator_itself() -> None:
    checked = forms.reject({"reason_code": "not_competent", "suggested_operator": "justice"},
                           referral_id=RID, at=AT, operator="justice")
    assert list(checked.errors) == ["suggested_operator"]


def test_the_form_choices_are_the_contract_enums() -> None:
    import json
    answered = json.loads((REPO_ROOT / "schemas/events/operator.answered.v1.json").read_text())
    rejected = json.loads((REPO_ROOT / "schemas/events/operator.rejected.v1.json").read_text())
    assert list(forms.OUTCOMES) == answered["$defs"]["outcome"]["enum"]
    assert list(forms.REASON_CODES) == rejected["$defs"]["reason_code"]["enum"]
    assert list(forms.OPERATORS) == rejected["$defs"]["operator"]["enum"]

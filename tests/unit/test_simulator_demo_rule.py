"""The operator simulator's demo rule (simulator/operator_simulator.py `course`): a word of
the adviser's summary makes the simulated operator reject the referral or ask for
information, so that a demo shows the whole lifecycle; and what it then sends is valid
against the contract."""

from __future__ import annotations

import uuid

import pytest

from simulator.operator_simulator import (
    ALL_OPERATORS,
    DEFAULT_SCHEMAS,
    Answers,
    Contract,
    Referral,
    course,
    event_type,
    parse_settings,
)


@pytest.mark.parametrize("summary", [
    "Simuler un refus de l'opérateur.",
    "REFUS attendu",
    "Demande hors champ de la démarche.",
    "Demande hors-champ",
    "Hors  Champ ; pièce jointe",  # a refusal wins over a question
])
def test_a_refusal_word_rejects(summary: str) -> None:
    assert course(summary) == "reject"


@pytest.mark.parametrize("summary", [
    "Il manque une pièce.",
    "Pièces : à voir",
    "PIECES du dossier",
    "Un justificatif de domicile",
    "Justificatifs de revenus",
])
def test_a_document_word_asks_for_information(summary: str) -> None:
    assert course(summary) == "ask"


@pytest.mark.parametrize("summary", [
    None, "", "Demande d'aide pour la prime d'activité.",
    "Sa demande a été refusée l'an dernier",  # whole words only: « refusée » is not « refus »
    "Rapiécé", "champ hors", "dépiécer", "injustifié",
])
def test_any_other_summary_is_answered(summary: str | None) -> None:
    assert course(summary) == "answer"


def test_the_rule_is_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "« refus » or « hors champ »" in shown and "« pièce(s) » or « justificatif(s) »" in shown


@pytest.mark.parametrize("operator", ALL_OPERATORS)
def test_the_question_and_the_refusal_follow_the_contract(operator: str) -> None:
    contract, answers = Contract(DEFAULT_SCHEMAS), Answers()
    referral = Referral(str(uuid.uuid4()), operator, f"{operator}.inconnue", "Agen")
    asked = answers.info_requested(referral)
    assert contract.write_errors(event_type("operator.info_requested"), asked) == []
    assert asked["documents"] and asked["question"]
    rejected = answers.rejected(referral)
    assert contract.write_errors(event_type("operator.rejected"), rejected) == []
    assert rejected["reason_code"] == "out_of_scope" and rejected["reason"]

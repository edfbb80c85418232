"""The status code of the citizen's link (domain/status_link.py): its alphabet, length,
grouping and entropy; typed codes folded (case, spaces, dashes) and refused when they
hold characters a code never has; expiry; plain words per status; next openings."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest

from relais_referral.domain import status_link as s

CAF = s.operator_words("caf", "Caisse d'allocations familiales")


def test_codes_are_long_random_and_unambiguous() -> None:
    codes = {s.new_code() for _ in range(2000)}
    assert len(codes) == 2000
    assert all(len(c) == s.LENGTH and set(c) <= set(s.ALPHABET) for c in codes)
    assert not set("01OI") & set(s.ALPHABET)
    assert s.LENGTH * math.log2(len(s.ALPHABET)) >= 50


def test_grouped_for_reading_aloud() -> None:
    assert s.grouped("K7QM9TXH2C") == "K7QM-9TXH-2C"


@pytest.mark.parametrize("typed", ["K7QM-9TXH-2C", "k7qm9txh2c", " k7qm 9txh 2c ", "K7QM–9TXH–2C", "K7QM.9TXH.2C",
                                   "k7qm-9txh-2c\n"])
def test_typed_codes_are_folded(typed: str) -> None:
    assert s.typed_code(typed) == "K7QM9TXH2C"


@pytest.mark.parametrize("typed", ["", "K7QM-9TXH", "K7QM-9TXH-2CX", "K7QM-9TXH-2O", "K7QM-9TXH-20", "K7QM-9TXH-2I",
                                   "K7QM-9TXH-21", "K7QM-9TXH-2É", "../../etc"])
def test_what_cannot_be_a_code_is_refused(typed: str) -> None:
    assert s.typed_code(typed) is None


def test_a_link_expires_30_days_after_the_end() -> None:
    end = datetime(2026, 12, 4, 10, tzinfo=UTC)
    assert not s.expired("routed", None, end + timedelta(days=400))
    assert not s.expired("closed", end, end + timedelta(days=29))
    assert s.expired("closed", end, end + timedelta(days=30))
    assert s.expired("cancelled", None, end)


def test_one_plain_sentence_per_status() -> None:
    sent = datetime(2026, 12, 4, 10, tzinfo=UTC)
    assert s.situation("routed", CAF, sent, []).sentence == "Votre demande a été envoyée à la CAF le 4 décembre."
    asked = s.situation("info_requested", CAF, sent, [{"event": "info_requested", "at": sent,
                                                       "detail": {"documents": ["Avis d'imposition"]}}])
    assert asked.sentence == "La CAF demande une information : revenez au France Services."
    assert asked.bring == ("Avis d'imposition",)
    answered = s.situation("answered", CAF, sent, [{"event": "answered", "at": sent, "detail": {
        "outcome": "appointment_offered", "appointment": {"at": "2026-12-08T14:30:00+01:00", "place": "CAF d'Agen"}}}])
    assert answered.sentence == "La CAF a répondu le 4 décembre : un rendez-vous vous est proposé."
    assert answered.next_step == "Votre rendez-vous : le mardi 8 décembre à 14 h 30, CAF d'Agen."
    assert s.situation("requested", s.operator_words("justice", "x"), sent, []).sentence.startswith(
        "Votre demande a été envoyée au ministère de la Justice")
    rerouted = s.situation("closed", CAF, sent, [{"event": "closed", "at": sent, "detail": {"outcome": "rerouted"}}])
    assert rerouted.sentence.startswith("Votre demande a été envoyée à un autre organisme")
    for status in ("requested", "routed", "acknowledged", "info_requested", "answered", "rejected", "closed",
                   "cancelled"):
        assert s.situation(status, CAF, sent, []).sentence


def test_the_next_three_openings_paris_time() -> None:
    schedule = [{"weekday": 5, "opens": "14:00", "closes": "17:30"},
                {"weekday": 1, "opens": "09:00", "closes": "12:00", "place": "Mairie de Pont-du-Casse"}]
    friday_4pm_paris = datetime(2026, 12, 4, 15, tzinfo=UTC)  # 16:00 in Paris: the afternoon is under way
    found = s.next_openings(schedule, "France Services Agen", friday_4pm_paris)
    assert [s.opening_words(o) for o in found] == ["vendredi 4 décembre, de 14 h à 17 h 30",
                                                   "lundi 7 décembre, de 9 h à 12 h",
                                                   "vendredi 11 décembre, de 14 h à 17 h 30"]
    assert [o.place for o in found] == ["France Services Agen", "Mairie de Pont-du-Casse", "France Services Agen"]
    assert s.next_openings([], "x", friday_4pm_paris) == []

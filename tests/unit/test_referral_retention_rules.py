"""The rules of the personal-data lifecycle of the referral service, written out by
hand: when a referral's and a visit's personal data is due for erasure, what a timeline
entry keeps, how erasure requests are packed, and which spellings of a citizen's
identity and contact are the same for the blind indexes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from relais_kit.vault import normalise
from relais_referral.domain.identity import identity_key, lookup_keys, phone_key
from relais_referral.domain.lifecycle import Status
from relais_referral.domain.model import Citizen
from relais_referral.domain.retention import (
    Erasure,
    Periods,
    VisitFacts,
    erasures,
    in_progress,
    referral_due,
    stripped,
    visit_due,
)

AT = datetime(2027, 6, 1, 3, 0, tzinfo=UTC)
PERIODS = Periods(referral=timedelta(days=180), visit=timedelta(days=90), inactive=timedelta(days=730))


def ago(days: float) -> datetime:
    return AT - timedelta(days=days)


@pytest.mark.parametrize(("status", "changed", "active", "due"), [
    (Status.CLOSED, 181, 181, True),  # closed more than 180 days ago
    (Status.CANCELLED, 180, 180, True),  # exactly at the end of the period
    (Status.CLOSED, 179, 179, False),
    (Status.CLOSED, 1, 1, False),  # closed yesterday
    (Status.ANSWERED, 400, 400, False),  # answered, never closed: not ended…
    (Status.ROUTED, 729, 729, False),  # open and untouched, not for long enough
    (Status.ROUTED, 731, 731, True),  # …until the inactivity period
    (Status.ANSWERED, 731, 731, True),
    (Status.ROUTED, 900, 10, False),  # flagged overdue 10 days ago: it was touched
    (Status.CLOSED, 181, 10, True),  # a late notification does not reopen the period
])
def test_when_a_referral_is_due(status: Status, changed: int, active: int, due: bool) -> None:
    assert referral_due(status, ago(changed), ago(active), AT, PERIODS) is due


@pytest.mark.parametrize(("facts", "due"), [
    (VisitFacts("solved_on_the_spot", ago(91), ago(91), 0, 0), True),
    (VisitFacts("abandoned", ago(91), ago(91), 0, 0), True),
    (VisitFacts("solved_on_the_spot", ago(89), ago(89), 0, 0), False),
    (VisitFacts("referred", ago(400), ago(400), 2, 1), False),  # a referral still needs it
    (VisitFacts("referred", ago(200), ago(200), 2, 0), True),  # its last referral was erased
    (VisitFacts("solved_on_the_spot", ago(95), ago(95), 1, 1), False),  # referred after all, still needed
    (VisitFacts(None, None, ago(729), 0, 0), False),  # never closed: kept until the inactivity period
    (VisitFacts(None, None, ago(731), 0, 0), True),
])
def test_when_a_visit_is_due(facts: VisitFacts, due: bool) -> None:
    assert visit_due(facts, AT, PERIODS) is due


def test_only_closed_or_cancelled_referrals_may_be_erased_on_request() -> None:
    assert [s.value for s in Status if in_progress(s)] == [
        "requested", "routed", "acknowledged", "info_requested", "rejected", "answered"]


def test_a_timeline_entry_keeps_codes_dates_and_channels_never_words() -> None:
    answered = {"outcome": "appointment_offered", "message_to_citizen": "Rendez-vous le 2 décembre.",
                "message_to_adviser": "RDV fixé.", "appointment": {"at": "2026-12-02T10:00:00+01:00",
                                                                "place": "CAF d'Agen"},
                "documents": ["Avis d'imposition"]}
    assert stripped(answered) == {"outcome": "appointment_offered"}
    assert stripped({"question": "Votre RIB ?"}) == {}
    assert stripped({"case_reference": "CAF-47-000813"}) == {}
    assert stripped({"reason_code": "not_eligible", "suggested_operator": "cnam"}) == {
        "reason_code": "not_eligible", "suggested_operator": "cnam"}
    assert stripped({"reason": "La personne a déménagé."}) == {}
    assert stripped({"due_at": "2026-12-04T18:00:00+01:00"}) == {"due_at": "2026-12-04T18:00:00+01:00"}
    assert stripped({"channel": "email", "recipient": "citizen", "reason": "boîte pleine: a@b.fr"}) == {
        "channel": "email", "recipient": "citizen"}
    assert stripped({"recipient": {"email": "a@b.fr"}}) == {}  # only plain values, never an object


def test_erasure_requests_keep_a_visit_with_its_referrals_and_stay_within_the_contract() -> None:
    groups = [Erasure(tuple(f"r{v}-{i}" for i in range(3)), (f"v{v}",)) for v in range(400)]
    packed = erasures(groups)
    assert [len(p.referral_ids) for p in packed] == [999, 201]  # 333 visits of 3, then 67
    assert [len(p.visit_ids) for p in packed] == [333, 67]
    assert packed[0].visit_ids[-1] == "v332" and packed[0].referral_ids[-1] == "r332-2"
    assert erasures([Erasure(("r1", "r2"), ()), Erasure(("r2",), ("v1",))]) == [Erasure(("r1", "r2"), ("v1",))]
    huge = erasures([Erasure(tuple(f"r{i}" for i in range(2500)), ("v",))])
    assert [len(p.referral_ids) for p in huge] == [1000, 1000, 500] and huge[0].visit_ids == ("v",)
    assert erasures([]) == []


@pytest.mark.parametrize("spelling", [
    ("Dupré-Laforêt", "Jean-Éric"), ("Dupre Laforet", "Jean Eric"), ("  DUPRÉ   LAFORÊT ", "jean-éric"),
    ("Dupré_Laforêt", "Jean.Éric"),
])
def test_an_identity_is_the_same_whatever_the_spelling(spelling: tuple[str, str]) -> None:
    family, given = spelling
    assert normalise(identity_key(family, given, date(1971, 2, 3))) == "dupre laforet|jean eric|1971-02-03"


def test_a_birth_date_left_out_is_an_identity_of_its_own() -> None:
    assert identity_key("Roux", "Anne", None) == "Roux|Anne|"
    assert identity_key("Roux", "Anne", None) != identity_key("Roux", "Anne", date(1990, 1, 1))


@pytest.mark.parametrize(("typed", "key"), [
    ("06 12 34 56 78", "0612345678"), ("06.12.34.56.78", "0612345678"), ("+33 6 12 34 56 78", "0612345678"),
    ("0033612345678", "0612345678"), ("+33612345678", "0612345678"), ("+44 20 7946 0958", "+442079460958"),
    ("0044 20 7946 0958", "+442079460958"),
])
def test_a_phone_number_is_the_same_whatever_the_notation(typed: str, key: str) -> None:
    assert phone_key(typed) == key


def test_a_visit_is_indexed_by_identity_and_by_each_contact_given() -> None:
    both = Citizen("Anne", "Roux", "sms", date(1990, 1, 1), email="anne@example.org", phone="06 12 34 56 78")
    assert lookup_keys(both).identity == ("identity", "Roux|Anne|1990-01-01")
    assert lookup_keys(both).contacts == (("email", "anne@example.org"), ("phone", "0612345678"))
    assert lookup_keys(Citizen("Anne", "Roux", "none")).contacts == ()

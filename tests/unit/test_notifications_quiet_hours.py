"""Quiet hours of the citizen's SMS (domain/quiet_hours.py) and the letter that replaces
a failed SMS (domain/fallback.py): pure, no I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from pydantic import ValidationError

from relais_notifications.domain import fallback, quiet_hours
from relais_notifications.domain.french import PARIS
from relais_notifications.domain.model import fallback_letter_id
from relais_notifications.domain.quiet_hours import QuietHours, is_rest_day, next_allowed, parse
from relais_notifications.settings import NotificationsSettings

NIGHT = QuietHours(time(20, 0), time(8, 0))


def paris(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


# 2025-06-10 is a Tuesday, 2025-06-14 a Saturday, 2025-06-16 a Monday.
@pytest.mark.parametrize(("at", "expected"), [
    (paris(2025, 6, 10, 19, 59), None),
    (paris(2025, 6, 10, 20, 0), paris(2025, 6, 11, 8)),
    (paris(2025, 6, 10, 23, 30), paris(2025, 6, 11, 8)),
    (paris(2025, 6, 11, 0, 0), paris(2025, 6, 11, 8)),
    (paris(2025, 6, 11, 7, 59), paris(2025, 6, 11, 8)),
    (paris(2025, 6, 11, 8, 0), None),
    (paris(2025, 6, 14, 12, 0), None),  # Saturday daytime: allowed
    (paris(2025, 6, 14, 20, 0), paris(2025, 6, 16, 8)),  # Saturday evening: Monday morning
    (paris(2025, 6, 14, 23, 0), paris(2025, 6, 16, 8)),
    (paris(2025, 6, 15, 6, 0), paris(2025, 6, 16, 8)),  # Sunday, all day
    (paris(2025, 6, 15, 12, 0), paris(2025, 6, 16, 8)),
    (paris(2025, 6, 15, 21, 0), paris(2025, 6, 16, 8)),
])
def test_nights_and_sundays_wait_for_the_next_allowed_morning(at: datetime, expected: datetime | None) -> None:
    assert next_allowed(at, NIGHT) == expected


@pytest.mark.parametrize(("at", "expected"), [
    (paris(2025, 7, 14, 10, 0), paris(2025, 7, 15, 8)),  # 14 juillet, a Monday
    (paris(2025, 7, 13, 22, 0), paris(2025, 7, 15, 8)),  # Sunday night before it
    (paris(2025, 12, 25, 9, 0), paris(2025, 12, 26, 8)),  # Noël, a Thursday; the 26th is a working day
    (paris(2025, 12, 24, 20, 30), paris(2025, 12, 26, 8)),
    (paris(2025, 4, 19, 21, 0), paris(2025, 4, 22, 8)),  # Saturday, Easter Sunday, Easter Monday
    (paris(2025, 4, 21, 15, 0), paris(2025, 4, 22, 8)),  # lundi de Pâques
    (paris(2025, 5, 1, 12, 0), paris(2025, 5, 2, 8)),  # 1er mai
])
def test_public_holidays_are_quiet_all_day(at: datetime, expected: datetime) -> None:
    assert next_allowed(at, NIGHT) == expected


def test_rest_days_are_french_public_holidays_and_sundays() -> None:
    assert is_rest_day(paris(2025, 7, 14, 0).date()) and is_rest_day(paris(2025, 12, 25, 0).date())
    assert is_rest_day(paris(2025, 4, 21, 0).date()) and is_rest_day(paris(2025, 6, 15, 0).date())
    assert not is_rest_day(paris(2025, 6, 14, 0).date()) and not is_rest_day(paris(2025, 12, 26, 0).date())


def test_the_change_to_summer_time_and_back_moves_nothing() -> None:
    # 30 March 2025, 02:00 → 03:00 (a Sunday); 26 October 2025, 03:00 → 02:00 (a Sunday).
    spring = next_allowed(paris(2025, 3, 29, 21, 0), NIGHT)
    assert spring == paris(2025, 3, 31, 8) and spring is not None
    assert spring.utcoffset() == timedelta(hours=2)  # summer time that Monday, winter time the Saturday
    assert spring.astimezone(UTC) == datetime(2025, 3, 31, 6, 0, tzinfo=UTC)
    autumn = next_allowed(paris(2025, 10, 25, 22, 0), NIGHT)
    assert autumn is not None and autumn.astimezone(UTC) == datetime(2025, 10, 27, 7, 0, tzinfo=UTC)
    # In UTC, on either side of the change: Paris wall-clock time decides.
    assert next_allowed(datetime(2025, 3, 28, 18, 59, tzinfo=UTC), NIGHT) is None  # 19:59 CET
    assert next_allowed(datetime(2025, 3, 31, 5, 59, tzinfo=UTC), NIGHT) == paris(2025, 3, 31, 8)  # 07:59 CEST
    assert next_allowed(datetime(2025, 3, 31, 6, 0, tzinfo=UTC), NIGHT) is None  # 08:00 CEST
    assert next_allowed(datetime(2025, 10, 27, 7, 0, tzinfo=UTC), NIGHT) is None  # 08:00 CET


def test_without_rest_days_only_the_night_is_quiet_and_without_a_window_nothing() -> None:
    nights_only = QuietHours(time(20, 0), time(8, 0), rest_days=False)
    assert next_allowed(paris(2025, 6, 15, 12, 0), nights_only) is None
    assert next_allowed(paris(2025, 6, 14, 23, 0), nights_only) == paris(2025, 6, 15, 8)
    assert next_allowed(paris(2025, 6, 15, 3, 0), None) is None
    with pytest.raises(ValueError, match="timezone-aware"):
        next_allowed(datetime(2025, 6, 15, 3, 0), NIGHT)


def test_the_setting_is_read_or_refused() -> None:
    assert parse("20:00-08:00") == NIGHT
    assert parse(" 21:30 - 07:45 ", rest_days=False) == QuietHours(time(21, 30), time(7, 45), False)
    assert parse("") is None and parse("  ") is None
    for wrong in ("20h-8h", "25:00-08:00", "08:00-20:00", "20:00"):
        with pytest.raises(ValueError):
            parse(wrong)
    assert NotificationsSettings().quiet_hours is None  # tests/conftest.py: off in the tests
    assert NotificationsSettings(RELAIS_SMS_QUIET_HOURS="20:00-08:00").quiet_hours == NIGHT
    assert NotificationsSettings(RELAIS_SMS_QUIET_HOURS="20:00-08:00",
                                 RELAIS_SMS_QUIET_REST_DAYS=False).quiet_hours == QuietHours(
                                     time(20, 0), time(8, 0), rest_days=False)
    with pytest.raises(ValidationError):
        NotificationsSettings(RELAIS_SMS_QUIET_HOURS="la nuit")
    assert NotificationsSettings.model_fields["sms_quiet_hours"].default == "20:00-08:00"  # production: on


def test_the_adviser_reads_why_and_until_when_an_sms_waits() -> None:
    reason = quiet_hours.held_reason(paris(2025, 6, 16, 8))
    assert reason == ("en attente : pas de SMS la nuit, le dimanche ni les jours fériés"
                      " — envoi prévu lundi 16 juin 2025 à 8 h")


def test_the_fallback_letter_has_one_id_per_sms_and_the_reason_says_it_is_ready() -> None:
    sms_id = uuid.uuid4()
    assert fallback_letter_id(sms_id) == fallback_letter_id(sms_id) != fallback_letter_id(uuid.uuid4())
    assert fallback_letter_id(sms_id) != sms_id and fallback_letter_id(sms_id).version == 5
    assert fallback.failed_reason("numéro hors service", letter=True) == \
        "numéro hors service — un courrier est prêt à imprimer"
    assert fallback.failed_reason("numéro hors service", letter=False) == "numéro hors service"
    referral = uuid.uuid4()
    letter = fallback.letter_instead(sms_id=sms_id, referral_id=referral, cause_event_id="e-1",
                                     adviser_id="adv-1", site_id="site-1", subject="Votre demande",
                                     body="Madame Dupont,\n…")
    assert (letter.id, letter.channel, letter.recipient, letter.status, letter.announce) == (
        fallback_letter_id(sms_id), "letter", "citizen", "sent", True)
    assert (letter.referral_id, letter.cause_event_id, letter.subject, letter.body) == (
        referral, "e-1", "Votre demande", "Madame Dupont,\n…")

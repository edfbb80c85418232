from datetime import UTC, date, datetime

from relais_referral.domain.deadlines import PARIS, add_working_days, due_at, is_working_day


def test_weekends_and_french_holidays_are_not_working_days():
    assert not is_working_day(date(2026, 11, 21))  # Saturday
    assert not is_working_day(date(2026, 11, 11))  # Armistice
    assert not is_working_day(date(2026, 12, 25))
    assert is_working_day(date(2026, 11, 23))


def test_adding_working_days_skips_weekends():
    assert add_working_days(date(2026, 11, 20), 1) == date(2026, 11, 23)  # Fri → Mon


def test_adding_working_days_skips_holidays():
    # Tue 10 Nov 2026 + 2 working days: Wed 11 is Armistice → Thu 12, Fri 13.
    assert add_working_days(date(2026, 11, 10), 2) == date(2026, 11, 13)
    # Christmas week: Thu 24 Dec + 1 → Fri 25 is a holiday → Mon 28.
    assert add_working_days(date(2026, 12, 24), 1) == date(2026, 12, 28)


def test_due_at_is_end_of_the_last_working_day_in_paris():
    requested = datetime(2026, 11, 20, 15, 30, tzinfo=UTC)
    due = due_at(requested, 5)
    assert due.tzinfo == PARIS
    assert (due.date(), due.hour) == (date(2026, 11, 27), 18)

"""Answer deadlines in working days: Monday to Friday, French public holidays
excluded (the `holidays` calendar). A deadline ends at the close of its last
working day, Paris time."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import holidays

PARIS = ZoneInfo("Europe/Paris")
END_OF_DAY = time(18, 0)


@cache
def _french_holidays(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("FR", years=year)


def is_working_day(day: date) -> bool:
    return day.weekday() < 5 and day not in _french_holidays(day.year)


def add_working_days(start: date, days: int) -> date:
    day = start
    remaining = days
    while remaining > 0:
        day += timedelta(days=1)
        if is_working_day(day):
            remaining -= 1
    return day


def due_at(requested_at: datetime, working_days: int) -> datetime:
    """The moment the operator's answer is due for a referral made at `requested_at`."""
    local = requested_at.astimezone(PARIS)
    last_day = add_working_days(local.date(), working_days)
    return datetime.combine(last_day, END_OF_DAY, tzinfo=PARIS)

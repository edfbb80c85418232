"""Quiet hours for SMS: a telephone buzzing at night, on a Sunday or a public holiday
is an intrusion the State does not make (what RDV-Service-Public and GOV.UK Notify
avoid too). An SMS due then waits for the next allowed morning: `end` (08:00) of the
next day that is neither a Sunday nor a French public holiday (when `rest_days`).

Pure: Paris wall-clock time (Europe/Paris zoneinfo, so the change to and from summer
time moves nothing), the `holidays` calendar of France, no I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import cache

import holidays

from relais_notifications.domain.french import PARIS, datetime_fr

# What the adviser reads on the delivery while it waits (no personal data).
HELD_REASON = "en attente : pas de SMS la nuit, le dimanche ni les jours fériés"
SUNDAY = 6
_WINDOW = re.compile(r"^\s*([01]\d|2[0-3]):([0-5]\d)\s*-\s*([01]\d|2[0-3]):([0-5]\d)\s*$")


@dataclass(frozen=True)
class QuietHours:
    """The night no SMS goes out: from `start` (evening) to `end` (next morning), Paris
    time; with `rest_days`, Sundays and public holidays are quiet all day long."""

    start: time
    end: time
    rest_days: bool = True

    def __post_init__(self) -> None:
        if self.start <= self.end:
            raise ValueError("quiet hours are a night: the start (evening) must come after the end (morning)")


def parse(text: str, *, rest_days: bool = True) -> QuietHours | None:
    """`"20:00-08:00"` → the night from 20:00 to 08:00; `""` → no quiet hours at all
    (ValueError for anything else, so a typo stops the service at start)."""
    if not text.strip():
        return None
    match = _WINDOW.match(text)
    if match is None:
        raise ValueError(f"quiet hours {text!r} are not HH:MM-HH:MM")
    start_h, start_m, end_h, end_m = (int(g) for g in match.groups())
    return QuietHours(time(start_h, start_m), time(end_h, end_m), rest_days)


@cache
def _french_holidays(year: int) -> holidays.HolidayBase:
    return holidays.country_holidays("FR", years=year)


def is_rest_day(day: date) -> bool:
    """A Sunday or a French public holiday (14 juillet, 25 décembre, lundi de Pâques…)."""
    return day.weekday() == SUNDAY or day in _french_holidays(day.year)


def next_allowed(at: datetime, window: QuietHours | None) -> datetime | None:
    """None when an SMS may go out at `at` (timezone-aware); else the moment it may,
    Paris time: `window.end` of the first allowed day from the morning after `at`."""
    if at.tzinfo is None:
        raise ValueError("next_allowed needs a timezone-aware moment")
    if window is None:
        return None
    local = at.astimezone(PARIS)
    quiet_day = window.rest_days and is_rest_day(local.date())
    clock = local.time().replace(tzinfo=None)
    if not quiet_day and window.end <= clock < window.start:
        return None
    day = local.date() if clock < window.end else local.date() + timedelta(days=1)
    while window.rest_days and is_rest_day(day):
        day += timedelta(days=1)
    # The wall-clock time of that day in Paris: its offset (winter or summer) is that
    # day's own, whatever it was at `at`.
    return datetime.combine(day, window.end, tzinfo=PARIS)


def held_reason(until: datetime) -> str:
    """The reason shown while an SMS waits, with when it will go: `… — envoi prévu
    lundi 16 juin 2025 à 8 h`."""
    return f"{HELD_REASON} — envoi prévu {datetime_fr(until)}"

"""The place of the day: where an adviser works today, their home site or one of its
permanences. Asked right after signing in when one of their permanences is scheduled
today, then kept for the day (Paris date, adapters/places.py): signing out and in again
the same day does not ask again; the next day does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from urllib.parse import quote

from asyncpg import Connection as Conn

from relais_kit.auth import User
from relais_kit.envelope import now
from relais_kit.webui import PARIS
from relais_referral.adapters import places as place_store
from relais_referral.entrypoints.ui.forms import Place, choose_place, places_today

PAGE = "/lieu"


@dataclass(frozen=True)
class Start:
    """Where a new session starts: the place chosen today, else the home site; `ask`
    when nothing was chosen today and a permanence is scheduled today."""

    place: Place | None
    ask: bool


def paris_today() -> tuple[date, int]:
    """Today's date in Paris and its ISO weekday (1 = Monday)."""
    local = now().astimezone(PARIS)
    return local.date(), local.isoweekday()


async def places(conn: Conn, home_id: str) -> list[Place]:
    """The home site and its permanences, those scheduled today first."""
    return places_today(await place_store.home_and_permanences(conn, home_id), home_id, paris_today()[1])


async def start(conn: Conn, user: User) -> Start:
    if user.role != "adviser" or not user.site_id:
        return Start(None, False)
    known = await places(conn, user.site_id)
    chosen = await place_store.place_of_the_day(conn, user.user_id, paris_today()[0])
    kept = choose_place(known, chosen or "")
    if kept is not None:
        return Start(kept, False)
    home = next((p for p in known if p.home), None)
    return Start(home, any(p.today and not p.home for p in known))


async def keep(conn: Conn, user_id: str, place: Place) -> None:
    await place_store.keep_place_of_the_day(conn, user_id, paris_today()[0], place.site_id)


def session_place(place: Place | None) -> dict[str, str]:
    return {"place_id": place.site_id, "place_name": place.name} if place else {}


def after_sign_in(begin: Start, suite: str, home: str) -> str:
    """Where signing in leads: the place page first when asking (then `suite`)."""
    if not begin.ask:
        return suite or home
    return PAGE + (f"?suite={quote(suite, safe='/')}" if suite and suite != home else "")

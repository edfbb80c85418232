"""The place of the day (issue #12 item 3): asked after signing in only when a permanence
is scheduled today and nothing was chosen today; where signing in leads; the demo's
adviser has a permanence on every day but Sunday."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from relais_kit.auth import User
from relais_referral.entrypoints.ui import place_of_day
from relais_referral.entrypoints.ui.forms import Place, places_today
from relais_referral.entrypoints.ui.place_of_day import Start, after_sign_in

HOME = Place("agen", "Agen", "post_office", True, True, ())
TODAY = date(2026, 12, 4)  # a Friday
SITES: list[dict[str, Any]] = [
    {"site_id": "agen", "name": "Agen", "kind": "post_office", "parent_site_id": None, "schedule": []},
    {"site_id": "foulayronnes", "name": "Foulayronnes", "kind": "mobile_permanence", "parent_site_id": "agen",
     "schedule": [{"weekday": 5, "opens": "09:00", "closes": "12:00", "place": "Mairie"}]},
    {"site_id": "pont-du-casse", "name": "Pont-du-Casse", "kind": "mobile_permanence", "parent_site_id": "agen",
     "schedule": [{"weekday": 2, "opens": "09:00", "closes": "12:00"}]},
]
ADVISER = User("sophie", "adviser", "agen", "Sophie")


def test_signing_in_leads_to_the_place_page_only_when_asking() -> None:
    assert after_sign_in(Start(HOME, False), "", "/aujourdhui") == "/aujourdhui"
    assert after_sign_in(Start(HOME, False), "/demandes/1", "/aujourdhui") == "/demandes/1"
    assert after_sign_in(Start(HOME, True), "", "/aujourdhui") == "/lieu"
    assert after_sign_in(Start(HOME, True), "/aujourdhui", "/aujourdhui") == "/lieu"
    assert after_sign_in(Start(HOME, True), "/demandes/1?x=1", "/aujourdhui") == "/lieu?suite=/demandes/1%3Fx%3D1"


@pytest.fixture
def stored(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The places store faked: the sites above; `stored["chosen"]` the choice kept, by day."""
    state: dict[str, Any] = {"chosen": {}, "weekday": 5}

    async def sites(conn: Any, home_id: str) -> list[dict[str, Any]]:
        return SITES

    async def chosen(conn: Any, user_id: str, day: date) -> str | None:
        return state["chosen"].get((user_id, day))  # type: ignore[no-any-return]

    monkeypatch.setattr(place_of_day.place_store, "home_and_permanences", sites)
    monkeypatch.setattr(place_of_day.place_store, "place_of_the_day", chosen)
    monkeypatch.setattr(place_of_day, "paris_today", lambda: (TODAY, state["weekday"]))
    return state


async def test_asked_when_a_permanence_is_scheduled_today_and_nothing_chosen(stored: dict[str, Any]) -> None:
    begin = await place_of_day.start(None, ADVISER)  # type: ignore[arg-type]
    assert begin.ask and begin.place is not None and begin.place.site_id == "agen"


async def test_the_choice_of_the_day_is_kept(stored: dict[str, Any]) -> None:
    stored["chosen"][("sophie", TODAY)] = "foulayronnes"
    begin = await place_of_day.start(None, ADVISER)  # type: ignore[arg-type]
    assert not begin.ask and begin.place is not None and begin.place.site_id == "foulayronnes"


async def test_not_asked_without_a_permanence_today_nor_for_other_roles(stored: dict[str, Any]) -> None:
    stored["weekday"] = 7
    begin = await place_of_day.start(None, ADVISER)  # type: ignore[arg-type]
    assert not begin.ask and begin.place is not None and begin.place.site_id == "agen"
    stored["weekday"] = 5
    supervisor = User("claire", "supervisor", None, "Claire", "47")
    assert await place_of_day.start(None, supervisor) == Start(None, False)  # type: ignore[arg-type]


async def test_a_choice_no_longer_offered_is_not_kept(stored: dict[str, Any]) -> None:
    stored["chosen"][("sophie", TODAY)] = "martignas"  # another site's: forged, or the adviser moved
    begin = await place_of_day.start(None, ADVISER)  # type: ignore[arg-type]
    assert begin.ask and begin.place is not None and begin.place.site_id == "agen"


def test_the_demo_adviser_holds_a_permanence_every_day_but_sunday() -> None:
    from relais_kit.settings import REPO_ROOT
    from relais_sites.entrypoints.demo import load_demo_sites

    sites = [{"site_id": s.site_id, "name": s.name, "kind": s.kind, "parent_site_id": s.parent_site_id,
              "schedule": [{"weekday": t.weekday, "opens": t.opens, "closes": t.closes, "place": t.place}
                           for t in s.schedule]}
             for s in load_demo_sites(REPO_ROOT / "deploy" / "demo" / "sites.yaml")]
    for weekday in range(1, 7):
        places = places_today(sites, "agen-leon-blum-poste", weekday)
        assert any(p.today and not p.home for p in places), weekday

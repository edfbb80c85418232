"""Today: the visits of the day and the referrals needing attention; the place of the day
(an adviser's home site or one of its mobile permanences)."""

from __future__ import annotations

from datetime import datetime, time, timedelta

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.webui import PARIS, PageProblem
from relais_referral.adapters import places as place_store
from relais_referral.entrypoints.ui.forms import Place, choose_place, places_today
from relais_referral.entrypoints.ui.pages import (
    AdviserUser,
    Form,
    Viewer,
    WebUser,
    connection,
    context,
    invalid,
    pages,
    redirect,
    render,
    writer,
)
from relais_referral.service_layer.scope import scope_of, sites_of

router = APIRouter()


def _today_bounds() -> tuple[datetime, datetime, int]:
    local = now().astimezone(PARIS)
    start = datetime.combine(local.date(), time(0), tzinfo=PARIS)
    return start, start + timedelta(days=1), local.isoweekday()


@router.get("/aujourdhui")
async def today(request: Request, user: Viewer) -> Response:
    start, end, _ = _today_bounds()
    async with connection(request) as conn:
        sites = await sites_of(conn, scope_of(user.as_user()))
        permanence = user.place if user.is_adviser and user.place != user.site_id else None
        # At a permanence today (still one of theirs): its visits.
        visit_sites = [permanence] if permanence and sites is not None and permanence in sites else sites
        visits = await place_store.visits_between(conn, context(request).vault, visit_sites, start, end)
        attention = await place_store.needing_attention(conn, sites, None, now())
    return render(request, "ui/today.html.j2", nav="aujourdhui", visits=visits, attention=attention)


async def _places(request: Request, user: WebUser) -> list[Place]:
    if not user.site_id:
        return []
    _, _, weekday = _today_bounds()
    async with connection(request) as conn:
        sites = await place_store.home_and_permanences(conn, user.site_id)
    return places_today(sites, user.site_id, weekday)


@router.get("/lieu")
async def place_page(request: Request, user: AdviserUser) -> Response:
    return render(request, "ui/place.html.j2", nav="aujourdhui", places=await _places(request, user),
                  values={"place": user.place or ""}, errors={})


@router.post("/lieu")
async def choose(request: Request, form: Form) -> Response:
    user = await writer(request, form)
    if not user.is_adviser:
        raise PageProblem(403, "Réservé aux conseillers", "Seuls les conseillers choisissent un lieu.")
    places = await _places(request, user)
    place = choose_place(places, form.get("place", ""))
    if place is None:
        return invalid(request, "ui/place.html.j2", {"place": "Choisissez un lieu dans la liste."},
                       nav="aujourdhui", places=places, values={"place": user.place or ""})
    ui = pages(request)
    ui.set_session(request, ui.session(request).with_data(place_id=place.site_id, place_name=place.name))
    log.info("place_chosen", place=place.site_id, scheduled_today=place.today)
    return redirect(request, "/aujourdhui")

"""Today: the visits of the day and the referrals needing attention; the place of the day
(an adviser's home site or one of its mobile permanences)."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.webui import PARIS, PageProblem, local_path
from relais_referral.adapters import places as place_store
from relais_referral.entrypoints.ui import place_of_day
from relais_referral.entrypoints.ui.forms import Place, choose_place
from relais_referral.entrypoints.ui.pages import (
    AdviserUser,
    Form,
    Viewer,
    WebUser,
    connection,
    context,
    invalid,
    pages,
    pool,
    redirect,
    render,
    writer,
)
from relais_referral.service_layer import live
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
        seq = await live.latest_seq_of_sites(conn, sites)
        attention, names = await _attention(request, user, conn, sites)
    return render(request, "ui/today.html.j2", nav="aujourdhui", visits=visits, attention=attention, names=names,
                  seq=seq)


async def _attention(request: Request, user: WebUser, conn: Any,
                     sites: list[str] | None) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The referrals needing attention, and their citizens' names (an adviser's)."""
    attention = await place_store.needing_attention(conn, sites, None, now())
    names = await place_store.citizen_names(conn, context(request).vault, [r["visit_id"] for r in attention]) \
        if user.is_adviser else {}
    return attention, names


@router.get("/aujourdhui/a-traiter")
async def attention_fragment(request: Request, user: Viewer) -> Response:
    """The referrals needing attention alone, for today-live.js."""
    async with connection(request) as conn:
        attention, names = await _attention(request, user, conn, await sites_of(conn, scope_of(user.as_user())))
    return render(request, "ui/_attention.html.j2", attention=attention, names=names)


@router.get("/aujourdhui/flux")
async def today_feed(request: Request, user: Viewer, depuis: str = "") -> Response:
    """text/event-stream: `chronologie` each time a referral of the user's scope moves."""
    async with connection(request) as conn:
        sites = await sites_of(conn, scope_of(user.as_user()))
    stream = live.changes(live.sites_reader(pool(request), sites),
                          live.since(request.headers.get("last-event-id"), depuis), request.is_disconnected,
                          lambda: pages(request).still_signed_in(request), heartbeat_s=live.HEARTBEAT_S)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _places(request: Request, user: WebUser) -> list[Place]:
    if not user.site_id:
        return []
    async with connection(request) as conn:
        return await place_of_day.places(conn, user.site_id)


@router.get("/lieu")
async def place_page(request: Request, user: AdviserUser, suite: str = "") -> Response:
    return render(request, "ui/place.html.j2", nav="", places=await _places(request, user),
                  values={"place": user.place or ""}, errors={}, suite=local_path(suite, ""))


@router.post("/lieu")
async def choose(request: Request, form: Form) -> Response:
    user = await writer(request, form)
    if not user.is_adviser:
        raise PageProblem(403, "Réservé aux conseillers", "Seuls les conseillers choisissent un lieu.")
    places = await _places(request, user)
    place = choose_place(places, form.get("place", ""))
    suite = local_path(form.get("suite"), "")
    if place is None:
        return invalid(request, "ui/place.html.j2", {"place": "Choisissez un lieu dans la liste."},
                       nav="", places=places, values={"place": user.place or ""}, suite=suite)
    async with connection(request) as conn:
        await place_of_day.keep(conn, user.user_id, place)  # for the day: signing in again keeps it
    ui = pages(request)
    ui.set_session(request, ui.session(request).with_data(**place_of_day.session_place(place)))
    log.info("place_chosen", place=place.site_id, scheduled_today=place.today)
    return redirect(request, suite or "/aujourdhui")

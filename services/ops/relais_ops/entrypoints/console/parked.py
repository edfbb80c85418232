"""GET /console/en-attente: each service's parked outbox rows (events that could not be
published and hold the rows of their key behind them), and retrying or discarding one:
a confirmation page with a reason, audited here, then the service's own ops API (which
keeps its own record)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relais_kit import webui
from relais_ops.entrypoints.console.dead_letters import REASON_MAX, REASON_NEEDED, audit_of, seconds
from relais_ops.entrypoints.console.pages import OpsUser, checked_form, redirect, render
from relais_ops.entrypoints.console.services import LABELS, ops_api, service_urls, settings_of
from relais_ops.service_layer import parked
from relais_ops.service_layer.audited import ReasonRequired
from relais_ops.service_layer.ops_api import Action, NotParked, Unanswered

router = APIRouter()
PATH = "/console/en-attente"
SLUGS: dict[str, Action] = {"relancer": "retry", "abandonner": "discard"}
DONE = {"relancer": "L'évènement est rendu au relais : il sera publié dans l'instant, puis ceux qui l'attendaient.",
        "abandonner": "L'évènement est abandonné pour de bon ; ceux qui l'attendaient sont publiés."}


@router.get(PATH, include_in_schema=False)
async def parked_page(request: Request, ops: OpsUser, fait: str = "") -> Response:
    services = list(service_urls(settings_of(request)))
    found = await parked.everywhere(ops_api(request, ops), services)
    return render(request, "parked.html.j2", services=found, labels=LABELS, seconds=seconds,
                  done=DONE.get(fait), confirm=None)


def _target(request: Request, service: str, row_id: str, slug: str) -> tuple[str, int, Action]:
    if service not in service_urls(settings_of(request)) or slug not in SLUGS or not row_id.isdigit():
        raise webui.PageProblem(404, "Page introuvable", "Ce service, cet évènement ou cette action n'existe pas.")
    return service, int(row_id), SLUGS[slug]


def _confirm(request: Request, service: str, row_id: int, slug: str, status_code: int = 200,
             errors: dict[str, str] | None = None, problem: str | None = None) -> Response:
    return render(request, "parked.html.j2", status_code, services=[], labels=LABELS, seconds=seconds, done=None,
                  confirm={"service": service, "row_id": row_id, "slug": slug}, errors=errors or {}, values={},
                  problem=problem, reason_max=REASON_MAX)


@router.get(PATH + "/{service}/{row_id}/{slug}", include_in_schema=False)
async def confirm_page(request: Request, service: str, row_id: str, slug: str, ops: OpsUser) -> Response:
    name, number, _ = _target(request, service, row_id, slug)
    return _confirm(request, name, number, slug)


@router.post(PATH + "/{service}/{row_id}/{slug}", include_in_schema=False)
async def act(request: Request, service: str, row_id: str, slug: str, ops: OpsUser) -> Response:
    form = await checked_form(request)
    name, number, action = _target(request, service, row_id, slug)
    try:
        await parked.act(ops_api(request, ops), audit_of(request), ops.user.user_id, name, number, action,
                         form.get("motif", "")[:REASON_MAX])
    except ReasonRequired:
        return _confirm(request, name, number, slug, 422, errors={"motif": REASON_NEEDED})
    except NotParked:
        return _confirm(request, name, number, slug, 404, problem="Cet évènement n'est plus en attente : "
                        "il a déjà été relancé, publié ou abandonné.")
    except Unanswered as exc:
        return _confirm(request, name, number, slug, 502, problem=f"Le service n'a pas pu le faire : {exc}.")
    return redirect(request, f"{PATH}?fait={slug}")

"""/journal: who saw or changed which referral, and who saw which visit, when, through
which channel — for supervisors (their department) and ops (everything); filtered by
referral, user and day, newest first, 50 a page. Advisers are refused."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from relais_kit.webui import PARIS
from relais_referral.entrypoints.ui.pages import Viewer, connection, render, require_roles
from relais_referral.service_layer import audit
from relais_referral.service_layer.scope import scope_of

router = APIRouter(dependencies=[Depends(audit.ui_channel)])
ACTION_LABELS = {
    "view": "Consultation", "refer": "Orientation vers l'opérateur", "provide_info": "Réponse à l'opérateur",
    "cancel": "Annulation", "close": "Clôture", "reroute": "Réorientation",
    "view_visit": "Consultation d'une visite",
    "complete_visit": "Ajout d'informations à une visite",
    "print_receipt": "Récépissé imprimé",
    "renew_status_code": "Nouveau code de suivi (l'ancien ne fonctionne plus)",
}
CHANNEL_LABELS = {"ui": "Pages web", "api": "API"}


@router.get("/journal")
async def journal(request: Request, user: Viewer) -> Response:
    require_roles(user, "supervisor", "ops")
    query = dict(request.query_params)
    filters, errors = audit.JournalFilters.parse(query)
    async with connection(request) as conn:
        rows, more = await audit.journal(conn, scope_of(user.as_user()), filters, PARIS)

    def page_url(page: int) -> str:
        kept = {k: query[k] for k in ("demande", "utilisateur", "date") if query.get(k) and k not in errors}
        if page > 1:
            kept["page"] = str(page)
        return "/journal" + (f"?{urlencode(kept)}" if kept else "")

    values = {k: query.get(k, "") for k in ("demande", "utilisateur", "date")}
    return render(request, "ui/audit.html.j2", 422 if errors else 200, nav="journal", rows=rows,
                  filters=filters, values=values, errors=errors, actions=ACTION_LABELS,
                  channels=CHANNEL_LABELS,
                  previous_url=page_url(filters.page - 1) if filters.page > 1 else None,
                  next_url=page_url(filters.page + 1) if more else None)

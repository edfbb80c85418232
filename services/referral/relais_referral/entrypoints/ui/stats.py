"""/statistiques: the figures of the user's scope over 7, 30 or 90 days."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from relais_kit.envelope import now
from relais_referral.entrypoints.ui.pages import STATUS_LABELS, Viewer, connection, render
from relais_referral.service_layer import audit, stats
from relais_referral.service_layer.scope import scope_of

router = APIRouter(dependencies=[Depends(audit.ui_channel)])


@router.get("/statistiques")
async def statistics(request: Request, user: Viewer, periode: str = "") -> Response:
    days = stats.parse_period(periode)
    scope = scope_of(user.as_user())
    async with connection(request) as conn:
        figures = await stats.figures(conn, scope, days, now())
    return render(request, "ui/stats.html.j2", nav="statistiques", figures=figures, periods=stats.PERIODS,
                  days=days, duration=stats.duration_fr, status_labels=STATUS_LABELS,
                  scope_label=_scope_label(user.role, scope.department))


def _scope_label(role: str, department: str | None) -> str:
    if role == "adviser":
        return "votre site et ses permanences"
    if department:
        return f"le département {department}"
    return "tous les sites"

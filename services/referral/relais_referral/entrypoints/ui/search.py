"""/demandes: the referrals of the user's scope, filtered by status, operator, site,
overdue flag and one search box (name — advisers and supervisors only —, our reference,
the operator's); a GET form (works without JavaScript), 50 a page."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from relais_kit.envelope import now
from relais_kit.logs import log
from relais_referral.entrypoints.ui.pages import STATUS_LABELS, Viewer, connection, context, render
from relais_referral.service_layer import audit, search
from relais_referral.service_layer.scope import scope_of

router = APIRouter(dependencies=[Depends(audit.ui_channel)])
AWAITING = ("routed", "acknowledged", "info_requested")


@router.get("/demandes")
async def referrals(request: Request, user: Viewer) -> Response:
    filters = search.Filters.parse(dict(request.query_params))
    searched = filters.for_role(user.role)
    scope = scope_of(user.as_user())
    vault = context(request).vault
    async with connection(request) as conn, conn.transaction():
        # A text not understood lists nothing: the whole list under it would read as its results.
        rows, more = await search.search(conn, vault, scope, filters, searched) \
            if not searched.not_understood else ([], False)
        names = await search.citizen_names(conn, vault, user.as_user(), searched, rows) if rows else {}
        sites = await search.sites_in(conn, scope)
    log.info("referrals_searched", kind=search.kind_of(searched), results=len(rows))
    catalogue = context(request).catalogue

    def page_url(page: int) -> str:
        query = filters.query(page=page)
        return "/demandes" + (f"?{urlencode(query)}" if query else "")

    return render(
        request, "ui/referrals.html.j2", nav="demandes", rows=rows, filters=filters, sites=sites,
        searched=searched, names=names, shows_names=user.role in search.NAMES_FOR,
        statuses=list(STATUS_LABELS.items()),
        operators=sorted(((c, o.name) for c, o in catalogue.operators.items()), key=lambda p: p[1]),
        procedures={p.code: p.label for o in catalogue.operators.values() for p in o.procedures.values()},
        awaiting=AWAITING, at=now(),
        previous_url=page_url(filters.page - 1) if filters.page > 1 else None,
        next_url=page_url(filters.page + 1) if more else None)

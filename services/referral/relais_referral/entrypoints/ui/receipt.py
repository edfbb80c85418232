"""/demandes/{id}/recu: the receipt the adviser hands over when referring — operator,
procedure, deadline, the citizen's status code, its link and QR — printed from the
browser or as a PDF, with the referral's current code (the same at each print, the one
the citizen's messages carry). /demandes/{id}/nouveau-code: « Nouveau code », asked
first, replaces it (the old one stops working) and shows the receipt with the new one."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup

from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.printing import pdf_from_html, qr_svg  # weasyprint is imported on the first PDF
from relais_kit.webui import PageProblem
from relais_referral.domain import status_link
from relais_referral.entrypoints.ui.pages import (
    Form,
    Viewer,
    WebUser,
    Writer,
    context,
    not_found,
    pages,
    render,
    transaction,
)
from relais_referral.service_layer import audit, status_links
from relais_referral.service_layer.errors import NotAllowed, NotFound
from relais_referral.service_layer.scope import may_see

router = APIRouter(dependencies=[Depends(audit.ui_channel)])
RECEIPT_CSS = Path(__file__).resolve().parents[2] / "static" / "ui" / "receipt.css"
NOT_ALLOWED = ("Action non autorisée", "Seul un conseiller du site de la demande imprime son récépissé.")
NOT_FOUND = ("Demande introuvable", "Aucune demande de votre périmètre ne porte cette référence.")


def _id(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise not_found("Demande introuvable", "Cette référence de demande n'existe pas.") from None


def public_url(request: Request) -> str:
    """Where citizens reach this service: RELAIS_PUBLIC_URL, else its own address."""
    configured: str = request.app.state.settings.public_url
    return (configured or str(request.base_url)).rstrip("/")


async def _adviser_of(request: Request, rid: str, user: WebUser) -> None:
    """Before showing a form: 404 outside the adviser's scope, 403 for other roles."""
    async with transaction(request) as conn:
        site_id = await conn.fetchval("SELECT site_id FROM referrals WHERE referral_id = $1", rid)
        if site_id is None or not await may_see(conn, user.as_user(), site_id):
            raise not_found(*NOT_FOUND)
    if not user.is_adviser:
        raise PageProblem(403, *NOT_ALLOWED)


@router.get("/demandes/{referral_id}/recu")
async def ask(request: Request, referral_id: str, user: Viewer) -> Response:
    rid = _id(referral_id)
    await _adviser_of(request, rid, user)
    return render(request, "ui/recu_demander.html.j2", nav="demandes", referral_id=rid)


@router.post("/demandes/{referral_id}/recu")
async def print_receipt(request: Request, referral_id: str, user: Writer, form: Form) -> Response:
    rid = _id(referral_id)
    receipt = await _at_the_counter(request, status_links.receipt, user, rid)
    return _sheet(request, rid, receipt, form.get("format") == "pdf")


@router.get("/demandes/{referral_id}/nouveau-code")
async def ask_renewal(request: Request, referral_id: str, user: Viewer) -> Response:
    rid = _id(referral_id)
    await _adviser_of(request, rid, user)
    return _renewal_page(request, rid)


def _renewal_page(request: Request, rid: str) -> Response:
    return render(
        request, "ui/confirm.html.j2", nav="demandes", question="Donner un nouveau code de suivi ?",
        explanation=["Le code de suivi actuel ne fonctionnera plus : ni sur le récépissé déjà remis, "
                     "ni dans les messages déjà envoyés à la personne.",
                     "Faites-le si la personne a perdu son code ou si quelqu'un d'autre l'a vu. "
                     "Le nouveau récépissé s'affiche ensuite : remettez-le à la personne, "
                     "ses prochains messages porteront le nouveau code."],
        action=f"/demandes/{rid}/nouveau-code", yes="Oui, donner un nouveau code",
        back=f"/demandes/{rid}/recu", no="Non, garder le code actuel", reason=False, errors={}, values={})


@router.post("/demandes/{referral_id}/nouveau-code")
async def renew(request: Request, referral_id: str, user: Writer, form: Form) -> Response:
    rid = _id(referral_id)
    if form.get("confirmation") != "oui":  # not confirmed (a misclick, a forged form): ask
        await _adviser_of(request, rid, user)
        return _renewal_page(request, rid)
    receipt = await _at_the_counter(request, status_links.renew, user, rid)
    return _sheet(request, rid, receipt, False, renewed=True)


async def _at_the_counter(request: Request, action: Any, user: Writer, rid: str) -> status_links.Receipt:
    """Prints or renews (`action`) in one transaction; outside the adviser's scope a 404,
    for another role or a site they only see a 403."""
    try:
        async with transaction(request) as conn:
            return await action(conn, context(request), user.as_user(), rid, now())  # type: ignore[no-any-return]
    except NotFound:
        raise not_found(*NOT_FOUND) from None
    except NotAllowed:
        raise PageProblem(403, *NOT_ALLOWED) from None


def _sheet(request: Request, rid: str, receipt: status_links.Receipt, pdf: bool, *,
           renewed: bool = False) -> Response:
    ctx, referral = context(request), receipt.referral
    operator = ctx.catalogue.operator(referral.operator)
    procedure = ctx.catalogue.procedure(referral.operator, referral.procedure)
    link = f"{public_url(request)}/suivi/{status_link.grouped(receipt.code)}"
    sheet: dict[str, Any] = {"operator": operator.name if operator else referral.operator,
             "procedure": procedure.label if procedure else referral.procedure,
             "due_at": referral.due_at, "requested_at": referral.requested_at, "site_name": receipt.site_name,
             "code": status_link.grouped(receipt.code), "link": link, "suivi": f"{public_url(request)}/suivi",
             "qr": Markup(qr_svg(link, module_mm=1.0)),  # noqa: S704 - generated SVG, no user text
             "expires_days": status_link.EXPIRES_AFTER.days}
    if pdf:
        html = pages(request).env.get_template("ui/recu_pdf.html.j2").render(
            css=Markup(RECEIPT_CSS.read_text(encoding="utf-8")), **sheet)  # noqa: S704 - our own file
        log.info("receipt_printed", format="pdf")
        return Response(pdf_from_html(html), media_type="application/pdf",
                        headers={"Cache-Control": "no-store",
                                 "Content-Disposition": 'inline; filename="recepisse.pdf"'})
    log.info("receipt_printed", format="html")
    return render(request, "ui/recu.html.j2", nav="demandes", referral_id=rid, renewed=renewed, **sheet)

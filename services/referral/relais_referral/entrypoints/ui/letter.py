"""/demandes/{id}/courrier/{delivery}: the letter the citizen was sent, as a printable
A4 page, and /demandes/{id}/courrier/{delivery}.pdf: the same letter as a PDF laid out
for a window envelope; /aujourdhui/courriers.pdf: the letters written today for the
adviser's place of the day, in one PDF. All come from the notifications service, asked
server-side with a one-minute token of the signed-in user (it checks and audits the
read as them)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from relais_kit.auth import api_audience, issue_token
from relais_kit.logs import log
from relais_referral.adapters import notifications_api
from relais_referral.entrypoints.ui.pages import Viewer, connection, context, not_found, render
from relais_referral.entrypoints.ui.place_of_day import paris_today
from relais_referral.service_layer import audit, letters
from relais_referral.service_layer.errors import NotFound

router = APIRouter(dependencies=[Depends(audit.ui_channel)])
TOKEN_TTL = timedelta(minutes=1)
UNAVAILABLE = {
    "missing": "Ce courrier n'est pas disponible pour votre compte.",
    "erased": "Le texte de ce courrier a été effacé (fin de la durée de conservation, ou à la demande de la "
              "personne).",
    "down": "Le service des notifications ne répond pas pour le moment : réessayez dans quelques minutes.",
}

STATUS = {"missing": 404, "erased": 410, "down": 503}


def _pdf(pdf: bytes, filename: str) -> Response:
    # No personal data in the file's name; never kept by a cache.
    return Response(pdf, media_type="application/pdf", headers={
        "Cache-Control": "no-store", "Content-Disposition": f'inline; filename="{filename}"'})


def _uuid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise not_found("Courrier introuvable", "Ce courrier n'existe pas.") from None


async def _checked_token(request: Request, user: Viewer, rid: str, did: str) -> str:
    """The one-minute token to ask for this letter, once the user may see it here."""
    async with connection(request) as conn:
        try:
            await letters.check_letter(conn, context(request).vault, user.as_user(), rid, did)
        except NotFound:
            raise not_found("Courrier introuvable",
                            "Aucune demande de votre périmètre n'a donné lieu à ce courrier.") from None
    return issue_token(user.as_user(), request.app.state.token_signer, TOKEN_TTL,
                       audiences=[api_audience("notifications")])


# Before the page's route: "{delivery_id}" would take "….pdf" too.
@router.get("/demandes/{referral_id}/courrier/{delivery_id}.pdf")
async def printable_pdf(request: Request, referral_id: str, delivery_id: str, user: Viewer) -> Response:
    rid, did = _uuid(referral_id), _uuid(delivery_id)
    token = await _checked_token(request, user, rid, did)
    try:
        pdf = await notifications_api.letter_pdf(request.app.state.settings.notifications_url, token, did)
    except notifications_api.LetterUnavailable as exc:
        log.warning("letter_pdf_unavailable", referral_id=rid, why=exc.why)
        return render(request, "ui/letter.html.j2", STATUS.get(exc.why, 503), nav="demandes", referral_id=rid,
                      delivery_id=did, text=None, unavailable=UNAVAILABLE.get(exc.why, UNAVAILABLE["down"]))
    return _pdf(pdf, f"courrier-{did[:8]}.pdf")


@router.get("/demandes/{referral_id}/courrier/{delivery_id}")
async def printable(request: Request, referral_id: str, delivery_id: str, user: Viewer) -> Response:
    rid, did = _uuid(referral_id), _uuid(delivery_id)
    token = await _checked_token(request, user, rid, did)
    text, why = None, None
    try:
        text = await notifications_api.letter(request.app.state.settings.notifications_url, token, did)
    except notifications_api.LetterUnavailable as exc:
        why = exc.why
        log.warning("letter_unavailable", referral_id=rid, why=why)
    return render(request, "ui/letter.html.j2", STATUS.get(why or "", 200),
                  nav="demandes", referral_id=rid, delivery_id=did, text=text,
                  unavailable=UNAVAILABLE.get(why or ""))


NO_LETTERS_TODAY = {
    "missing": ("Aucun courrier à imprimer", "Aucun courrier n'a été écrit aujourd'hui pour ce lieu."),
    "down": ("Courriers indisponibles", UNAVAILABLE["down"]),
}


@router.get("/aujourdhui/courriers.pdf")
async def letters_of_today(request: Request, user: Viewer) -> Response:
    """The letters of the place of the day written today (Paris time), one page each."""
    site_id = user.place
    if not user.is_adviser or not site_id:
        raise not_found("Courriers introuvables", "Les courriers du jour sont ceux d'un lieu de conseiller.")
    token = issue_token(user.as_user(), request.app.state.token_signer, TOKEN_TTL,
                        audiences=[api_audience("notifications")])
    day = paris_today()[0]
    try:
        pdf = await notifications_api.letters_of_day(request.app.state.settings.notifications_url, token,
                                                     site_id, day.isoformat())
    except notifications_api.LetterUnavailable as exc:
        why = "missing" if exc.why == "missing" else "down"
        log.info("letters_of_day_unavailable", site_id=site_id, why=why)
        title, message = NO_LETTERS_TODAY[why]
        return render(request, "ui/letters_of_day.html.j2", 200 if why == "missing" else 503,
                      nav="aujourdhui", title=title, message=message)
    return _pdf(pdf, f"courriers-{day.isoformat()}.pdf")

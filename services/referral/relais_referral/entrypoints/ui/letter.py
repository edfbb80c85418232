"""/demandes/{id}/courrier/{delivery}: the letter the citizen was sent, as a printable
A4 page. The text comes from the notifications service, asked server-side with a
one-minute token of the signed-in user (it checks and audits the read as them)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from relais_kit.auth import api_audience, issue_token
from relais_kit.logs import log
from relais_referral.adapters import notifications_api
from relais_referral.entrypoints.ui.pages import Viewer, connection, context, not_found, render
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


def _uuid(raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise not_found("Courrier introuvable", "Ce courrier n'existe pas.") from None


@router.get("/demandes/{referral_id}/courrier/{delivery_id}")
async def printable(request: Request, referral_id: str, delivery_id: str, user: Viewer) -> Response:
    rid, did = _uuid(referral_id), _uuid(delivery_id)
    async with connection(request) as conn:
        try:
            await letters.check_letter(conn, context(request).vault, user.as_user(), rid, did)
        except NotFound:
            raise not_found("Courrier introuvable",
                            "Aucune demande de votre périmètre n'a donné lieu à ce courrier.") from None
    token = issue_token(user.as_user(), request.app.state.token_signer, TOKEN_TTL,
                        audiences=[api_audience("notifications")])
    text, why = None, None
    try:
        text = await notifications_api.letter(request.app.state.settings.notifications_url, token, did)
    except notifications_api.LetterUnavailable as exc:
        why = exc.why
        log.warning("letter_unavailable", referral_id=rid, why=why)
    return render(request, "ui/letter.html.j2", STATUS.get(why or "", 200),
                  nav="demandes", referral_id=rid, text=text, unavailable=UNAVAILABLE.get(why or ""))

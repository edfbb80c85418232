"""Kannel's callbacks: the delivery reports of the SMS sent through it (`dlr-url`,
adapters/kannel.py). `GET|POST /kannel/dlr?id=<delivery id>&secret=<its secret>&type=<DLR type>`.
A wrong secret is 403 and an unknown delivery 404, with nothing about the delivery in
the answer; a report that overtook the loop's record of the send is 503 (smsbox tries
again, `http-request-retry`).

`GET|POST /kannel/mo?secret=<secret>&from=<number>&text=<text>`: a text a telephone
sent to the platform (smsbox's `sms-service`, deploy/kannel/config.py). STOP (ARRET,
DESINSCRIRE...) opts the number out (adapters/opt_outs.py); other texts are ignored.
The answer is always empty: Kannel sends no reply SMS. Neither the number nor the
text is logged."""

from __future__ import annotations

import hmac
import uuid

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import PlainTextResponse

from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.runtime import Runtime
from relais_notifications.adapters import opt_outs
from relais_notifications.adapters.kannel import dlr_secret
from relais_notifications.domain.sms_replies import is_stop
from relais_notifications.service_layer import reports

router = APIRouter(prefix="/kannel", tags=["kannel"], include_in_schema=False)


@router.api_route("/dlr", methods=["GET", "POST"], response_class=PlainTextResponse)
async def delivery_report(request: Request) -> PlainTextResponse:
    secret: str | None = getattr(request.app.state, "kannel_dlr_secret", None)
    query = request.query_params
    try:
        delivery_id = uuid.UUID(query.get("id", ""))
        dlr_type = int(query.get("type", ""))
    except ValueError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such delivery") from None
    if not secret or not hmac.compare_digest(dlr_secret(secret, delivery_id), query.get("secret", "")):
        log.warning("sms_report_refused", delivery_id=str(delivery_id))
        raise HTTPException(status.HTTP_403_FORBIDDEN, "forbidden")
    if dlr_type not in reports.MEANINGS:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "unknown report type")
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "service starting")
    try:
        await reports.apply(runtime.pool, runtime.contract, runtime.source, runtime.vault, delivery_id, dlr_type)
    except reports.UnknownSms:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such delivery") from None
    except reports.NotYetSent:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "not recorded yet, try again") from None
    return PlainTextResponse("ok")


def mo_secret_matches(expected: str | None, given: str) -> bool:
    """Constant-time; an unset (or short) secret refuses everything."""
    return bool(expected) and len(expected or "") >= 16 and hmac.compare_digest(
        (expected or "").encode(), given.encode())


@router.api_route("/mo", methods=["GET", "POST"], response_class=PlainTextResponse)
async def reply_from_telephone(request: Request) -> PlainTextResponse:
    query = request.query_params
    if not mo_secret_matches(getattr(request.app.state, "kannel_mo_secret", None), query.get("secret", "")):
        log.warning("sms_reply_refused")
        raise HTTPException(status.HTTP_403_FORBIDDEN, "forbidden")
    if not is_stop(query.get("text", "")):
        log.info("sms_reply_ignored")
        return PlainTextResponse("")
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "service starting")
    async with runtime.pool.acquire() as conn:
        recorded = await opt_outs.add(conn, runtime.vault, query.get("from", ""), now())
    log.info("sms_opt_out" if recorded else "sms_opt_out_not_a_number")
    return PlainTextResponse("")

"""Kannel's callbacks: the delivery reports of the SMS sent through it (`dlr-url`,
adapters/kannel.py). `GET|POST /kannel/dlr?id=<delivery id>&secret=<its secret>&type=<DLR type>`.
A wrong secret is 403 and an unknown delivery 404, with nothing about the delivery in
the answer; a report that overtook the loop's record of the send is 503 (smsbox tries
again, `http-request-retry`)."""

from __future__ import annotations

import hmac
import uuid

from fastapi import APIRouter, HTTPException, Request, status
from fastapi.responses import PlainTextResponse

from relais_kit.logs import log
from relais_kit.runtime import Runtime
from relais_notifications.adapters.kannel import dlr_secret
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

"""The HTTP API: what was delivered to whom, for the adviser's screen and ops. Never
the citizen's address nor the text sent to them (except a letter, to print it). Who
sees what: service_layer/access.py; every read is audited there."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from relais_kit.auth import User, current_user
from relais_kit.logs import log
from relais_kit.runtime import Runtime
from relais_notifications.adapters import letter_pdf
from relais_notifications.domain.letter import UnreadableLetter
from relais_notifications.service_layer import access

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


class DeliveryFacts(BaseModel):
    """What is known of a delivery, never its content (address, subject, text)."""

    id: uuid.UUID
    referral_id: uuid.UUID
    recipient: str = Field(description="citizen or adviser")
    channel: str = Field(description="email, sms, letter or adviser_screen")
    status: str = Field(description="pending, sent or failed")
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None
    attempts: int
    reason: str | None = Field(description="Why it failed, or why the last attempt did (while pending); "
                                           "no personal data.")
    erased_at: datetime | None  # when its content was erased (retention, erasure request); then no message
    delivered_at: datetime | None = Field(description="An SMS: when the telephone received it "
                                                      "(the gateway's delivery report).")
    report: str | None = Field(description="An SMS: the gateway's last delivery report (submitted, "
                                           "buffered, delivered, failed, rejected).")
    report_at: datetime | None
    next_attempt_at: datetime | None = Field(description="While pending: when it is (re)tried next.")


class DeliveryView(DeliveryFacts):
    message: str | None  # the operator's note, on the adviser's deliveries only


class ErrorItem(BaseModel):
    field: str
    message: str


class ValidationErrorBody(BaseModel):
    """What relais_kit.web answers to a bad request (FastAPI would document its own body)."""

    detail: str
    errors: list[ErrorItem]


class ErrorBody(BaseModel):
    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrorBody, "description": "A parameter is missing or breaks the schema; "
                                                       "`errors` names each field at fault."},
}


def _runtime(request: Request) -> Runtime:
    runtime: Runtime | None = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "service starting")
    return runtime


@router.get("", response_model=list[DeliveryView], responses=_ERRORS)
async def list_deliveries(
    request: Request,
    user: Annotated[User, Depends(current_user)],
    referral_id: Annotated[uuid.UUID | None, Query(description="the referral's id (a UUID)")] = None,
    # No control character: PostgreSQL refuses a NUL in text (it was a 500).
    adviser_id: Annotated[str | None, Query(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[DeliveryView]:
    """The deliveries of one referral and/or of one adviser's referrals, newest first."""
    if referral_id is None and adviser_id is None:
        raise RequestValidationError([{"loc": ("query", "referral_id"), "type": "missing",
                                       "msg": "give referral_id or adviser_id"}])
    runtime = _runtime(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        rows = await access.deliveries(conn, runtime.vault, user, referral_id=referral_id,
                                       adviser_id=adviser_id, limit=limit)
    return [DeliveryView(**row) for row in rows]


_LETTER_ERRORS: dict[int | str, dict[str, Any]] = {
    **_ERRORS,
    404: {"model": ErrorBody, "description": "No letter with this id that you may read."},
    410: {"model": ErrorBody, "description": "The letter's content was erased (retention period over, "
                                             "or at the citizen's request)."},
}


@router.get("/{delivery_id}/letter", response_class=PlainTextResponse, responses=_LETTER_ERRORS)
async def printable_letter(request: Request, delivery_id: uuid.UUID,
                           user: Annotated[User, Depends(current_user)]) -> PlainTextResponse:
    """The letter to print and post, for a citizen who chose the `letter` channel."""
    runtime = _runtime(request)
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            text = await access.letter(conn, runtime.vault, user, delivery_id)
    except access.NoSuchLetter:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no letter with this id") from None
    except access.LetterErased as gone:
        raise _erased(gone) from None
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8")


_PDF: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/pdf": {}}, "description": "The letter(s) as a PDF, A4, one page each."},
}


def _pdf_response(pdf: bytes, filename: str) -> Response:
    # The file's name carries no personal data; the document is never kept by a cache.
    return Response(pdf, media_type="application/pdf", headers={
        "Cache-Control": "no-store", "Content-Disposition": f'inline; filename="{filename}"'})


def _erased(gone: access.LetterErased) -> HTTPException:
    when = f" on {gone.erased_at.date().isoformat()}" if gone.erased_at else ""
    return HTTPException(status.HTTP_410_GONE, f"the content of this letter was erased{when} (retention "
                                               "period over, or at the citizen's request)")


@router.get("/{delivery_id}/letter.pdf", response_class=Response, responses={**_LETTER_ERRORS, **_PDF})
async def letter_as_pdf(request: Request, delivery_id: uuid.UUID,
                        user: Annotated[User, Depends(current_user)]) -> Response:
    """The letter to print and post, as a PDF for a window envelope (same rights and
    audit as the text)."""
    runtime = _runtime(request)
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            found = await access.printable_letter(conn, runtime.vault, user, delivery_id)
    except access.NoSuchLetter:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no letter with this id") from None
    except access.LetterErased as gone:
        raise _erased(gone) from None
    try:
        pdf = await run_in_threadpool(letter_pdf.pdf, [found])  # CPU-bound: off the event loop
    except UnreadableLetter:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this letter cannot be printed as a PDF") from None
    log.info("letter_pdf_served", referral_id=str(found.referral_id), delivery_id=str(delivery_id))
    return _pdf_response(pdf, f"courrier-{str(delivery_id)[:8]}.pdf")


@router.get("/letters.pdf", response_class=Response,
            responses={**_ERRORS, **_PDF, 404: {"model": ErrorBody, "description": "No letter of that site "
                                                "on that day that you may read."}})
async def letters_of_day_as_pdf(
    request: Request,
    user: Annotated[User, Depends(current_user)],
    site_id: Annotated[str, Query(pattern=r"^[a-z0-9][a-z0-9-]{1,80}$",
                                  description="the France Services site")],
    day: Annotated[date, Query(alias="date", description="the day the letters were written (Paris time), "
                                                         "YYYY-MM-DD")],
) -> Response:
    """A site's letters of one day in one PDF, one page per letter, to print them at
    once (each letter's read is audited)."""
    runtime = _runtime(request)
    try:
        async with runtime.pool.acquire() as conn, conn.transaction():
            found = await access.letters_of_day(conn, runtime.vault, user, site_id, day)
    except access.NoSuchLetter:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no letter of this site on this day") from None
    try:
        pdf = await run_in_threadpool(letter_pdf.pdf, found)
    except UnreadableLetter:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no letter of this day can be printed") from None
    log.info("letters_of_day_pdf_served", site_id=site_id, day=day.isoformat(), letters=len(found))
    return _pdf_response(pdf, f"courriers-{day.isoformat()}.pdf")

"""The HTTP API: what was delivered to whom, for the adviser's screen and ops. Never
the citizen's address nor the text sent to them (except a letter, to print it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from relais_kit.auth import User, current_user
from relais_kit.runtime import Runtime
from relais_notifications.adapters import store

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])


class DeliveryView(BaseModel):
    id: uuid.UUID
    referral_id: uuid.UUID
    recipient: str
    channel: str
    status: str
    created_at: datetime
    sent_at: datetime | None
    failed_at: datetime | None
    attempts: int
    reason: str | None
    message: str | None  # the operator's note, on the adviser's deliveries only


class ErrorItem(BaseModel):
    field: str
    message: str


class ValidationErrorBody(BaseModel):
    """What relais_kit.web answers to a bad request (FastAPI would document its own body)."""

    detail: str
    errors: list[ErrorItem]


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
    async with _runtime(request).pool.acquire() as conn:
        rows = await store.list_public(conn, referral_id=referral_id, adviser_id=adviser_id, limit=limit)
    return [DeliveryView(**row) for row in rows]


@router.get("/{delivery_id}/letter", response_class=PlainTextResponse, responses=_ERRORS)
async def printable_letter(request: Request, delivery_id: uuid.UUID,
                           user: Annotated[User, Depends(current_user)]) -> PlainTextResponse:
    """The letter to print and post, for a citizen who chose the `letter` channel."""
    async with _runtime(request).pool.acquire() as conn:
        text = await store.letter(conn, delivery_id)
    if text is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no letter with this id")
    return PlainTextResponse(text, media_type="text/plain; charset=utf-8")

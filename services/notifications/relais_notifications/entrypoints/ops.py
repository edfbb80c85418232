"""The ops console's view of a referral's deliveries (`GET /api/v1/ops/deliveries`,
the ops role only, beside the kit's ops API): the facts of each message — to whom, by
which channel, sent, received by the telephone or failed and why, how many attempts,
the next one — and never its content: no address, subject, text, nor the operator's
note to the adviser, which the list API gives to those who work the referral. Who
reads it is audited (service_layer/access.py)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from relais_kit.access import User
from relais_kit.auth import require_role
from relais_notifications.entrypoints.api import _ERRORS, DeliveryFacts, _runtime
from relais_notifications.service_layer import access

router = APIRouter(prefix="/api/v1/ops", tags=["ops"], responses={
    401: {"description": "No or invalid bearer token."},
    403: {"description": "The token's role is not ops."},
})

Ops = Annotated[User, Depends(require_role("ops"))]


@router.get("/deliveries", response_model=list[DeliveryFacts], responses=_ERRORS)
async def deliveries_of_referral(
    request: Request, user: Ops,
    referral_id: Annotated[uuid.UUID, Query(description="the referral's id (a UUID)")],
) -> list[DeliveryFacts]:
    """Every delivery of one referral, oldest first: its facts only."""
    runtime = _runtime(request)
    async with runtime.pool.acquire() as conn, conn.transaction():
        found = await access.facts(conn, user, referral_id)
    return [DeliveryFacts(**row) for row in found]

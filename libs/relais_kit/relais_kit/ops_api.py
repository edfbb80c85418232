"""The ops API every service serves (`relais_kit.web.prepare_app`), for the ops role only,
on the service's own schema; the ops console (services/ops) calls it with the signed-in
user's token:

    GET  /api/v1/ops/parked                     the outbox rows set aside (relais_kit.parked)
    POST /api/v1/ops/parked/{id}/retry|discard  {"reason": "..."}: 204; 404 if not parked
    GET  /api/v1/ops/journey/{subject}          what this service published and consumed
                                                about one subject (a referral, a site...)

Retry and discard are audited in `outbox_actions` (who, when, why: relais_kit.parked.act).
Nothing here returns event data, which may hold personal data: ids, types, topics,
positions and times only; reading them is therefore not audited. The operator desks do
not accept the referral service's tokens (they sign their own, under another issuer):
there this API answers 404."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException, Path, Request, Response, status
from pydantic import BaseModel, Field, StringConstraints

from relais_kit.access import User
from relais_kit.auth import require_role
from relais_kit.parked import NotParked, act, parked_rows
from relais_kit.runtime import Runtime

BIGINT_MAX = 2**63 - 1
SUBJECT = r"^[^\x00-\x1f\x7f]+$"  # an id: no control characters

# Where each row stands (parked: set aside, waiting for ops; relais_kit.outbox).
PUBLISHED_ROWS = """
    SELECT id, event_id, event_type, topic, created_at, published_at, traceparent,
           CASE WHEN published_at IS NOT NULL THEN published_partition END AS partition,
           CASE WHEN published_at IS NOT NULL THEN published_offset END AS "offset",
           CASE WHEN published_at IS NOT NULL THEN 'published' WHEN discarded_at IS NOT NULL THEN 'discarded'
                WHEN parked_at IS NOT NULL THEN 'parked' ELSE 'pending' END AS status
    FROM outbox WHERE subject = $1 ORDER BY id"""
CONSUMED_ROWS = """
    SELECT consumer, event_id, event_type, topic, record_partition AS partition, record_offset AS "offset",
           processed_at
    FROM processed_events WHERE subject = $1 ORDER BY processed_at, consumer"""


class ParkedView(BaseModel):
    id: int = Field(description="The outbox row.")
    topic: str
    event_type: str
    created_at: datetime
    parked_at: datetime
    reason: str = Field(description="Why it could not be published (never the event's data).")
    waiting_behind: int = Field(description="Rows of the same key held until this one is retried or discarded.")


class ParkedList(BaseModel):
    schema_: str = Field(alias="schema", description="The service's schema (whose outbox).")
    rows: list[ParkedView]


class PublishedView(BaseModel):
    id: int = Field(description="The outbox row (to retry or discard it when parked).")
    event_id: str
    event_type: str
    topic: str
    partition: int | None = Field(description="Where the broker put it; null until published (or for rows "
                                              "published before positions were kept).")
    offset: int | None
    created_at: datetime
    published_at: datetime | None
    traceparent: str | None
    status: Literal["published", "pending", "parked", "discarded"]
    parked: bool = Field(description="Set aside, waiting for ops (see /api/v1/ops/parked).")


class ConsumedView(BaseModel):
    consumer: str
    event_id: str
    event_type: str | None = Field(description="Null for events handled before it was kept.")
    topic: str
    partition: int | None
    offset: int | None
    processed_at: datetime


class Journey(BaseModel):
    service: str
    subject: str
    published: list[PublishedView]
    consumed: list[ConsumedView]


# Why (kept in the audit, outbox_actions): a JSON body {"reason": "..."}.
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500, pattern=r"^[^\x00]*$"),
                   Body(embed=True, description="Why (kept in the audit, outbox_actions).")]

Ops = Annotated[User, Depends(require_role("ops"))]
OutboxId = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="The outbox row.")]
_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or invalid bearer token."},
    403: {"description": "The token's role is not ops."},
}


def _served_here(request: Request) -> None:
    """A service whose API takes no referral tokens (the operator desks) has no ops API."""
    if getattr(request.app.state, "token_verifier", None) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this service has no ops API (it takes no API tokens)")


def ops_router(get_runtime: Callable[[], Runtime | None]) -> APIRouter:
    router = APIRouter(prefix="/api/v1/ops", tags=["ops"], responses=_ERRORS,
                       dependencies=[Depends(_served_here)])

    def runtime() -> Runtime:
        running = get_runtime()
        if running is None:  # relais_kit.web.UntilStarted answers first; kept for direct use
            raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "starting", headers={"Retry-After": "1"})
        return running

    @router.get("/parked", response_model=ParkedList, response_model_by_alias=True)
    async def list_parked(_: Ops) -> dict[str, Any]:
        """The outbox rows of this service that could not be published, oldest first."""
        async with runtime().pool.acquire() as conn:
            schema = str(await conn.fetchval("SELECT current_schema()"))
            rows = await parked_rows(conn)
        return {"schema": schema, "rows": [
            {"id": r.outbox_id, "topic": r.topic, "event_type": r.event_type, "created_at": r.created_at,
             "parked_at": r.parked_at, "reason": r.reason, "waiting_behind": r.waiting_behind} for r in rows]}

    async def _act(action: Literal["retry", "discard"], outbox_id: int, reason: str, user: User) -> Response:
        async with runtime().pool.acquire() as conn:
            try:
                await act(conn, action, outbox_id, requested_by=user.user_id, reason=reason)
            except NotParked as exc:
                raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    @router.post("/parked/{outbox_id}/retry", status_code=204, response_class=Response,
                 responses={404: {"description": "No parked row with that id."}})
    async def retry_parked(outbox_id: OutboxId, reason: Reason, user: Ops) -> Response:
        """Hands the row back to the relay: published next, before the rows of its key
        that waited behind it. Audited (outbox_actions)."""
        return await _act("retry", outbox_id, reason, user)

    @router.post("/parked/{outbox_id}/discard", status_code=204, response_class=Response,
                 responses={404: {"description": "No parked row with that id."}})
    async def discard_parked(outbox_id: OutboxId, reason: Reason, user: Ops) -> Response:
        """Gives the row up for good; the rows of its key behind it go on. Audited
        (outbox_actions)."""
        return await _act("discard", outbox_id, reason, user)

    @router.get("/journey/{subject}", response_model=Journey)
    async def journey(subject: Annotated[str, Path(min_length=1, max_length=200, pattern=SUBJECT)],
                      _: Ops) -> dict[str, Any]:
        """What this service published about `subject` (its outbox: published with their
        position, pending, parked or discarded) and which of its consumers handled
        events about it, from where. Ids, types, topics, positions and times only."""
        running = runtime()
        async with running.pool.acquire() as conn:
            published = await conn.fetch(PUBLISHED_ROWS, subject)
            consumed = await conn.fetch(CONSUMED_ROWS, subject)
        return {"service": running.service, "subject": subject,
                "published": [{**dict(r), "parked": r["status"] == "parked"} for r in published],
                "consumed": [dict(r) for r in consumed]}

    return router


"""The adviser API: sign in, open a visit, refer, follow a referral."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from relais_kit import sessions
from relais_kit.auth import API_SERVICES, TOKEN_TTL, User, api_audience, current_user, issue_token
from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.throttle import TooManyAttempts, client_address
from relais_kit.web import FieldProblem
from relais_referral.adapters import store
from relais_referral.domain.model import Citizen, PostalAddress, Referral
from relais_referral.entrypoints.schemas import (
    CancelIn,
    CitizenCompletionIn,
    CloseIn,
    InfoIn,
    ReferralCreated,
    ReferralIn,
    ReferralOut,
    RerouteIn,
    Token,
    VisitIn,
    VisitOut,
)
from relais_referral.service_layer import accounts, audit, follow_up, referrals, scope, visits
from relais_referral.service_layer.context import Context
from relais_referral.service_layer.errors import Conflict, NotAllowed, NotFound

router = APIRouter(prefix="/api/v1", dependencies=[Depends(audit.api_channel)])
Adviser = Annotated[User, Depends(current_user)]
TOO_MANY_ATTEMPTS: dict[int | str, dict[str, Any]] = {
    429: {"description": "Too many sign-in attempts for this account or from this address: retry after "
                         "`Retry-After` seconds"}}


def _pool(request: Request) -> asyncpg.Pool:
    return request.app.state.runtime.pool  # type: ignore[no-any-return]


def _context(request: Request) -> Context:
    return request.app.state.context  # type: ignore[no-any-return]


@router.post("/auth/token", response_model=Token, tags=["auth"], responses=TOO_MANY_ATTEMPTS,
             summary="Sign in (OAuth2 password form): a bearer token for one hour")
async def token(request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()],
                audience: Annotated[str | None, Form(
                    description="The APIs the token opens, space-separated among `referral`, `sites`, "
                                "`notifications` (all three when absent): any other refuses it")] = None) -> Token:
    audiences = _audiences(audience)
    try:
        user = await accounts.sign_in(_pool(request), request.app.state.signin_throttle, form.username,
                                      form.password, client_address(request),
                                      production=request.app.state.settings.production)
    except TooManyAttempts as exc:
        log.warning("sign_in_throttled", per=exc.what)
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, str(exc),
                            headers={"Retry-After": str(exc.retry_after_s)}) from exc
    if user is None:
        log.info("sign_in_refused")
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "unknown user or wrong password",
                            headers={"WWW-Authenticate": "Bearer"})
    async with _pool(request).acquire() as conn:
        session_id = await sessions.open_session(conn, user.user_id, "api", TOKEN_TTL)
    log.info("signed_in", user=user.user_id, role=user.role, via="api")
    return Token(access_token=issue_token(replace(user, session_id=session_id), request.app.state.token_signer,
                                          TOKEN_TTL, audiences=audiences), expires_in=int(TOKEN_TTL.total_seconds()))


def _audiences(asked: str | None) -> list[str]:
    names = (asked or "").split() or list(API_SERVICES)
    unknown = sorted(set(names) - set(API_SERVICES))
    if unknown:
        raise FieldProblem("audience", f"unknown API {', '.join(unknown)} (known: {', '.join(API_SERVICES)})")
    return [api_audience(name) for name in dict.fromkeys(names)]


@router.post("/auth/revoke", status_code=204, tags=["auth"],
             summary="Sign out: the token (and every copy of it) opens nothing any more")
async def revoke(request: Request, user: Adviser) -> Response:
    if user.session_id:
        async with _pool(request).acquire() as conn:
            await sessions.end_session(conn, user.session_id)
    log.info("signed_out", user=user.user_id, via="api")
    return Response(status_code=204)


@router.post("/visits", status_code=201, response_model=VisitOut, tags=["visits"],
             summary="Open a visit: a citizen at the counter")
async def open_visit(request: Request, body: VisitIn, user: Adviser) -> VisitOut:
    c = body.citizen
    address = c.contact.postal_address
    citizen = Citizen(
        given_name=c.given_name, family_name=c.family_name, birth_date=c.birth_date,
        contact_channel=c.contact.channel.value, email=c.contact.email, phone=c.contact.phone,
        postal_address=PostalAddress(address.street, address.postcode, address.city) if address else None)
    try:
        async with _pool(request).acquire() as conn, conn.transaction():
            visit = await visits.open_visit(conn, _context(request), user, body.site_id,
                                            body.channel, citizen)
    except NotAllowed as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    return VisitOut(visit_id=UUID(visit.visit_id), site_id=visit.site_id, opened_at=visit.opened_at)


@router.patch("/visits/{visit_id}/citizen", status_code=204, tags=["visits"],
              summary="Complete the citizen's record on the visit (what a procedure needs: birth date, contact)")
async def complete_citizen(request: Request, visit_id: UUID, body: CitizenCompletionIn, user: Adviser) -> Response:
    address = body.postal_address
    try:
        async with _pool(request).acquire() as conn, conn.transaction():
            await visits.complete_citizen(
                conn, _context(request), user, str(visit_id), birth_date=body.birth_date, email=body.email,
                phone=body.phone,
                postal_address=PostalAddress(address.street, address.postcode, address.city) if address else None)
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except NotAllowed as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    log.info("visit_completed", visit_id=str(visit_id))
    return Response(status_code=204)


@router.post("/visits/{visit_id}/referrals", status_code=201, response_model=ReferralCreated,
             tags=["referrals"], summary="Refer the visit's request to an operator (needs expert)")
async def refer(request: Request, visit_id: UUID, body: ReferralIn, user: Adviser) -> ReferralCreated:
    try:
        async with _pool(request).acquire() as conn, conn.transaction():
            referral = await referrals.request_referral(
                conn, _context(request), user, str(visit_id), body.operator, body.procedure,
                body.summary, body.consent.given_at or now())
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except NotAllowed as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    return ReferralCreated(referral_id=UUID(referral.referral_id), status=referral.status.value)


@router.get("/referrals/{referral_id}", response_model=ReferralOut, tags=["referrals"],
            summary="A referral's status and the timeline of its transitions")
async def get_referral(request: Request, referral_id: UUID, user: Adviser) -> ReferralOut:
    async with _pool(request).acquire() as conn:
        referral = await store.get_referral(conn, _context(request).vault, str(referral_id))
        if referral is None or not await scope.may_see(conn, user, referral.site_id):
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"referral {referral_id} not found")
        entries = await store.timeline(conn, _context(request).vault, str(referral_id))
        await audit.record(conn, user, referral.referral_id, "view")
    return ReferralOut(
        referral_id=UUID(referral.referral_id), visit_id=UUID(referral.visit_id),
        operator=referral.operator, procedure=referral.procedure, site_id=referral.site_id,
        status=referral.status.value, requested_at=referral.requested_at, due_at=referral.due_at,
        overdue=referral.overdue_at is not None,
        supersedes_referral_id=UUID(referral.supersedes_referral_id) if referral.supersedes_referral_id else None,
        timeline=entries)  # type: ignore[arg-type]


CONFLICT: dict[int | str, dict[str, Any]] = {409: {"description": "The referral's current status does not allow this"}}


async def _follow_up(request: Request, action: Callable[..., Awaitable[Referral]], *args: object) -> ReferralCreated:
    try:
        async with _pool(request).acquire() as conn, conn.transaction():
            referral = await action(conn, _context(request), *args)
    except Conflict as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc),
                            headers={"X-Referral-Status": exc.status}) from exc
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    except NotAllowed as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from exc
    return ReferralCreated(referral_id=UUID(referral.referral_id), status=referral.status.value)


@router.post("/referrals/{referral_id}/info", response_model=ReferralCreated, tags=["referrals"],
             responses=CONFLICT, summary="Give the operator the information it asked for")
async def provide_info(request: Request, referral_id: UUID, body: InfoIn, user: Adviser) -> ReferralCreated:
    return await _follow_up(request, follow_up.provide_info, user, str(referral_id), body.message)


@router.post("/referrals/{referral_id}/cancel", response_model=ReferralCreated, tags=["referrals"],
             responses=CONFLICT, summary="Cancel: the citizen withdrew")
async def cancel(request: Request, referral_id: UUID, body: CancelIn, user: Adviser) -> ReferralCreated:
    return await _follow_up(request, follow_up.cancel, user, str(referral_id), body.reason)


@router.post("/referrals/{referral_id}/close", response_model=ReferralCreated, tags=["referrals"],
             responses=CONFLICT, summary="Close the loop with an outcome (after an answer or a rejection)")
async def close(request: Request, referral_id: UUID, body: CloseIn, user: Adviser) -> ReferralCreated:
    return await _follow_up(request, follow_up.close, user, str(referral_id), body.outcome.value)


@router.post("/referrals/{referral_id}/reroute", status_code=201, response_model=ReferralCreated,
             tags=["referrals"], responses=CONFLICT,
             summary="Re-route a rejected referral: a new referral to another operator, linked to this one")
async def reroute(request: Request, referral_id: UUID, body: RerouteIn, user: Adviser) -> ReferralCreated:
    return await _follow_up(request, follow_up.reroute, user, str(referral_id), body.operator, body.procedure,
                            body.summary, body.consent.given_at or now())

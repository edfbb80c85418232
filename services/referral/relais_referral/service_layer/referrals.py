"""Referring a visit's request to an operator, routing it to the operator's inbox,
and applying what the operator says."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from relais_kit.auth import User
from relais_kit.consumer import Refused
from relais_kit.envelope import CloudEvent, now
from relais_referral.adapters import accounts, store
from relais_referral.domain import events, retention
from relais_referral.domain.catalogue import missing_citizen_fields
from relais_referral.domain.deadlines import due_at
from relais_referral.domain.lifecycle import Actor, ForbiddenTransition, Move, Status
from relais_referral.domain.model import Referral
from relais_referral.service_layer import audit, status_links
from relais_referral.service_layer.context import Context, inbox_topic
from relais_referral.service_layer.errors import InvalidField, NotAllowed, NotFound
from relais_referral.service_layer.visits import may_work_at


async def request_referral(conn: asyncpg.Connection, ctx: Context, user: User, visit_id: str,
                           operator: str, procedure: str, summary: str,
                           consent_given_at: datetime, supersedes: str | None = None) -> Referral:
    visit = await store.get_visit(conn, ctx.vault, visit_id)
    if visit is None:
        raise NotFound(f"visit {visit_id} not found")
    site = await store.get_site(conn, visit.site_id)
    # A colleague of the same site may refer (or re-route) the visit's request too.
    if user.role != "adviser" or site is None or not may_work_at(user, site):
        raise NotAllowed(f"{user.user_id} does not work at {visit.site_id}")
    if ctx.catalogue.operator(operator) is None:
        raise InvalidField("operator", f"unknown operator {operator!r}")
    needs = ctx.catalogue.procedure(operator, procedure)
    if needs is None:
        raise InvalidField("procedure", f"{procedure!r} is not a procedure of {operator}")
    if operator not in site.operators:
        raise InvalidField("operator", f"{operator} is not served at site {visit.site_id}")
    if visit.citizen is None:
        raise InvalidField("visit_id", f"the personal data of visit {visit_id} was erased: open a new visit")
    missing = missing_citizen_fields(needs, visit.citizen)
    if missing:  # sent without it, it would only come back as an information request
        raise InvalidField(f"citizen.{missing[0]}",
                           f"{procedure} needs the citizen's {', '.join(missing)}, which the visit lacks: "
                           f"complete the visit first (PATCH /api/v1/visits/{visit_id}/citizen)")
    referral = Referral(
        referral_id=str(uuid.uuid4()), visit_id=visit_id, operator=operator, procedure=procedure,
        site_id=visit.site_id, adviser_id=user.user_id, summary=summary,
        consent_given_at=consent_given_at, requested_at=now(), supersedes_referral_id=supersedes)
    structlog.contextvars.bind_contextvars(referral_id=referral.referral_id)
    await store.add_referral(conn, ctx.vault, referral)
    await store.add_to_timeline(conn, ctx.vault, referral.referral_id, "requested", referral.status,
                                f"adviser:{user.user_id}", referral.requested_at)
    await ctx.publish(conn, "referrals", "referral.requested", referral.referral_id,
                      events.requested(referral))
    await audit.record(conn, user, referral.referral_id, "refer")
    return referral


async def route(conn: asyncpg.Connection, ctx: Context, referral_id: str) -> None:
    """`referral.requested` → the operator's inbox (with what the operator needs) and
    `referral.routed` on the lifecycle log, with its answer deadline and, for the "sent"
    message, the citizen's recipient and status link (its code made here)."""
    referral = await _referral_for_update(conn, ctx, referral_id)
    if referral.status is not Status.REQUESTED:
        structlog.get_logger().info("already_routed", status=referral.status.value)
        return
    operator = ctx.catalogue.operator(referral.operator)
    procedure = ctx.catalogue.procedure(referral.operator, referral.procedure)
    visit = await store.get_visit(conn, ctx.vault, referral.visit_id)
    site = await store.get_site(conn, referral.site_id)
    if operator is None or procedure is None or visit is None:
        raise Refused("unknown_referral", f"referral {referral_id} names an unknown operator or procedure")
    if visit.citizen is None or referral.summary is None:
        raise Refused("unknown_referral", f"the personal data of referral {referral_id} was erased")
    if site is None:
        raise Refused("unknown_site", f"site {referral.site_id} is not known")
    at = now()
    referral = _move(referral, Move.ROUTE, Actor.PLATFORM)
    referral = replace(referral, due_at=due_at(referral.requested_at, operator.deadline_days))
    account = await accounts.get(conn, referral.adviser_id)
    adviser_name = account["display_name"] if account else referral.adviser_id
    await store.save_status(conn, referral)
    await store.add_to_timeline(conn, ctx.vault, referral_id, "routed", referral.status, "platform", at,
                                {"due_at": referral.due_at.isoformat() if referral.due_at else None})
    inbox = inbox_topic(referral.operator)
    sealed = ctx.seal("referral.routed", referral.operator,
                      events.personal_routed(referral, visit.citizen, procedure))
    await ctx.publish(conn, inbox, "referral.routed", referral_id,
                      events.routed_to_inbox(referral, at, site, adviser_name, procedure, sealed))
    code = await status_links.make_code(conn, ctx, referral_id, at, "platform")
    await ctx.publish(conn, "referrals", "referral.routed", referral_id,
                      events.routed(referral, at, inbox, events.recipient(visit.citizen),
                                    events.status_link(ctx.public_url, code)))


# What each operator reply moves, and every field of it that the referral keeps (on its
# timeline, for the adviser's page) and carries on in `referral.<move>`: all its
# contract's properties but the referral id and the operator's own time.
OPERATOR_MOVES: dict[str, tuple[Move, tuple[str, ...]]] = {
    "operator.acknowledged": (Move.ACKNOWLEDGE, ("case_reference", "expert")),
    "operator.info_requested": (Move.REQUEST_INFO, ("question", "documents")),
    "operator.rejected": (Move.REJECT, ("reason_code", "reason", "suggested_operator")),
    "operator.answered": (Move.ANSWER, ("outcome", "message_to_citizen", "message_to_adviser",
                                        "appointment", "documents")),
}


# The operator's replies the citizen is told of (issue #13 item 4): their `referral.<move>`
# carries the recipient and the status link (none once the citizen's data was erased).
TOLD = (Move.REQUEST_INFO, Move.REJECT, Move.ANSWER)


async def apply_operator_event(conn: asyncpg.Connection, ctx: Context, operator: str,
                               event: CloudEvent) -> None:
    """An operator's reply from its outbox. The operator may only move referrals
    routed to it, and only along the lifecycle."""
    move, fields = OPERATOR_MOVES[event.name]
    referral_id = event.data["referral_id"]
    structlog.contextvars.bind_contextvars(referral_id=referral_id)
    referral = await _referral_for_update(conn, ctx, referral_id)
    if referral.operator != operator:
        raise Refused("not_routed_to_operator",
                      f"referral {referral_id} was not routed to {operator}")
    referral = _move(referral, move, Actor.OPERATOR)
    at = now()
    extra: dict[str, Any] = {f: event.data.get(f) for f in fields}
    if extra.get("appointment"):
        # Operators' objects are open; ours are closed: keep what our contract names.
        extra["appointment"] = {k: extra["appointment"][k] for k in ("at", "place")}
    detail = {k: v for k, v in extra.items() if v is not None}
    await store.save_status(conn, referral)
    if move is Move.ACKNOWLEDGE and detail.get("case_reference") and not referral.anonymised_at:
        await store.note_operator_reference(conn, ctx.vault, referral_id, str(detail["case_reference"]))
    await store.add_to_timeline(conn, ctx.vault, referral_id, move.value, referral.status, f"operator:{operator}",
                                at, retention.stripped(detail) if referral.anonymised_at else detail)
    if move in TOLD:
        visit = await store.get_visit(conn, ctx.vault, referral.visit_id)
        assert visit is not None
        extra["recipient"] = events.recipient(visit.citizen)
        code = None if visit.citizen is None or referral.anonymised_at else \
            await status_links.code_for_message(conn, ctx, referral_id, at)
        extra["status_link"] = events.status_link(ctx.public_url, code) if code else None
    await ctx.publish(conn, "referrals", f"referral.{move.value}", referral_id,
                      events.lifecycle(referral, at, **extra))


async def note_notification(conn: asyncpg.Connection, ctx: Context, event: CloudEvent) -> None:
    """The citizen was told (or could not be): a fact on the timeline, not a move."""
    referral_id = event.data["referral_id"]
    referral = await store.get_referral(conn, ctx.vault, referral_id)
    if referral is None:
        raise Refused("unknown_referral", f"referral {referral_id} is not known here")
    detail = {k: event.data.get(k) for k in ("channel", "recipient", "reason") if event.data.get(k)}
    if event.name == "notification.sent" and detail.get("channel") == "letter":
        detail["notification_id"] = event.data["notification_id"]  # the letter to print, from the page
    await store.add_to_timeline(conn, ctx.vault, referral_id, event.name, None, "notifications", event.time,
                                retention.stripped(detail) if referral.anonymised_at else detail)


async def _referral_for_update(conn: asyncpg.Connection, ctx: Context, referral_id: str) -> Referral:
    referral = await store.get_referral(conn, ctx.vault, referral_id, for_update=True)
    if referral is None:
        raise Refused("unknown_referral", f"referral {referral_id} is not known")
    return referral


def _move(referral: Referral, move: Move, actor: Actor) -> Referral:
    try:
        return referral.move(move, actor)
    except ForbiddenTransition as exc:
        raise Refused("forbidden_transition", str(exc)) from exc

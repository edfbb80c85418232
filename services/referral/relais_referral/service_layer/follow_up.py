"""What the adviser does once a referral is with the operator: provide the information
asked for, cancel (the citizen withdrew), close with an outcome, re-route a rejected
referral to another operator. A move the lifecycle forbids is refused, naming the
referral's current status."""

from __future__ import annotations

from datetime import datetime

import asyncpg
import structlog

from relais_kit import access
from relais_kit.auth import User
from relais_kit.envelope import now
from relais_kit.vault import Vault
from relais_referral.adapters import store
from relais_referral.domain import events
from relais_referral.domain.lifecycle import Actor, ForbiddenTransition, Move, Status
from relais_referral.domain.model import Referral
from relais_referral.service_layer import audit, referrals
from relais_referral.service_layer.context import Context, inbox_topic
from relais_referral.service_layer.errors import Conflict, InvalidField, NotFound


async def _own_referral(conn: asyncpg.Connection, vault: Vault, user: User, referral_id: str) -> Referral:
    referral = await store.get_referral(conn, vault, referral_id, for_update=True)
    if referral is None:
        raise NotFound(f"referral {referral_id} not found")
    structlog.contextvars.bind_contextvars(referral_id=referral_id)
    site = await store.get_site(conn, referral.site_id)
    parent = site.parent_site_id if site else None
    if not access.works_at(user, referral.site_id, parent):
        raise NotFound(f"referral {referral_id} not found")  # other sites' referrals are not shown
    return referral


def _moved(referral: Referral, move: Move) -> Referral:
    try:
        return referral.move(move, Actor.ADVISER)
    except ForbiddenTransition as exc:
        raise Conflict(str(exc), referral.status.value) from exc


async def _record(conn: asyncpg.Connection, ctx: Context, user: User, referral: Referral, move: Move,
                  at: datetime, detail: dict[str, object] | None = None) -> None:
    await store.save_status(conn, referral)
    await store.add_to_timeline(conn, ctx.vault, referral.referral_id, move.value, referral.status,
                                f"adviser:{user.user_id}", at, detail)


async def provide_info(conn: asyncpg.Connection, ctx: Context, user: User, referral_id: str,
                       message: str) -> Referral:
    referral = _moved(await _own_referral(conn, ctx.vault, user, referral_id), Move.PROVIDE_INFO)
    at = now()
    await _record(conn, ctx, user, referral, Move.PROVIDE_INFO, at)
    await audit.record(conn, user, referral_id, "provide_info")
    sealed = ctx.seal("referral.info_provided", referral.operator,
                      events.personal_info_provided(referral, message))
    await ctx.publish(conn, inbox_topic(referral.operator), "referral.info_provided", referral_id,
                      events.info_provided_to_inbox(referral, at, sealed))
    await ctx.publish(conn, "referrals", "referral.info_provided", referral_id, events.lifecycle(referral, at))
    return referral


async def cancel(conn: asyncpg.Connection, ctx: Context, user: User, referral_id: str,
                 reason: str | None) -> Referral:
    before = await _own_referral(conn, ctx.vault, user, referral_id)
    referral = _moved(before, Move.CANCEL)
    at = now()
    await _record(conn, ctx, user, referral, Move.CANCEL, at, {"reason": reason} if reason else None)
    await audit.record(conn, user, referral_id, "cancel")
    if before.status is not Status.REQUESTED:  # the operator has it: tell its inbox
        await ctx.publish(conn, inbox_topic(referral.operator), "referral.cancelled", referral_id,
                          events.cancelled_to_inbox(referral, at, reason))
    await ctx.publish(conn, "referrals", "referral.cancelled", referral_id,
                      events.lifecycle(referral, at, reason=reason))
    return referral


async def close(conn: asyncpg.Connection, ctx: Context, user: User, referral_id: str,
                outcome: str) -> Referral:
    referral = _moved(await _own_referral(conn, ctx.vault, user, referral_id), Move.CLOSE)
    await audit.record(conn, user, referral_id, "close")
    return await _close(conn, ctx, user, referral, outcome)


async def _close(conn: asyncpg.Connection, ctx: Context, user: User, referral: Referral,
                 outcome: str) -> Referral:
    at = now()
    await store.close(conn, referral, outcome)
    await store.add_to_timeline(conn, ctx.vault, referral.referral_id, Move.CLOSE.value, referral.status,
                                f"adviser:{user.user_id}", at, {"outcome": outcome})
    await ctx.publish(conn, "referrals", "referral.closed", referral.referral_id,
                      events.lifecycle(referral, at, outcome=outcome))
    return referral


async def reroute(conn: asyncpg.Connection, ctx: Context, user: User, referral_id: str, operator: str,
                  procedure: str, summary: str | None, consent_given_at: datetime) -> Referral:
    """A rejected referral goes to another operator: a new referral linked to the old
    one, which is closed as `rerouted`."""
    old = await _own_referral(conn, ctx.vault, user, referral_id)
    if old.status is not Status.REJECTED:
        raise Conflict(f"only a rejected referral can be re-routed; current status is {old.status.value}",
                       old.status.value)
    closed = _moved(old, Move.CLOSE)
    summary = summary or old.summary
    if summary is None:
        raise InvalidField("summary", "the rejected referral's summary was erased: write the request again")
    new = await referrals.request_referral(conn, ctx, user, old.visit_id, operator, procedure,
                                           summary, consent_given_at, supersedes=old.referral_id)
    await _close(conn, ctx, user, closed, "rerouted")
    await audit.record(conn, user, referral_id, "reroute")
    structlog.contextvars.bind_contextvars(referral_id=new.referral_id)
    return new

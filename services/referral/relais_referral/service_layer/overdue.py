"""Deadlines: a referral still unanswered at its due time is flagged overdue once —
`referral.overdue` on the lifecycle log, `referral.reminder` to the operator's inbox —
in the same transaction as the flag, so a restart neither loses nor repeats them."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from relais_kit.envelope import now
from relais_kit.logs import log
from relais_referral.adapters import store
from relais_referral.domain import events
from relais_referral.service_layer.context import Context, inbox_topic


async def flag_overdue(conn: asyncpg.Connection, ctx: Context, limit: int = 200) -> int:
    """Flags the referrals now overdue; returns how many. Caller owns the transaction."""
    at = now()
    found = await store.claim_overdue(conn, ctx.vault, at, limit)
    for referral in found:
        structlog.contextvars.bind_contextvars(referral_id=referral.referral_id)
        assert referral.due_at is not None
        await store.flag_overdue(conn, referral.referral_id, at)
        await store.add_to_timeline(conn, ctx.vault, referral.referral_id, "overdue", None, "platform", at,
                                    {"due_at": referral.due_at.isoformat()})
        await ctx.publish(conn, "referrals", "referral.overdue", referral.referral_id,
                          events.lifecycle(referral, at, due_at=referral.due_at.isoformat()))
        await ctx.publish(conn, inbox_topic(referral.operator), "referral.reminder", referral.referral_id,
                          events.reminder(referral, at))
        log.info("referral_overdue", operator=referral.operator)
    return len(found)


def overdue_watch(pool: asyncpg.Pool, ctx: Context, every_s: float):  # type: ignore[no-untyped-def]
    async def loop() -> None:
        while True:
            async with pool.acquire() as conn, conn.transaction():
                flagged = await flag_overdue(conn, ctx)
            if flagged == 0:
                await asyncio.sleep(every_s)
    return loop

"""What the referral service reads, and which handler takes each event type."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import asyncpg

from relais_kit.consumer import Delivery, Handler
from relais_kit.envelope import event_type
from relais_referral.adapters import places, store
from relais_referral.domain.model import Site
from relais_referral.service_layer import referrals
from relais_referral.service_layer.context import Context


def router_handlers(ctx: Context) -> Mapping[str, Handler]:
    async def on_requested(d: Delivery, conn: asyncpg.Connection) -> None:
        await referrals.route(conn, ctx, d.event.data["referral_id"])

    return {event_type("referral.requested"): on_requested}


def operator_of(topic: str) -> str:
    """`operator.caf.outbox` → `caf`."""
    return topic.split(".")[1]


def operator_handlers(ctx: Context) -> Mapping[str, Handler]:
    async def on_reply(d: Delivery, conn: asyncpg.Connection) -> None:
        await referrals.apply_operator_event(conn, ctx, operator_of(d.topic), d.event)

    return {event_type(name): on_reply for name in referrals.OPERATOR_MOVES}


def notification_handlers(ctx: Context) -> Mapping[str, Handler]:
    async def on_notification(d: Delivery, conn: asyncpg.Connection) -> None:
        await referrals.note_notification(conn, ctx, d.event)

    return {event_type("notification.sent"): on_notification,
            event_type("notification.failed"): on_notification,
            event_type("notification.delivered"): on_notification}


def site_handlers() -> Mapping[str, Handler]:
    async def on_upserted(d: Delivery, conn: asyncpg.Connection) -> None:
        data = d.event.data
        address = data["address"]
        site = Site(data["site_id"], data["name"], data["kind"], address["postcode"], address["city"],
                    data["department"], frozenset(data["operators"]), data.get("parent_site_id"))
        await store.upsert_site(conn, site, datetime.fromisoformat(data["updated_at"]))
        await places.set_schedule(conn, site.site_id, data.get("schedule") or [])

    async def on_retired(d: Delivery, conn: asyncpg.Connection) -> None:
        await store.retire_site(conn, d.event.data["site_id"], datetime.fromisoformat(d.event.data["retired_at"]))

    return {event_type("site.upserted"): on_upserted, event_type("site.retired"): on_retired}

"""The `deliveries` table (schema `notifications`), through asyncpg. Every function
takes the connection of the caller's transaction."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from relais_notifications.domain.model import Notification

WAKE_CHANNEL = "relais_deliveries"

# What the list API may show: never `address`, `subject` nor the citizen's body.
_PUBLIC = ("id, referral_id, recipient, channel, status, created_at, sent_at, failed_at, attempts,"
           " reason, CASE WHEN recipient = 'adviser' THEN body END AS message")


@dataclass(frozen=True)
class PendingDelivery:
    """A delivery claimed by the delivery loop, locked until its transaction ends."""

    id: uuid.UUID
    referral_id: uuid.UUID
    cause_event_id: str
    recipient: str
    channel: str
    address: str | None
    subject: str | None
    body: str
    attempts: int


async def add(conn: asyncpg.Connection, n: Notification, at: datetime) -> bool:
    """Stores a notification; False when this (cause event, recipient) already has one."""
    inserted = await conn.fetchval(
        "INSERT INTO deliveries (id, referral_id, cause_event_id, adviser_id, site_id, recipient,"
        " channel, status, address, subject, body, created_at, sent_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        " ON CONFLICT DO NOTHING RETURNING true",
        n.id, n.referral_id, n.cause_event_id, n.adviser_id, n.site_id, n.recipient, n.channel,
        n.status, n.address, n.subject, n.body, at, at if n.status == "sent" else None)
    return bool(inserted)


async def wake_delivery_loop(conn: asyncpg.Connection) -> None:
    """Delivered at commit: the loop looks for pending deliveries at once."""
    await conn.execute(f"NOTIFY {WAKE_CHANNEL}")


async def claim_due(conn: asyncpg.Connection, lease_s: float) -> PendingDelivery | None:
    """The next pending delivery that is due, leased for `lease_s` seconds: no worker of
    any instance takes it again before the lease ends (unless its sender died)."""
    row = await conn.fetchrow(
        "UPDATE deliveries SET next_attempt_at = now() + make_interval(secs => $1)"
        " WHERE id = (SELECT id FROM deliveries WHERE status = 'pending' AND next_attempt_at <= now()"
        "             ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " RETURNING id, referral_id, cause_event_id, recipient, channel, address, subject, body, attempts",
        lease_s)
    return PendingDelivery(**dict(row)) if row else None


async def seconds_until_next_due(conn: asyncpg.Connection) -> float | None:
    value = await conn.fetchval(
        "SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM deliveries WHERE status = 'pending'")
    return None if value is None else max(float(value), 0.0)


async def mark_sent(conn: asyncpg.Connection, delivery_id: uuid.UUID, attempts: int, at: datetime) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'sent', attempts = $2, sent_at = $3, reason = NULL WHERE id = $1",
        delivery_id, attempts, at)


async def mark_retry(conn: asyncpg.Connection, delivery_id: uuid.UUID, attempts: int,
                     next_at: datetime, reason: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET attempts = $2, next_attempt_at = $3, reason = $4 WHERE id = $1",
        delivery_id, attempts, next_at, reason)


async def mark_failed(conn: asyncpg.Connection, delivery_id: uuid.UUID, attempts: int,
                      at: datetime, reason: str) -> None:
    await conn.execute(
        "UPDATE deliveries SET status = 'failed', attempts = $2, failed_at = $3, reason = $4 WHERE id = $1",
        delivery_id, attempts, at, reason)


async def list_public(conn: asyncpg.Connection, *, referral_id: uuid.UUID | None,
                      adviser_id: str | None, limit: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        f"SELECT {_PUBLIC} FROM deliveries"
        " WHERE ($1::uuid IS NULL OR referral_id = $1) AND ($2::text IS NULL OR adviser_id = $2)"
        " ORDER BY created_at DESC, recipient LIMIT $3",
        referral_id, adviser_id, limit)
    return [dict(r) for r in rows]


async def letter(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> str | None:
    """The printable text of a letter delivery."""
    value = await conn.fetchval(
        "SELECT body FROM deliveries WHERE id = $1 AND channel = 'letter'", delivery_id)
    return None if value is None else str(value)

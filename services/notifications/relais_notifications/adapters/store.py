"""The `deliveries` table (schema `notifications`), through asyncpg. Every function
takes the connection of the caller's transaction.

The citizen's address, the subject and the body are sealed at rest (relais_kit.vault,
each bound to its delivery's id): a dump of the schema shows none of them. Nothing
unique or searched depends on them; erasing them (retention, the right to erasure)
sets them to NULL and stamps `erased_at`, keeping the facts of the delivery."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import asyncpg

from relais_kit import tracing
from relais_kit.access import Scope
from relais_kit.resealing import SealedColumn
from relais_kit.vault import Vault
from relais_notifications.domain.model import Notification

WAKE_CHANNEL = "relais_deliveries"

ADDRESS = SealedColumn("deliveries", "address")
SUBJECT = SealedColumn("deliveries", "subject")
BODY = SealedColumn("deliveries", "body")
# An SMS's letter to print instead if it fails for good (migration 009).
FALLBACK_SUBJECT = SealedColumn("deliveries", "fallback_subject")
FALLBACK_BODY = SealedColumn("deliveries", "fallback_body")
SEALED = (ADDRESS, SUBJECT, BODY, FALLBACK_SUBJECT, FALLBACK_BODY)
# What erasing a delivery's content sets to NULL (retention, the right to erasure).
_ERASE_CONTENT = "address = NULL, subject = NULL, body = NULL, fallback_subject = NULL, fallback_body = NULL"

# Deliveries with their site as this service knows it (the scope of a reader applies to it).
_WITH_SITE = "deliveries d LEFT JOIN sites s ON s.site_id = d.site_id"
SCOPED_COLUMNS = ("d.site_id", "s.parent_site_id", "s.department")

# The facts of a delivery, never its content (`address`, `subject`, `body`): what ops
# read (`facts`); the next attempt only while it is pending (else it means nothing).
_FACTS = ("d.id, d.referral_id, d.recipient, d.channel, d.status, d.created_at, d.sent_at, d.failed_at,"
          " d.attempts, d.reason, d.erased_at, d.delivered_at, d.report, d.report_at,"
          " CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at")
# What the list API may show: the facts, and the operator's note on the adviser's
# deliveries (sealed: opened by `visible`); never `address`, `subject` nor the citizen's body.
_PUBLIC = _FACTS + ", CASE WHEN d.recipient = 'adviser' THEN d.body END AS message"


@dataclass(frozen=True)
class PendingDelivery:
    """A delivery claimed by the delivery loop, its content still sealed (`opened`)."""

    id: uuid.UUID
    referral_id: uuid.UUID
    cause_event_id: str
    recipient: str
    channel: str
    address: str | None
    subject: str | None
    body: str | None
    attempts: int
    traceparent: str | None = None  # of the consumer span that queued it (relais_kit.tracing)


@dataclass(frozen=True)
class Erased:
    """A delivery whose content was just erased, and what it was before."""

    id: uuid.UUID
    referral_id: uuid.UUID
    cause_event_id: str
    recipient: str
    channel: str
    was_pending: bool


async def add(conn: asyncpg.Connection, vault: Vault, n: Notification, at: datetime) -> bool:
    """Stores a notification, its content (and fallback letter) sealed; False when it,
    or this (cause event, recipient, channel), is already stored."""
    inserted = await conn.fetchval(
        "INSERT INTO deliveries (id, referral_id, cause_event_id, adviser_id, site_id, recipient,"
        " channel, status, address, subject, body, reason, created_at, sent_at, failed_at, traceparent,"
        " fallback_subject, fallback_body)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)"
        " ON CONFLICT DO NOTHING RETURNING true",
        n.id, n.referral_id, n.cause_event_id, n.adviser_id, n.site_id, n.recipient, n.channel, n.status,
        vault.seal_optional(n.address, ADDRESS.context(n.id)), vault.seal_optional(n.subject, SUBJECT.context(n.id)),
        vault.seal_optional(n.body, BODY.context(n.id)), n.reason, at,
        at if n.status == "sent" else None, at if n.status == "failed" else None, tracing.current_traceparent(),
        vault.seal_optional(n.fallback_subject, FALLBACK_SUBJECT.context(n.id)),
        vault.seal_optional(n.fallback_body, FALLBACK_BODY.context(n.id)))
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
        " RETURNING id, referral_id, cause_event_id, recipient, channel, address, subject, body, attempts,"
        " traceparent", lease_s)
    return PendingDelivery(**dict(row)) if row else None


def opened(vault: Vault, pending: PendingDelivery) -> PendingDelivery:
    """Its address, subject and body in clear, to send (raises VaultError if a key is missing)."""
    return replace(pending, address=vault.open_optional(pending.address, ADDRESS.context(pending.id)),
                   subject=vault.open_optional(pending.subject, SUBJECT.context(pending.id)),
                   body=vault.open_optional(pending.body, BODY.context(pending.id)))


async def seconds_until_next_due(conn: asyncpg.Connection) -> float | None:
    value = await conn.fetchval(
        "SELECT extract(epoch FROM min(next_attempt_at) - now()) FROM deliveries WHERE status = 'pending'")
    return None if value is None else max(float(value), 0.0)


# The marks apply to a delivery still pending only: one failed meanwhile by an
# erasure keeps that state (and its event). Each says whether it applied.

async def postpone(conn: asyncpg.Connection, delivery_id: uuid.UUID, until: datetime, reason: str) -> bool:
    """Not to be sent before `until` (an SMS in quiet hours): no attempt counted, still
    pending, `reason` telling the adviser why it waits."""
    return _one(await conn.execute(
        "UPDATE deliveries SET next_attempt_at = $2, reason = $3 WHERE id = $1 AND status = 'pending'",
        delivery_id, until, reason))


async def mark_sent(conn: asyncpg.Connection, delivery_id: uuid.UUID, attempts: int, at: datetime) -> bool:
    return _one(await conn.execute(
        "UPDATE deliveries SET status = 'sent', attempts = $2, sent_at = $3, reason = NULL"
        " WHERE id = $1 AND status = 'pending'", delivery_id, attempts, at))


async def mark_retry(conn: asyncpg.Connection, delivery_id: uuid.UUID, attempts: int,
                     next_at: datetime, reason: str) -> bool:
    return _one(await conn.execute(
        "UPDATE deliveries SET attempts = $2, next_attempt_at = $3, reason = $4 WHERE id = $1 AND status = 'pending'",
        delivery_id, attempts, next_at, reason))


async def mark_failed(conn: asyncpg.Connection, delivery_id: uuid.UUID, attempts: int,
                      at: datetime, reason: str) -> bool:
    return _one(await conn.execute(
        "UPDATE deliveries SET status = 'failed', attempts = $2, failed_at = $3, reason = $4,"
        " fallback_subject = NULL, fallback_body = NULL"  # written as a letter now, if any: see fallback_of
        " WHERE id = $1 AND status = 'pending'", delivery_id, attempts, at, reason))


def _one(status: str) -> bool:
    return status.endswith(" 1")


@dataclass(frozen=True)
class Fallback:
    """The letter to print instead of an SMS that is failing, opened, with what the
    letter's delivery shares with the SMS's."""

    sms_id: uuid.UUID
    referral_id: uuid.UUID
    cause_event_id: str
    adviser_id: str
    site_id: str
    subject: str | None
    body: str


async def fallback_of(conn: asyncpg.Connection, vault: Vault, sms_id: uuid.UUID) -> Fallback | None:
    """The fallback letter of an SMS about to be marked failed (its row locked until the
    transaction ends); None when it has none (or it was erased or settled meanwhile).
    Raises VaultError if its key is missing."""
    row = await conn.fetchrow(
        "SELECT id, referral_id, cause_event_id, adviser_id, site_id, fallback_subject, fallback_body"
        " FROM deliveries WHERE id = $1 AND channel = 'sms' AND fallback_body IS NOT NULL FOR UPDATE", sms_id)
    if row is None:
        return None
    return Fallback(sms_id=row["id"], referral_id=row["referral_id"], cause_event_id=row["cause_event_id"],
                    adviser_id=row["adviser_id"], site_id=row["site_id"],
                    subject=vault.open_optional(row["fallback_subject"], FALLBACK_SUBJECT.context(row["id"])),
                    body=vault.open(row["fallback_body"], FALLBACK_BODY.context(row["id"])))


async def visible(conn: asyncpg.Connection, vault: Vault, scope: Scope, *, referral_id: uuid.UUID | None,
                  adviser_id: str | None, limit: int) -> list[dict[str, Any]]:
    """The deliveries of a referral and/or an adviser that `scope` covers, newest first,
    the adviser's message opened."""
    where, args = scope.where(*SCOPED_COLUMNS, [referral_id, adviser_id, limit])
    rows = await conn.fetch(
        f"SELECT {_PUBLIC} FROM {_WITH_SITE}"
        " WHERE ($1::uuid IS NULL OR d.referral_id = $1) AND ($2::text IS NULL OR d.adviser_id = $2)"
        f" {''.join(' AND ' + clause for clause in where)}"
        " ORDER BY d.created_at DESC, d.recipient LIMIT $3", *args)
    return [{**dict(r), "message": vault.open_optional(r["message"], BODY.context(r["id"]))} for r in rows]


@dataclass(frozen=True)
class PrintableLetter:
    """A letter to print, with its sender: the site as this service's view knows it
    (name and address None until known)."""

    id: uuid.UUID
    referral_id: uuid.UUID
    site_id: str
    created_at: datetime
    text: str | None  # None once erased
    erased_at: datetime | None
    site_name: str | None = None
    site_street: str | None = None
    site_postcode: str | None = None
    site_city: str | None = None


_PRINTABLE = ("SELECT d.id, d.referral_id, d.site_id, d.created_at, d.body, d.erased_at, s.name AS site_name,"
              " s.street AS site_street, s.postcode AS site_postcode, s.city AS site_city"
              f" FROM {_WITH_SITE}")


def _printable(vault: Vault, row: asyncpg.Record) -> PrintableLetter:
    fields = {k: v for k, v in dict(row).items() if k != "body"}
    return PrintableLetter(**fields, text=vault.open_optional(row["body"], BODY.context(row["id"])))


async def printable_letter(conn: asyncpg.Connection, vault: Vault, scope: Scope,
                           delivery_id: uuid.UUID) -> PrintableLetter | None:
    """A letter delivery that `scope` covers, with its site; None as for `letter`."""
    where, args = scope.where(*SCOPED_COLUMNS, [delivery_id])
    row = await conn.fetchrow(
        f"{_PRINTABLE} WHERE d.id = $1 AND d.channel = 'letter' AND d.recipient = 'citizen'"
        f" {''.join(' AND ' + clause for clause in where)}", *args)
    return _printable(vault, row) if row else None


async def letters_of_day(conn: asyncpg.Connection, vault: Vault, scope: Scope, site_id: str,
                         start: datetime, end: datetime) -> list[PrintableLetter]:
    """The letters of a site created in [start, end) that `scope` covers, content not
    erased, oldest first."""
    where, args = scope.where(*SCOPED_COLUMNS, [site_id, start, end])
    rows = await conn.fetch(
        f"{_PRINTABLE} WHERE d.site_id = $1 AND d.channel = 'letter' AND d.recipient = 'citizen'"
        " AND d.status = 'sent' AND d.erased_at IS NULL AND d.created_at >= $2 AND d.created_at < $3"
        f" {''.join(' AND ' + clause for clause in where)} ORDER BY d.created_at, d.id", *args)
    return [_printable(vault, row) for row in rows]


async def of_referrals(conn: asyncpg.Connection, vault: Vault, referral_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """Every delivery of these referrals, content opened (the right of access)."""
    rows = await conn.fetch(
        "SELECT id AS delivery_id, referral_id, recipient, channel, status, address, subject, body,"
        " fallback_subject, fallback_body, reason, created_at, sent_at, failed_at, erased_at"
        " FROM deliveries WHERE referral_id = ANY($1::uuid[])"
        " ORDER BY created_at, recipient DESC", referral_ids)
    return [{**dict(r), **{c.column: vault.open_optional(r[c.column], c.context(r["delivery_id"])) for c in SEALED}}
            for r in rows]


async def erase_referrals(conn: asyncpg.Connection, referral_ids: list[uuid.UUID], at: datetime,
                          reason: str) -> list[Erased]:
    """Erases the content of every delivery of these referrals not erased yet; a pending
    one fails with `reason` (it will never be sent)."""
    rows = await conn.fetch(
        "WITH target AS (SELECT id, status = 'pending' AS was_pending FROM deliveries"
        "                WHERE referral_id = ANY($1::uuid[]) AND erased_at IS NULL FOR UPDATE)"
        f" UPDATE deliveries d SET {_ERASE_CONTENT}, erased_at = $2,"
        " status = CASE WHEN target.was_pending THEN 'failed' ELSE d.status END,"
        " failed_at = CASE WHEN target.was_pending THEN $2 ELSE d.failed_at END,"
        " reason = CASE WHEN target.was_pending THEN $3 ELSE d.reason END"
        " FROM target WHERE d.id = target.id"
        " RETURNING d.id, d.referral_id, d.cause_event_id, d.recipient, d.channel, target.was_pending",
        referral_ids, at, reason)
    return [Erased(**dict(r)) for r in rows]


async def erase_older_than(conn: asyncpg.Connection, before: datetime, at: datetime) -> int:
    """Erases the content of the deliveries created before `before` that are no longer
    pending (retention); returns how many."""
    status = await conn.execute(
        f"UPDATE deliveries SET {_ERASE_CONTENT}, erased_at = $2"
        " WHERE erased_at IS NULL AND status <> 'pending' AND created_at < $1", before, at)
    return int(status.split()[-1])


@dataclass(frozen=True)
class Reported:
    """A sent SMS whose delivery report just changed what is known of it."""

    id: uuid.UUID
    referral_id: uuid.UUID
    cause_event_id: str
    recipient: str
    channel: str


_REPORTED = "RETURNING id, referral_id, cause_event_id, recipient, channel"


async def sms_state(conn: asyncpg.Connection, delivery_id: uuid.UUID) -> str | None:
    """The status of an SMS delivery (None: no such SMS)."""
    value = await conn.fetchval("SELECT status FROM deliveries WHERE id = $1 AND channel = 'sms'", delivery_id)
    return None if value is None else str(value)


async def mark_report(conn: asyncpg.Connection, delivery_id: uuid.UUID, report: str, at: datetime) -> bool:
    """An intermediate report (submitted, buffered) on a sent SMS; never over a final one."""
    return _one(await conn.execute(
        "UPDATE deliveries SET report = $2, report_at = $3 WHERE id = $1 AND channel = 'sms' AND status = 'sent'"
        " AND (report IS NULL OR report IN ('submitted', 'buffered'))", delivery_id, report, at))


async def mark_delivered(conn: asyncpg.Connection, delivery_id: uuid.UUID, at: datetime) -> Reported | None:
    """The telephone received the sent SMS; None when already known (or not a sent SMS)."""
    row = await conn.fetchrow(
        "UPDATE deliveries SET report = 'delivered', report_at = $2, delivered_at = $2,"
        " fallback_subject = NULL, fallback_body = NULL"  # the telephone has it: no letter will be needed
        " WHERE id = $1 AND channel = 'sms' AND status = 'sent' AND delivered_at IS NULL " + _REPORTED,
        delivery_id, at)
    return Reported(**dict(row)) if row else None


async def mark_undelivered(conn: asyncpg.Connection, delivery_id: uuid.UUID, report: str, at: datetime,
                           reason: str) -> Reported | None:
    """The sent SMS never reached the telephone: the delivery fails with `reason`; None
    when already known (or delivered, or not a sent SMS)."""
    row = await conn.fetchrow(
        "UPDATE deliveries SET status = 'failed', report = $2, report_at = $3, failed_at = $3, reason = $4,"
        " fallback_subject = NULL, fallback_body = NULL"  # written as a letter now, if any: see fallback_of
        " WHERE id = $1 AND channel = 'sms' AND status = 'sent' AND delivered_at IS NULL " + _REPORTED,
        delivery_id, report, at, reason)
    return Reported(**dict(row)) if row else None


async def facts(conn: asyncpg.Connection, scope: Scope, referral_id: uuid.UUID) -> list[dict[str, Any]]:
    """The facts of a referral's deliveries that `scope` covers, oldest first: no
    content at all, so nothing is opened (the ops console's view)."""
    where, args = scope.where(*SCOPED_COLUMNS, [referral_id])
    rows = await conn.fetch(
        f"SELECT {_FACTS} FROM {_WITH_SITE} WHERE d.referral_id = $1"
        f" {''.join(' AND ' + clause for clause in where)} ORDER BY d.created_at, d.recipient DESC", *args)
    return [dict(r) for r in rows]

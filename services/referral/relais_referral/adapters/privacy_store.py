"""PostgreSQL reads and writes of the personal-data lifecycle: finding a citizen's
visits by their blind indexes, what the service holds about them, erasing it, and the
record of every ops request. Callers own the transaction."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg import Connection as Conn

from relais_kit.vault import Vault
from relais_referral.adapters.sealed import PRIVACY_NOTE, TIMELINE_DETAIL
from relais_referral.adapters.store import detail_of


async def visits_by_identity(conn: Conn, index: str) -> list[str]:
    rows = await conn.fetch("SELECT visit_id::text AS id FROM visits WHERE identity_index = $1", index)
    return [r["id"] for r in rows]


async def visits_by_contact(conn: Conn, index: str) -> list[str]:
    rows = await conn.fetch("SELECT visit_id::text AS id FROM visits WHERE contact_index @> ARRAY[$1::text]", index)
    return [r["id"] for r in rows]


async def known_visits(conn: Conn, visit_ids: Sequence[str]) -> list[str]:
    rows = await conn.fetch("SELECT visit_id::text AS id FROM visits WHERE visit_id = ANY($1::uuid[])", visit_ids)
    return [r["id"] for r in rows]


async def visit_of_referral(conn: Conn, referral_id: str) -> str | None:
    found: str | None = await conn.fetchval(
        "SELECT visit_id::text FROM referrals WHERE referral_id = $1", referral_id)
    return found


async def visits(conn: Conn, visit_ids: Sequence[str]) -> list[asyncpg.Record]:
    """The visits with their site's name, oldest first (`SELECT *`: sealed columns as stored)."""
    return await conn.fetch(
        "SELECT v.*, s.name AS site_name FROM visits v LEFT JOIN known_sites s ON s.site_id = v.site_id"
        " WHERE v.visit_id = ANY($1::uuid[]) ORDER BY v.opened_at, v.visit_id", visit_ids)


async def referrals_of_visits(conn: Conn, visit_ids: Sequence[str], *,
                              for_update: bool = False) -> list[asyncpg.Record]:
    """Every referral of these visits with its site's name, oldest first; locked until
    the caller's transaction ends when `for_update`."""
    lock = " FOR UPDATE OF r" if for_update else ""
    return await conn.fetch(
        "SELECT r.*, s.name AS site_name FROM referrals r LEFT JOIN known_sites s ON s.site_id = r.site_id"
        f" WHERE r.visit_id = ANY($1::uuid[]) ORDER BY r.requested_at, r.referral_id{lock}", visit_ids)


async def timelines(conn: Conn, referral_ids: Sequence[str]) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT id, referral_id::text AS referral_id, event, status, actor, at, detail FROM referral_timeline"
        " WHERE referral_id = ANY($1::uuid[]) ORDER BY id", referral_ids)


async def audit_trail(conn: Conn, referral_ids: Sequence[str]) -> list[asyncpg.Record]:
    """Who saw or changed these referrals: the recipients of the citizen's data."""
    return await conn.fetch(
        "SELECT referral_id::text AS referral_id, at, user_id, role, action, channel FROM audit"
        " WHERE referral_id = ANY($1::uuid[]) ORDER BY id", referral_ids)


# --- what the retention job looks at -----------------------------------------------------

@dataclass(frozen=True)
class ReferralCandidate:
    referral_id: str
    status: str
    changed_at: datetime
    last_activity: datetime


async def referral_candidates(conn: Conn, changed_before: datetime, after: tuple[datetime, str] | None,
                              limit: int) -> list[ReferralCandidate]:
    """Referrals still holding personal data whose status last changed before
    `changed_before`, by that time then id, after the key `after`."""
    rows = await conn.fetch(
        "SELECT r.referral_id::text AS referral_id, r.status, r.updated_at,"
        " greatest(r.updated_at, (SELECT max(t.at) FROM referral_timeline t"
        "                         WHERE t.referral_id = r.referral_id)) AS last_activity"
        " FROM referrals r WHERE r.anonymised_at IS NULL AND r.updated_at <= $1"
        " AND ($2::timestamptz IS NULL OR (r.updated_at, r.referral_id) > ($2, $3::uuid))"
        " ORDER BY r.updated_at, r.referral_id LIMIT $4",
        changed_before, after[0] if after else None, after[1] if after else None, limit)
    return [ReferralCandidate(r["referral_id"], r["status"], r["updated_at"], r["last_activity"]) for r in rows]


@dataclass(frozen=True)
class VisitCandidate:
    visit_id: str
    opened_at: datetime
    resolution: str | None
    closed_at: datetime | None
    referrals: int


async def visit_candidates(conn: Conn, idle_before: datetime, after: tuple[datetime, str] | None,
                           limit: int) -> list[VisitCandidate]:
    """Visits still holding personal data none of whose referrals still holds any, and
    that either led to referrals or were last touched before `idle_before`; by opening
    time then id, after the key `after`."""
    rows = await conn.fetch(
        "SELECT v.visit_id::text AS visit_id, v.opened_at, v.resolution, v.closed_at,"
        " (SELECT count(*) FROM referrals r WHERE r.visit_id = v.visit_id) AS referrals"
        " FROM visits v WHERE v.anonymised_at IS NULL"
        " AND NOT EXISTS (SELECT 1 FROM referrals r WHERE r.visit_id = v.visit_id AND r.anonymised_at IS NULL)"
        " AND (greatest(v.opened_at, v.closed_at) <= $1"
        "      OR EXISTS (SELECT 1 FROM referrals r WHERE r.visit_id = v.visit_id))"
        " AND ($2::timestamptz IS NULL OR (v.opened_at, v.visit_id) > ($2, $3::uuid))"
        " ORDER BY v.opened_at, v.visit_id LIMIT $4",
        idle_before, after[0] if after else None, after[1] if after else None, limit)
    return [VisitCandidate(r["visit_id"], r["opened_at"], r["resolution"], r["closed_at"], r["referrals"])
            for r in rows]


# --- erasing ------------------------------------------------------------------------------

async def anonymise_referrals(conn: Conn, vault: Vault, referral_ids: Sequence[str], at: datetime,
                              strip: Callable[[dict[str, Any]], dict[str, Any]]) -> list[str]:
    """Drops the summaries of these referrals and their sealed status codes (the link
    opens nothing once erased: nothing to send it for) and `strip`s their timeline
    details; returns the referrals that still held personal data."""
    rows = await conn.fetch(
        "UPDATE referrals SET summary = NULL, operator_reference_index = NULL, anonymised_at = $2"
        " WHERE referral_id = ANY($1::uuid[]) AND anonymised_at IS NULL RETURNING referral_id::text AS id",
        referral_ids, at)
    erased = [r["id"] for r in rows]
    await conn.execute("UPDATE status_links SET code = NULL WHERE referral_id = ANY($1::uuid[])", erased)
    entries = await conn.fetch(
        "SELECT id, detail FROM referral_timeline WHERE referral_id = ANY($1::uuid[])", erased)
    await conn.execute(
        "UPDATE referral_timeline t SET detail = v.detail FROM unnest($1::bigint[], $2::text[]) AS v (id, detail)"
        " WHERE t.id = v.id",
        [e["id"] for e in entries],
        [vault.seal_json(strip(detail_of(e, vault)), TIMELINE_DETAIL.context(e["id"])) for e in entries])
    return erased


async def anonymise_visits(conn: Conn, visit_ids: Sequence[str], at: datetime) -> list[str]:
    """Drops the citizen's identity, contact and lookup indexes from these visits;
    returns the visits that still held them."""
    rows = await conn.fetch(
        "UPDATE visits SET citizen = NULL, identity_index = NULL, contact_index = NULL, name_index = NULL,"
        " anonymised_at = $2"
        " WHERE visit_id = ANY($1::uuid[]) AND anonymised_at IS NULL RETURNING visit_id::text AS id",
        visit_ids, at)
    return [r["id"] for r in rows]


async def forget_published(conn: Conn, keys: Sequence[str]) -> int:
    """Deletes the published outbox rows of these referrals and visits (their record
    keys): their copies of the citizen's data. Rows not yet published stay, to be sent."""
    status = await conn.execute(
        "DELETE FROM outbox WHERE published_at IS NOT NULL AND record_key = ANY($1::text[])", list(keys))
    return int(status.split()[-1])


# --- the record of ops requests -----------------------------------------------------------

@dataclass(frozen=True)
class PrivacyRequest:
    request_id: str
    kind: str  # find, access, erase, retention
    requested_by: str
    requested_at: datetime
    selector: str  # how the citizen was named: identity, email, phone, visit, referral (never the values)
    referral_ids: Sequence[str] = ()
    visit_ids: Sequence[str] = ()
    counts: dict[str, int] | None = None
    note: str | None = None


async def record_request(conn: Conn, vault: Vault, request: PrivacyRequest) -> None:
    await conn.execute(
        "INSERT INTO privacy_requests (request_id, kind, requested_by, requested_at, selector, referral_ids,"
        " visit_ids, counts, note) VALUES ($1, $2, $3, $4, $5, $6::uuid[], $7::uuid[], $8, $9)",
        request.request_id, request.kind, request.requested_by, request.requested_at, request.selector,
        list(request.referral_ids), list(request.visit_ids), json.dumps(request.counts or {}),
        vault.seal_optional(request.note, PRIVACY_NOTE.context(request.request_id)))


async def finish_request(conn: Conn, request_id: str, at: datetime, *, answers: dict[str, str] | None = None,
                         counts: dict[str, int] | None = None) -> None:
    await conn.execute(
        "UPDATE privacy_requests SET finished_at = $2, answers = answers || $3::jsonb,"
        " counts = counts || $4::jsonb WHERE request_id = $1",
        request_id, at, json.dumps(answers or {}), json.dumps(counts or {}))

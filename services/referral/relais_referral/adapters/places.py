"""Reads and writes of the adviser's pages: the schedule of the known sites, a site's
permanences, today's visits, closing a visit. Callers own the transaction."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from asyncpg import Connection as Conn

from relais_kit.vault import Vault
from relais_referral.adapters.store import visit_of


async def set_schedule(conn: Conn, site_id: str, schedule: list[dict[str, Any]]) -> None:
    await conn.execute("UPDATE known_sites SET schedule = $2 WHERE site_id = $1",
                       site_id, json.dumps(schedule, ensure_ascii=False))


async def home_and_permanences(conn: Conn, home_id: str) -> list[dict[str, Any]]:
    """The home site first, then the sites attached to it (not retired), by name."""
    rows = await conn.fetch(
        "SELECT site_id, name, kind, city, parent_site_id, schedule FROM known_sites"
        " WHERE (site_id = $1 OR parent_site_id = $1) AND NOT retired"
        " ORDER BY site_id <> $1, name", home_id)
    return [{**dict(r), "schedule": json.loads(r["schedule"])} for r in rows]


async def place_of_the_day(conn: Conn, user_id: str, day: date) -> str | None:
    """The site the adviser chose to work at on `day`, if they chose one that day."""
    found = await conn.fetchval("SELECT site_id FROM places_of_the_day WHERE user_id = $1 AND day = $2",
                                user_id, day)
    return str(found) if found is not None else None


async def keep_place_of_the_day(conn: Conn, user_id: str, day: date, site_id: str) -> None:
    await conn.execute(
        "INSERT INTO places_of_the_day (user_id, day, site_id) VALUES ($1, $2, $3)"
        " ON CONFLICT (user_id) DO UPDATE SET day = excluded.day, site_id = excluded.site_id,"
        " chosen_at = now()", user_id, day, site_id)


async def visits_between(conn: Conn, vault: Vault, sites: list[str] | None, start: datetime,
                         end: datetime) -> list[dict[str, Any]]:
    """Visits opened in [start, end) at `sites` (None: every site), newest first, with
    their resolution and how many referrals they led to."""
    rows = await conn.fetch(
        "SELECT v.*, s.name AS site_name,"
        " (SELECT count(*) FROM referrals r WHERE r.visit_id = v.visit_id) AS referrals"
        " FROM visits v LEFT JOIN known_sites s ON s.site_id = v.site_id"
        " WHERE v.opened_at >= $1 AND v.opened_at < $2 AND ($3::text[] IS NULL OR v.site_id = ANY($3::text[]))"
        " ORDER BY v.opened_at DESC LIMIT 200", start, end, sites)
    return [{"visit": visit_of(r, vault), "site_name": r["site_name"], "resolution": r["resolution"],
             "closed_at": r["closed_at"], "referrals": r["referrals"]} for r in rows]


async def visit_state(conn: Conn, visit_id: str) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT closed_at, resolution FROM visits WHERE visit_id = $1", visit_id)
    return dict(row) if row else None


async def close_visit(conn: Conn, visit_id: str, resolution: str, at: datetime) -> bool:
    """True when the visit was open (and is now closed)."""
    done = await conn.execute(
        "UPDATE visits SET closed_at = $3, resolution = $2 WHERE visit_id = $1 AND closed_at IS NULL",
        visit_id, resolution, at)
    return str(done).endswith(" 1")


async def referrals_of_visit(conn: Conn, visit_id: str) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "SELECT referral_id, operator, procedure, status, requested_at, due_at, overdue_at FROM referrals"
        " WHERE visit_id = $1 ORDER BY requested_at", visit_id)
    return [dict(r) for r in rows]


async def needing_attention(conn: Conn, sites: list[str] | None, department: str | None,
                            at: datetime) -> list[dict[str, Any]]:
    """Referrals the adviser should act on: information asked, rejected, answered, or
    overdue (past due without an answer)."""
    rows = await conn.fetch(
        "SELECT r.referral_id, r.operator, r.procedure, r.status, r.site_id, r.requested_at, r.due_at,"
        " r.overdue_at, r.visit_id::text AS visit_id, s.name AS site_name"
        " FROM referrals r LEFT JOIN known_sites s ON s.site_id = r.site_id"
        " WHERE ($1::text[] IS NULL OR r.site_id = ANY($1::text[]))"
        " AND ($2::text IS NULL OR s.department = $2)"
        " AND (r.status IN ('info_requested', 'rejected', 'answered')"
        "      OR (r.status IN ('routed', 'acknowledged') AND (r.overdue_at IS NOT NULL OR r.due_at < $3)))"
        " ORDER BY r.due_at NULLS LAST, r.requested_at LIMIT 200", sites, department, at)
    return [dict(r) for r in rows]


async def citizen_names(conn: Conn, vault: Vault, visit_ids: list[str]) -> dict[str, str]:
    """« Given-name Family-name » of these visits' citizens, by visit id (none once erased)."""
    rows = await conn.fetch("SELECT * FROM visits WHERE visit_id = ANY($1::uuid[])", sorted(set(visit_ids)))
    visits = [visit_of(row, vault) for row in rows]
    return {v.visit_id: f"{v.citizen.given_name} {v.citizen.family_name}" for v in visits if v.citizen}

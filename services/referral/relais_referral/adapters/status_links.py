"""Reads and writes of the citizens' status links (migrations 012, 013): the keyed hash
of each referral's live code, to find the referral of a typed code, and the code sealed
(`sealed.STATUS_CODE`, opened by the service layer), to print it again and send it.
Callers own the transaction."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from asyncpg import Connection as Conn


async def replace(conn: Conn, referral_id: str, code_index: str, sealed_code: str, at: datetime,
                  made_by: str) -> None:
    """The referral's code is now this one; the one before (if any) no longer opens anything.
    The view count goes on across renewals (it is the referral's)."""
    await conn.execute(
        "INSERT INTO status_links (referral_id, code_index, code, made_at, made_by) VALUES ($1, $2, $3, $4, $5)"
        " ON CONFLICT (referral_id) DO UPDATE SET code_index = excluded.code_index, code = excluded.code,"
        " made_at = excluded.made_at, made_by = excluded.made_by", referral_id, code_index, sealed_code, at, made_by)


async def live_code(conn: Conn, referral_id: str, *, for_update: bool = False) -> dict[str, Any] | None:
    """The referral's link row: `code` is its sealed code, None when it was made before
    migration 013 (only its keyed hash kept); None when the referral has no code yet."""
    row = await conn.fetchrow("SELECT code FROM status_links WHERE referral_id = $1"
                              + (" FOR UPDATE" if for_update else ""), referral_id)
    return dict(row) if row else None


async def referral_of_code(conn: Conn, code_index: str) -> str | None:
    found = await conn.fetchval("SELECT referral_id::text FROM status_links WHERE code_index = $1", code_index)
    return str(found) if found is not None else None


async def count_view(conn: Conn, referral_id: str, at: datetime) -> None:
    await conn.execute("UPDATE status_links SET views = views + 1, viewed_at = $2 WHERE referral_id = $1",
                       referral_id, at)


async def link_of(conn: Conn, referral_id: str) -> dict[str, Any] | None:
    """When the live code was made and by whom, and how often the page was seen."""
    row = await conn.fetchrow("SELECT made_at, made_by, views, viewed_at FROM status_links WHERE referral_id = $1",
                              referral_id)
    return dict(row) if row else None


async def ended_at(conn: Conn, referral_id: str) -> datetime | None:
    """When the referral was closed or cancelled (its last such timeline entry)."""
    found = await conn.fetchval(
        "SELECT max(at) FROM referral_timeline WHERE referral_id = $1 AND event IN ('closed', 'cancelled')",
        referral_id)
    return found if isinstance(found, datetime) else None


async def site_schedule(conn: Conn, site_id: str) -> dict[str, Any] | None:
    """The site's name, city and schedule (from the sites registry's `sites` topic)."""
    row = await conn.fetchrow("SELECT name, city, schedule FROM known_sites WHERE site_id = $1", site_id)
    return {"name": row["name"], "city": row["city"], "schedule": json.loads(row["schedule"])} if row else None

"""This service's view of the sites registry (table `sites`), fed by the `sites` topic."""

from __future__ import annotations

import asyncpg

from relais_notifications.domain.sites import SiteState


async def record(conn: asyncpg.Connection, state: SiteState) -> bool:
    """Keeps `state` unless a newer one is stored; False when it was older (ignored).
    A retirement keeps what is known of the site's place in the registry."""
    if state.retired:
        applied = await conn.fetchval(
            "INSERT INTO sites (site_id, retired, updated_at) VALUES ($1, true, $2)"
            " ON CONFLICT (site_id) DO UPDATE SET retired = true, updated_at = EXCLUDED.updated_at"
            " WHERE sites.updated_at <= EXCLUDED.updated_at RETURNING true",
            state.site_id, state.updated_at)
    else:
        applied = await conn.fetchval(
            "INSERT INTO sites (site_id, parent_site_id, department, retired, updated_at, name, street,"
            " postcode, city) VALUES ($1, $2, $3, false, $4, $5, $6, $7, $8)"
            " ON CONFLICT (site_id) DO UPDATE SET parent_site_id = EXCLUDED.parent_site_id,"
            " department = EXCLUDED.department, retired = false, updated_at = EXCLUDED.updated_at,"
            " name = EXCLUDED.name, street = EXCLUDED.street, postcode = EXCLUDED.postcode, city = EXCLUDED.city"
            " WHERE sites.updated_at <= EXCLUDED.updated_at RETURNING true",
            state.site_id, state.parent_site_id, state.department, state.updated_at, state.name, state.street,
            state.postcode, state.city)
    return bool(applied)


async def get(conn: asyncpg.Connection, site_id: str) -> SiteState | None:
    """The site as this service knows it (None when the registry never told of it)."""
    row = await conn.fetchrow(
        "SELECT site_id, updated_at, parent_site_id, department, retired, name, street, postcode, city"
        " FROM sites WHERE site_id = $1", site_id)
    return SiteState(**dict(row)) if row else None

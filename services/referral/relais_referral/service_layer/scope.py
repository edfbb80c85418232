"""Whose referrals and visits a user may see: the platform's one rule
(relais_kit.access — ops everything, a supervisor their department, an adviser their
site and the sites attached to it), applied to this service's view of the sites
registry (`known_sites`: a site's parent and department)."""

from __future__ import annotations

import asyncpg

from relais_kit.access import EVERYTHING, NOTHING, Scope, scope_of
from relais_kit.auth import User

__all__ = ["EVERYTHING", "NOTHING", "Scope", "may_see", "scope_of", "sites_of"]


async def may_see(conn: asyncpg.Connection, user: User, site_id: str) -> bool:
    """The rule of one referral's or visit's page: the same as for lists."""
    site = await conn.fetchrow("SELECT parent_site_id, department FROM known_sites WHERE site_id = $1", site_id)
    return scope_of(user).covers(site_id, site["parent_site_id"] if site else None,
                                 site["department"] if site else None)


async def sites_of(conn: asyncpg.Connection, scope: Scope) -> list[str] | None:
    """The known sites a scope covers; None for every site."""
    if scope.everything:
        return None
    where, args = scope.where("site_id", "parent_site_id", "department")
    rows = await conn.fetch(f"SELECT site_id FROM known_sites WHERE {' AND '.join(where)} ORDER BY site_id", *args)
    found = [r["site_id"] for r in rows]
    if scope.home_site is not None and scope.home_site not in found:
        found.insert(0, scope.home_site)  # their home, even before the registry told us of it
    return found

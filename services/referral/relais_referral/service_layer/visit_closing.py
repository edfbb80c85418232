"""Closing a visit, saying how it ended: solved on the spot, referred, abandoned."""

from __future__ import annotations

import asyncpg

from relais_kit.auth import User
from relais_kit.envelope import now
from relais_kit.vault import Vault
from relais_referral.adapters import places, store
from relais_referral.domain.model import Visit
from relais_referral.service_layer.context import Context
from relais_referral.service_layer.errors import Conflict, NotFound
from relais_referral.service_layer.visits import may_work_at

RESOLUTIONS = ("solved_on_the_spot", "referred", "abandoned")


async def own_visit(conn: asyncpg.Connection, vault: Vault, user: User, visit_id: str) -> Visit:
    """The visit, if `user` is an adviser of its site (or of its parent); other sites'
    visits are not found."""
    visit = await store.get_visit(conn, vault, visit_id)
    site = await store.get_site(conn, visit.site_id) if visit else None
    if visit is None or site is None or user.role != "adviser" or not may_work_at(user, site):
        raise NotFound(f"visit {visit_id} not found")
    return visit


async def close_visit(conn: asyncpg.Connection, ctx: Context, user: User, visit_id: str,
                      resolution: str) -> Visit:
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}")
    visit = await own_visit(conn, ctx.vault, user, visit_id)
    at = now()
    if not await places.close_visit(conn, visit_id, resolution, at):
        state = await places.visit_state(conn, visit_id)
        raise Conflict(f"visit {visit_id} is already closed", (state or {}).get("resolution") or "closed")
    await ctx.publish(conn, "visits", "visit.closed", visit_id, {
        "visit_id": visit_id, "site_id": visit.site_id, "adviser_id": visit.adviser_id,
        "closed_at": at.isoformat(), "resolution": resolution})
    return visit

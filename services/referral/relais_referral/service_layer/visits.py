"""Opening a visit: the citizen sits at the counter."""

from __future__ import annotations

import uuid

import asyncpg

from relais_kit import access
from relais_kit.auth import User
from relais_kit.envelope import now
from relais_referral.adapters import store
from relais_referral.domain import events
from relais_referral.domain.model import Citizen, Site, Visit
from relais_referral.service_layer.context import Context
from relais_referral.service_layer.errors import InvalidField, NotAllowed


def may_work_at(user: User, site: Site) -> bool:
    """An adviser works at their site and at the permanences attached to it."""
    return access.works_at(user, site.site_id, site.parent_site_id)


async def open_visit(conn: asyncpg.Connection, ctx: Context, user: User, site_id: str,
                     channel: str, citizen: Citizen) -> Visit:
    site = await store.get_site(conn, site_id)
    if site is None or site.retired:
        raise InvalidField("site_id", f"unknown site {site_id!r}")
    if user.role != "adviser" or not may_work_at(user, site):
        raise NotAllowed(f"{user.user_id} does not work at {site_id}")
    visit = Visit(str(uuid.uuid4()), site_id, user.user_id, channel, citizen, now())
    await store.add_visit(conn, ctx.vault, visit)
    await ctx.publish(conn, "visits", "visit.opened", visit.visit_id, events.visit_opened(visit))
    return visit

"""Opening a visit: the citizen sits at the counter."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date

import asyncpg

from relais_kit import access
from relais_kit.auth import User
from relais_kit.envelope import now
from relais_referral.adapters import store
from relais_referral.domain import events
from relais_referral.domain.model import Citizen, PostalAddress, Site, Visit
from relais_referral.service_layer import audit
from relais_referral.service_layer.context import Context
from relais_referral.service_layer.errors import InvalidField, NotAllowed, NotFound


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


async def complete_citizen(conn: asyncpg.Connection, ctx: Context, user: User, visit_id: str, *,
                           birth_date: date | None = None, email: str | None = None, phone: str | None = None,
                           postal_address: PostalAddress | None = None) -> Visit:
    """What an operator needs and the visit lacked (a birth date, an address…), added by an
    adviser of the visit's site before referring; audited. The names do not change here."""
    visit = await store.get_visit(conn, ctx.vault, visit_id)
    site = await store.get_site(conn, visit.site_id) if visit else None
    if visit is None or site is None:
        raise NotFound(f"visit {visit_id} not found")
    if user.role != "adviser" or not may_work_at(user, site):
        raise NotAllowed(f"{user.user_id} does not work at {visit.site_id}")
    if visit.citizen is None:
        raise InvalidField("visit_id", f"the personal data of visit {visit_id} was erased: open a new visit")
    was = visit.citizen
    citizen = replace(was, birth_date=birth_date or was.birth_date, email=email or was.email,
                      phone=phone or was.phone, postal_address=postal_address or was.postal_address)
    if citizen != visit.citizen:
        await store.update_visit_citizen(conn, ctx.vault, visit_id, citizen)
        await audit.visit_completed(conn, user, visit_id)
    return replace(visit, citizen=citizen)

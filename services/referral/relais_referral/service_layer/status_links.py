"""The citizen's status link (issue #13 item 3). The adviser prints a receipt: a new
code is made and shown once (the one before stops working), audited as
`print_receipt`. Anyone holding the code reads where the request stands — the first
name and nothing else of the person — until 30 days after it was closed or cancelled;
each view is counted, nothing is kept of who looked. An unknown code, an expired one
and an erased referral all read as "no such link" (no oracle)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from relais_kit import access
from relais_kit.auth import User
from relais_kit.logs import log
from relais_referral.adapters import status_links, store
from relais_referral.domain import status_link
from relais_referral.domain.model import Referral
from relais_referral.service_layer import audit
from relais_referral.service_layer.context import Context
from relais_referral.service_layer.errors import NotAllowed, NotFound
from relais_referral.service_layer.scope import may_see


@dataclass(frozen=True)
class Receipt:
    """What the printed receipt says: the code (in clear, this once) and the referral."""

    code: str
    referral: Referral
    site_name: str


async def new_code(conn: asyncpg.Connection, ctx: Context, user: User, referral_id: str, at: datetime) -> Receipt:
    """A new code for the referral (replacing the one before), for an adviser of its
    site. NotFound outside their scope; NotAllowed for other roles or a site they only
    see; the referral must still carry its personal data."""
    referral = await store.get_referral(conn, ctx.vault, referral_id, for_update=True)
    site = await store.get_site(conn, referral.site_id) if referral else None
    if referral is None or referral.anonymised_at is not None or not await may_see(conn, user, referral.site_id):
        raise NotFound(f"referral {referral_id} not found")
    structlog.contextvars.bind_contextvars(referral_id=referral_id)
    if not access.works_at(user, referral.site_id, site.parent_site_id if site else None):
        raise NotAllowed("only an adviser of the referral's site prints its receipt")
    code = status_link.new_code()
    await status_links.replace(conn, referral_id, ctx.vault.blind_index(status_link.INDEX_KIND, code), at,
                               f"adviser:{user.user_id}")
    await audit.record(conn, user, referral_id, "print_receipt")
    log.info("status_code_renewed")
    return Receipt(code, referral, site.name if site else referral.site_id)


@dataclass(frozen=True)
class StatusPage:
    """Everything the public page shows: nothing but the first name of the person."""

    first_name: str | None
    operator: str
    procedure: str
    status: str
    situation: status_link.Situation
    due_at: datetime | None
    site_name: str
    openings: list[status_link.Opening]


async def read(conn: asyncpg.Connection, ctx: Context, typed: str, at: datetime) -> StatusPage | None:
    """The page of a typed code, counting the view; None when there is nothing to show."""
    code = status_link.typed_code(typed)
    if code is None:
        return None
    referral_id = await status_links.referral_of_code(conn, ctx.vault.blind_index(status_link.INDEX_KIND, code))
    referral = await store.get_referral(conn, ctx.vault, referral_id) if referral_id else None
    if referral is None or referral.anonymised_at is not None:
        return None
    structlog.contextvars.bind_contextvars(referral_id=referral.referral_id)
    if status_link.expired(referral.status.value, await status_links.ended_at(conn, referral.referral_id), at):
        log.info("status_link_expired")
        return None
    await status_links.count_view(conn, referral.referral_id, at)
    visit = await store.get_visit(conn, ctx.vault, referral.visit_id)
    operator = ctx.catalogue.operator(referral.operator)
    procedure = ctx.catalogue.procedure(referral.operator, referral.procedure)
    words = status_link.operator_words(referral.operator, operator.name if operator else referral.operator)
    timeline = await store.timeline(conn, ctx.vault, referral.referral_id)
    site = await status_links.site_schedule(conn, referral.site_id)
    place = f"{site['name']} ({site['city']})" if site else ""
    log.info("status_link_viewed", status=referral.status.value)
    return StatusPage(
        first_name=visit.citizen.given_name if visit and visit.citizen else None,
        operator=operator.name if operator else referral.operator,
        procedure=procedure.label if procedure else referral.procedure,
        status=referral.status.value,
        situation=status_link.situation(referral.status.value, words, referral.requested_at, timeline),
        due_at=referral.due_at, site_name=site["name"] if site else "",
        openings=status_link.next_openings(site["schedule"], place, at) if site else [])

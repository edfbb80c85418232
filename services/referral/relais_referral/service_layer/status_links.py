"""The citizen's status link (issue #13 items 3 and 4). A code is made when the referral
is routed, kept as a keyed hash (to find the referral of a typed code) and sealed (to
print it again on the receipt and send it in the citizen's messages). The adviser
prints the receipt with the current code (audited `print_receipt`), and renews it at the
counter when it was lost or seen by someone else (« Nouveau code », audited
`renew_status_code`): the one before stops working. Anyone holding the code reads where
the request stands — the first name and nothing else of the person — until 30 days
after it was closed or cancelled; each view is counted, nothing is kept of who looked.
An unknown code, an expired one and an erased referral all read as "no such link" (no
oracle)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

from relais_kit import access
from relais_kit.auth import User
from relais_kit.logs import log
from relais_referral.adapters import status_links, store
from relais_referral.adapters.sealed import STATUS_CODE
from relais_referral.domain import status_link
from relais_referral.domain.model import Referral
from relais_referral.service_layer import audit
from relais_referral.service_layer.context import Context
from relais_referral.service_layer.errors import NotAllowed, NotFound
from relais_referral.service_layer.scope import may_see


@dataclass(frozen=True)
class Receipt:
    """What the printed receipt says: the code (in clear) and the referral."""

    code: str
    referral: Referral
    site_name: str


async def make_code(conn: asyncpg.Connection, ctx: Context, referral_id: str, at: datetime, made_by: str) -> str:
    """A new code for the referral, replacing the one before (which stops working)."""
    code = status_link.new_code()
    await status_links.replace(conn, referral_id, ctx.vault.blind_index(status_link.INDEX_KIND, code),
                               ctx.vault.seal(code, STATUS_CODE.context(referral_id)), at, made_by)
    return code


async def current_code(conn: asyncpg.Connection, ctx: Context, referral_id: str) -> str | None:
    """The referral's live code, None when it has none or only a code made before the
    codes were sealed (migration 013: printed on a receipt, kept nowhere in clear)."""
    row = await status_links.live_code(conn, referral_id)
    return ctx.vault.open(row["code"], STATUS_CODE.context(referral_id)) if row and row["code"] else None


async def code_for_message(conn: asyncpg.Connection, ctx: Context, referral_id: str, at: datetime) -> str | None:
    """The code to put in a message to the citizen: the live one; a new one for a
    referral routed before codes were made at routing and never printed; None when its
    only code is the one on a printed receipt (a new one would silently void it)."""
    row = await status_links.live_code(conn, referral_id, for_update=True)
    if row is None:
        return await make_code(conn, ctx, referral_id, at, "platform")
    return ctx.vault.open(row["code"], STATUS_CODE.context(referral_id)) if row["code"] else None


async def _at_the_counter(conn: asyncpg.Connection, ctx: Context, user: User,
                          referral_id: str) -> tuple[Referral, str]:
    """The referral and its site's name, for an adviser of its site. NotFound outside
    their scope; NotAllowed for other roles or a site they only see; the referral must
    still carry its personal data."""
    referral = await store.get_referral(conn, ctx.vault, referral_id, for_update=True)
    site = await store.get_site(conn, referral.site_id) if referral else None
    if referral is None or referral.anonymised_at is not None or not await may_see(conn, user, referral.site_id):
        raise NotFound(f"referral {referral_id} not found")
    structlog.contextvars.bind_contextvars(referral_id=referral_id)
    if not access.works_at(user, referral.site_id, site.parent_site_id if site else None):
        raise NotAllowed("only an adviser of the referral's site prints its receipt")
    return referral, site.name if site else referral.site_id


async def receipt(conn: asyncpg.Connection, ctx: Context, user: User, referral_id: str, at: datetime) -> Receipt:
    """The receipt with the referral's current code: the same at each print. A referral
    with no sealed code yet (routed before migration 013) gets one at its first print."""
    referral, site_name = await _at_the_counter(conn, ctx, user, referral_id)
    code = await current_code(conn, ctx, referral_id)
    if code is None:
        code = await make_code(conn, ctx, referral_id, at, f"adviser:{user.user_id}")
        log.info("status_code_made")
    await audit.record(conn, user, referral_id, "print_receipt")
    return Receipt(code, referral, site_name)


async def renew(conn: asyncpg.Connection, ctx: Context, user: User, referral_id: str, at: datetime) -> Receipt:
    """« Nouveau code »: the citizen lost the code, or someone else saw it. The old one
    stops working at once; the receipt to hand over carries the new one, and so do the
    messages that follow."""
    referral, site_name = await _at_the_counter(conn, ctx, user, referral_id)
    code = await make_code(conn, ctx, referral_id, at, f"adviser:{user.user_id}")
    await audit.record(conn, user, referral_id, "renew_status_code")
    log.info("status_code_renewed")
    return Receipt(code, referral, site_name)


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

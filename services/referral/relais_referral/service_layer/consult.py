"""Reading one referral for its page: the referral, its site, its timeline with the
names of the people who moved it, the referrals it replaced or that replaced it — if
the user may see it (their scope; other referrals are "not found"). Viewing the page
is audited; refreshing its timeline is not (it follows a view)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from relais_kit.auth import User
from relais_kit.vault import Vault
from relais_referral.adapters import store
from relais_referral.domain.model import Referral, Site, Visit
from relais_referral.service_layer import audit, scope
from relais_referral.service_layer.errors import NotFound


@dataclass(frozen=True)
class ReferralView:
    referral: Referral
    site: Site | None
    visit: Visit | None
    timeline: list[dict[str, Any]]
    names: dict[str, str]  # actor → display name of the advisers named on the timeline
    seq: int  # the timeline's last entry number (the live feed starts there)
    replaced_by: str | None
    outcome: str | None


async def consult(conn: asyncpg.Connection, vault: Vault, user: User, referral_id: str, *,
                  view: bool = True) -> ReferralView:
    referral = await store.get_referral(conn, vault, referral_id)
    if referral is None or not await scope.may_see(conn, user, referral.site_id):
        raise NotFound(f"referral {referral_id} not found")
    structlog.contextvars.bind_contextvars(referral_id=referral_id)
    timeline = await store.timeline(conn, vault, referral_id)
    advisers = sorted({e["actor"].split(":", 1)[1] for e in timeline if e["actor"].startswith("adviser:")})
    names = {f"adviser:{r['user_id']}": r["display_name"] for r in await conn.fetch(
        "SELECT user_id, display_name FROM accounts WHERE user_id = ANY($1::text[])", advisers)}
    extra = await conn.fetchrow(
        "SELECT (SELECT referral_id::text FROM referrals WHERE supersedes_referral_id = $1 LIMIT 1) AS replaced_by,"
        " (SELECT closed_outcome FROM referrals WHERE referral_id = $1) AS outcome", referral_id)
    if view:
        await audit.record(conn, user, referral_id, "view")
    return ReferralView(referral, await store.get_site(conn, referral.site_id),
                        await store.get_visit(conn, vault, referral.visit_id) if user.role == "adviser" else None,
                        timeline, names, timeline[-1]["id"] if timeline else 0,
                        extra["replaced_by"], extra["outcome"])

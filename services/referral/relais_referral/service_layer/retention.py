"""The referral service's steps of the retention job (`relais_kit.retention`): erase the
personal data of the referrals, then of the visits, whose retention period ended
(`domain/retention.py`), and ask the other services to erase their copies — each step
in one transaction with its `personal_data.erasure_requested`. At most `BATCH`
referrals and `BATCH` visits a run: a backlog clears over the following runs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import asyncpg

from relais_kit.retention import Step
from relais_referral.adapters import privacy_store
from relais_referral.domain import retention
from relais_referral.domain.lifecycle import Status
from relais_referral.domain.retention import Erasure, Periods, VisitFacts
from relais_referral.service_layer import privacy
from relais_referral.service_layer.context import Context
from relais_referral.settings import ReferralSettings

BATCH = retention.MAX_IDS
PAGE = 500
C = TypeVar("C")


def periods_of(settings: ReferralSettings) -> Periods:
    return Periods(timedelta(days=settings.retention_referral_days), timedelta(days=settings.retention_visit_days),
                   timedelta(days=settings.retention_inactive_days))


def steps(ctx: Context, periods: Periods) -> list[tuple[str, Step]]:
    async def referrals(conn: asyncpg.Connection, at: datetime) -> int:
        due = await due_referrals(conn, at, periods)
        if due:
            await privacy.erase(conn, ctx, [Erasure(tuple(due), ())], at, privacy.RETENTION)
        return len(due)

    async def visits(conn: asyncpg.Connection, at: datetime) -> int:
        due = await due_visits(conn, at, periods)
        if due:
            await privacy.erase(conn, ctx, (await privacy.held(conn, due)).groups(), at, privacy.RETENTION)
        return len(due)

    return [("referrals_anonymised", referrals), ("visits_anonymised", visits)]


async def due_referrals(conn: asyncpg.Connection, at: datetime, periods: Periods) -> list[str]:
    def due(c: privacy_store.ReferralCandidate) -> bool:
        return retention.referral_due(Status(c.status), c.changed_at, c.last_activity, at, periods)

    return await _collect(
        lambda after: privacy_store.referral_candidates(conn, at - min(periods.referral, periods.inactive),
                                                        after, PAGE),
        due, lambda c: (c.changed_at, c.referral_id), lambda c: c.referral_id)


async def due_visits(conn: asyncpg.Connection, at: datetime, periods: Periods) -> list[str]:
    def due(c: privacy_store.VisitCandidate) -> bool:
        last = max(c.opened_at, c.closed_at) if c.closed_at else c.opened_at
        # The candidates hold no referral still holding personal data.
        return retention.visit_due(VisitFacts(c.resolution, c.closed_at, last, c.referrals, 0), at, periods)

    return await _collect(
        lambda after: privacy_store.visit_candidates(conn, at - min(periods.visit, periods.inactive), after, PAGE),
        due, lambda c: (c.opened_at, c.visit_id), lambda c: c.visit_id)


async def _collect(page: Callable[[tuple[datetime, str] | None], Awaitable[Sequence[C]]],
                   due: Callable[[C], bool], key: Callable[[C], tuple[datetime, str]],
                   ident: Callable[[C], str]) -> list[str]:
    """Walks the candidates page by page (the database narrows them down, the domain's
    rule decides) until `BATCH` are due or none is left."""
    found: list[str] = []
    after = None
    while len(found) < BATCH:
        candidates = await page(after)
        found += [ident(c) for c in candidates if due(c)]
        if len(candidates) < PAGE:
            break
        after = key(candidates[-1])
    return found[:BATCH]

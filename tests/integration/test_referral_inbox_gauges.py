"""The gauges of referrals waiting on each operator, counted by the referral service's
own loop on the real PostgreSQL: referrals left routed, acknowledged, flagged overdue
by the deadline rule and answered show as overdue / unacknowledged / the age of the
oldest per operator, and every operator of deploy/topics.yaml has its series."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import REGISTRY

from relais_kit.settings import REPO_ROOT
from relais_kit.topics import load_topics
from tests.referral_app import operator_says, refer, referral_api, status_is
from tests.support import eventually

ANTS = {"operator": "ants", "procedure": "ants.carte-grise.changement-adresse",
        "summary": "Changer l'adresse de la carte grise après un déménagement."}
NAMES = ("relais_referrals_overdue", "relais_operator_inbox_unacknowledged_referrals",
         "relais_operator_inbox_oldest_unacknowledged_age_seconds")


def figures(operator: str) -> tuple[float | None, ...]:
    """(overdue, unacknowledged, age of the oldest unacknowledged) as /metrics shows them."""
    return tuple(REGISTRY.get_sample_value(name, {"operator": operator}) for name in NAMES)


async def test_the_gauges_follow_the_referrals_waiting_on_each_operator(database_url, kafka_bootstrap):
    async with referral_api(database_url, kafka_bootstrap, RELAIS_OPS_GAUGES_S=0.2,
                            RELAIS_OVERDUE_CHECK_S=0.2) as api:
        first, late = await refer(api), await refer(api, **ANTS)
        second = await refer(api)
        for referral_id in (first, second, late):
            await eventually(lambda r=referral_id: status_is(api, r, "routed"), what="routed")
        db = await asyncpg.connect(database_url, server_settings={"search_path": "referral"})
        try:
            # CAF has not read `first` for two hours; the ANTS one is past its due time.
            await db.execute("UPDATE referrals SET updated_at = now() - interval '2 hours' WHERE referral_id = $1",
                             first)
            await db.execute("UPDATE referrals SET due_at = $2 WHERE referral_id = $1",
                             late, datetime.now(UTC) - timedelta(minutes=1))
        finally:
            await db.close()

        async def counted() -> bool:
            caf, ants = figures("caf"), figures("ants")
            return (caf[:2] == (0, 2) and 7200 <= (caf[2] or 0) < 7200 + 120
                    and ants[:2] == (1, 1) and 0 < (ants[2] or 0) < 120)

        await eventually(counted, what="CAF's two unacknowledged referrals and ANTS's overdue one counted")
        for operator in set(load_topics(REPO_ROOT / "deploy" / "topics.yaml").operators) - {"caf", "ants"}:
            assert figures(operator) == (0, 0, 0), operator

        # CAF acknowledges the old one; ANTS answers, late: the referral keeps its
        # overdue flag but no longer waits on ANTS.
        await operator_says(kafka_bootstrap, "operator.acknowledged", first)
        await operator_says(kafka_bootstrap, "operator.answered", late, operator="ants", outcome="resolved",
                            message_to_citizen="Fait.", message_to_adviser="Fait.")
        await eventually(lambda: status_is(api, late, "answered"), what="the late answer")

        async def moved() -> bool:
            caf = figures("caf")  # `second` is left, routed a few seconds ago
            return caf[:2] == (0, 1) and 0 < (caf[2] or 0) < 120 and figures("ants") == (0, 0, 0)

        await eventually(moved, what="the acknowledgement and the answer counted")

"""The view of the sites registry: `site.upserted` / `site.retired` from the compacted
`sites` topic, read again from its start at every assignment (see `relais_kit.consumer`),
kept in table `sites` for the scope of readers (service_layer/access.py)."""

from __future__ import annotations

from collections.abc import Mapping

import asyncpg

from relais_kit.consumer import Delivery, Handler
from relais_kit.envelope import event_type
from relais_kit.logs import log
from relais_notifications.adapters import sites
from relais_notifications.domain.sites import SiteState

GROUP = "relais-notifications-sites"
TOPICS = ["sites"]


def handlers() -> Mapping[str, Handler]:
    async def on_upserted(delivery: Delivery, conn: asyncpg.Connection) -> None:
        await _keep(conn, SiteState.upserted(delivery.event.data))

    async def on_retired(delivery: Delivery, conn: asyncpg.Connection) -> None:
        await _keep(conn, SiteState.retired_from(delivery.event.data))

    return {event_type("site.upserted"): on_upserted, event_type("site.retired"): on_retired}


async def _keep(conn: asyncpg.Connection, state: SiteState) -> None:
    if not await sites.record(conn, state):
        log.info("site_state_older_ignored", site_id=state.site_id, updated_at=state.updated_at.isoformat())

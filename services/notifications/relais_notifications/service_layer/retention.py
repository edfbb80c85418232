"""This service's step of the retention job (relais_kit.retention): the content of a
delivery (address, subject, body) is erased once it is `RELAIS_RETENTION_DELIVERY_DAYS`
old and no longer pending; what was delivered to whom, when and how stays."""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from relais_kit.retention import Step
from relais_notifications.adapters import store


def steps(delivery_days: int) -> list[tuple[str, Step]]:
    period = timedelta(days=delivery_days)

    async def deliveries(conn: asyncpg.Connection, at: datetime) -> int:
        return await store.erase_older_than(conn, at - period, at)

    return [("deliveries_erased", deliveries)]

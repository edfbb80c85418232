"""Parked outbox rows of every service (adapters.services_api), and retrying or
discarding one: the console audits the request (who, which service and row, why)
before the service acts, and the service keeps its own record (`outbox_actions`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from relais_kit.logs import log
from relais_ops.service_layer.audited import Audit, reason_of
from relais_ops.service_layer.ops_api import Action, OpsApi, ServiceParked, Unanswered

ACTIONS: dict[Action, str] = {"retry": "outbox_row_retried", "discard": "outbox_row_discarded"}


async def _ask(api: OpsApi, service: str) -> ServiceParked:
    try:
        return await api.parked(service)
    except Unanswered as exc:
        return ServiceParked(service, error=str(exc))


async def everywhere(api: OpsApi, services: Sequence[str]) -> list[ServiceParked]:
    """Each service's parked rows, or why it did not say, in the order given."""
    return list(await asyncio.gather(*(_ask(api, s) for s in services)))


async def act(api: OpsApi, audit: Audit, user_id: str, service: str, row_id: int, action: Action,
              reason: str) -> None:
    """Audits, then asks the service to retry or discard the row. NotParked or
    Unanswered from the service go up."""
    why = reason_of(reason)
    await audit(user_id, ACTIONS[action], f"{service}:{row_id}", why, {"service": service, "outbox_id": row_id})
    await api.act(service, row_id, action, why)
    log.warning(ACTIONS[action], user=user_id, service=service, outbox_id=row_id)

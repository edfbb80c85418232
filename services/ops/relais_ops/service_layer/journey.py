"""One referral's journey: every service asked at once (adapters.services_api), the
answers merged (domain.journey); a service that does not answer is named, the others
still shown."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from relais_ops.domain.journey import Journey, ServiceJourney, merge
from relais_ops.service_layer.ops_api import OpsApi, Unanswered


async def _ask(api: OpsApi, service: str, subject: str) -> ServiceJourney:
    try:
        answer = await api.journey(service, subject)
    except Unanswered as exc:
        return ServiceJourney(service, error=str(exc))
    # Named as the console knows it, whatever the service calls itself.
    return ServiceJourney(service, answer.published, answer.consumed)


async def follow(api: OpsApi, services: Sequence[str], subject: str) -> Journey:
    answers = await asyncio.gather(*(_ask(api, s, subject) for s in services))
    return merge(subject, answers)

"""GET /console/parcours?demande=<referral id>: one referral's journey — every event it
caused on every topic, who handled it when, the time of each hop, the link to its
trace — from every service's ops API, merged into one timeline; and its messages to
the person and the adviser, where each stands (the notifications service's ops API)."""

from __future__ import annotations

import asyncio
import re
import uuid

from fastapi import APIRouter, Request
from fastapi.responses import Response

from relais_ops.domain import messages as message_words
from relais_ops.domain.journey import trace_link
from relais_ops.entrypoints.console.dead_letters import seconds, short_type
from relais_ops.entrypoints.console.pages import OpsUser, render
from relais_ops.entrypoints.console.services import LABELS, ops_api, service_urls, settings_of
from relais_ops.service_layer import messages
from relais_ops.service_layer.journey import follow

router = APIRouter()


def milliseconds(value: float | None) -> str:
    """`152`, `1,5` (French decimal comma under 10 ms), `—` when unknown."""
    if value is None:
        return "—"
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.1f}".replace(".", ",")


def read_by_operator(topic: str) -> bool:
    """An operator's inbox: read by the operator's own consumer, outside the platform."""
    return INBOX.match(topic) is not None
PATH = "/console/parcours"
INBOX = re.compile(r"^operator\.[a-z0-9-]+\.inbox$")
NOT_PUBLISHED = {"pending": "pas encore publié", "parked": "bloqué (voir Évènements bloqués)",
                 "discarded": "abandonné, jamais publié"}


@router.get(PATH, include_in_schema=False)
async def journey_page(request: Request, ops: OpsUser, demande: str = "") -> Response:
    wanted = demande.strip()
    if not wanted:
        return render(request, "journey.html.j2", journey=None, values={}, errors={})
    try:
        subject = str(uuid.UUID(wanted))
    except ValueError:
        return render(request, "journey.html.j2", 422, journey=None, values={"demande": wanted},
                      errors={"demande": "Une référence de demande ressemble à 3f2c…-…-…: 36 caractères."})
    settings = settings_of(request)
    api = ops_api(request, ops)
    found, told = await asyncio.gather(follow(api, list(service_urls(settings)), subject),
                                       messages.of_referral(api, subject))
    return render(request, "journey.html.j2", journey=found, values={"demande": subject}, errors={},
                  messages=told, words=message_words,
                  labels=LABELS, seconds=seconds, not_published=NOT_PUBLISHED, ms=milliseconds,
                  short_type=short_type, read_by_operator=read_by_operator,
                  trace_url=lambda t: trace_link(settings.trace_url, t))

"""The port to the services' ops API (adapters.services_api over HTTP): one
referral's journey in a service, a service's parked outbox rows, and retrying or
discarding one; a referral's messages (the notifications service)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from relais_ops.domain.journey import ServiceJourney
from relais_ops.domain.messages import Delivery

Action = Literal["retry", "discard"]


class Unanswered(Exception):
    """A service did not answer, refused or answered something unreadable (the message,
    in French, says which)."""


class NotParked(LookupError):
    """No parked row with that id in that service (never parked, or already handled)."""


@dataclass(frozen=True)
class ParkedRow:
    id: int
    topic: str
    event_type: str
    created_at: datetime | None
    parked_at: datetime | None
    reason: str
    waiting_behind: int


@dataclass(frozen=True)
class ServiceParked:
    service: str
    schema: str = ""
    rows: list[ParkedRow] = field(default_factory=list)
    error: str | None = None


class OpsApi(Protocol):
    async def journey(self, service: str, subject: str) -> ServiceJourney: ...

    async def parked(self, service: str) -> ServiceParked: ...

    async def act(self, service: str, row_id: int, action: Action, reason: str) -> None: ...

    async def deliveries(self, referral_id: str) -> list[Delivery]:
        """The facts of a referral's messages (the notifications service's ops API)."""
        ...

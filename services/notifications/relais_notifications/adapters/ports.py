"""The ports the delivery loop sends through, and how they fail."""

from __future__ import annotations

import uuid
from typing import Protocol


class DeliveryError(Exception):
    """A send that did not happen. `reason` is plain French without personal data (it
    goes into the `notification.failed` event); `permanent` means trying again is
    pointless (the server refused the address for good)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Mailer(Protocol):
    async def send(self, *, notification_id: uuid.UUID, to: str, subject: str, body: str) -> None: ...


class SmsGateway(Protocol):
    async def send(self, *, notification_id: uuid.UUID, to: str, text: str) -> None: ...

"""The messages of one referral as the ops console tells them: to whom (the person or
the adviser), by which channel, where each stands — waiting, sent, received by the
telephone (an SMS's delivery report), failed — in words, with the reason of a failure
and the next attempt of a waiting one. Facts only: the notifications service gives
the console no address and no text (its ops API), so none can be shown."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

RECIPIENTS = {"citizen": "La personne", "adviser": "Le conseiller"}
CHANNELS = {"sms": "SMS", "email": "courriel", "letter": "courrier", "adviser_screen": "écran du conseiller"}
# Where a message stands: its delivery's status, `delivered` once the telephone got it.
STATES = {"pending": "en attente", "sent": "envoyé", "delivered": "reçu par le téléphone", "failed": "échec"}
BADGES = {"pending": "info", "sent": "new", "delivered": "success", "failed": "error"}
# The SMS gateway's last delivery report (Kannel's DLR), when it says more than the state.
REPORTS = {"submitted": "remis à l'opérateur téléphonique", "buffered": "en attente chez l'opérateur téléphonique",
           "delivered": "reçu par le téléphone", "failed": "non remis au téléphone",
           "rejected": "refusé par l'opérateur téléphonique"}


@dataclass(frozen=True)
class Delivery:
    """One message of the referral, as the notifications service's ops API says it."""

    id: str
    recipient: str  # citizen, adviser
    channel: str  # sms, email, letter, adviser_screen
    status: str  # pending, sent, failed
    attempts: int
    reason: str | None = None
    created_at: datetime | None = None
    sent_at: datetime | None = None
    delivered_at: datetime | None = None
    failed_at: datetime | None = None
    next_attempt_at: datetime | None = None
    report: str | None = None
    erased_at: datetime | None = None

    @property
    def state(self) -> str:
        """pending, sent, delivered (a sent SMS the telephone received) or failed."""
        if self.status == "sent" and self.delivered_at is not None:
            return "delivered"
        return self.status

    @property
    def to_citizen(self) -> bool:
        return self.recipient == "citizen"


@dataclass(frozen=True)
class Messages:
    """A referral's messages, oldest first, or why the notifications service gave none."""

    deliveries: Sequence[Delivery] = ()
    error: str | None = None


def recipient_words(delivery: Delivery) -> str:
    return RECIPIENTS.get(delivery.recipient, delivery.recipient)


def channel_words(delivery: Delivery) -> str:
    return CHANNELS.get(delivery.channel, delivery.channel)


def state_words(delivery: Delivery) -> str:
    return STATES.get(delivery.state, delivery.state)


def badge(delivery: Delivery) -> str:
    """The DSFR badge's kind (fr-badge--<kind>) of its state."""
    return BADGES.get(delivery.state, "info")


def report_words(delivery: Delivery) -> str | None:
    """The gateway's last report in words, when it adds to the state (an SMS sent but not
    yet received: handed to the operator, buffered); None otherwise."""
    if delivery.report is None or delivery.report == "delivered" or delivery.state == "failed":
        return None
    return REPORTS.get(delivery.report, delivery.report)


def moments(delivery: Delivery) -> list[tuple[str, datetime]]:
    """When it was sent, received and failed, in that order, as far as known."""
    found = [("envoyé le", delivery.sent_at), ("reçu le", delivery.delivered_at), ("échec le", delivery.failed_at)]
    return [(words, at) for words, at in found if at is not None]


def next_attempt(delivery: Delivery) -> datetime | None:
    """The next attempt of a message still waiting (none once settled)."""
    return delivery.next_attempt_at if delivery.status == "pending" else None


def in_order(deliveries: Iterable[Delivery]) -> list[Delivery]:
    """Oldest first; the person's message before the adviser's for the same cause."""
    return sorted(deliveries, key=lambda d: (d.created_at is None, d.created_at or datetime.min,
                                             not d.to_citizen, d.id))

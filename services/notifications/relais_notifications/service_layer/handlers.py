"""What the service does with the events it consumes from `referrals`."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import asyncpg
import structlog

from relais_kit.consumer import Delivery, Handler, Refused
from relais_kit.contract import Contract
from relais_kit.envelope import event_type, now
from relais_kit.logs import log
from relais_kit.vault import Vault
from relais_notifications.adapters import store
from relais_notifications.domain.model import Answer, Notification, UnusableAnswer
from relais_notifications.domain.notifications import notifications_for
from relais_notifications.service_layer import events, metrics

GROUP = "relais-notifications"
TOPICS = ["referrals"]
ANSWERED = event_type("referral.answered")


def handlers(contract: Contract, source: str, vault: Vault) -> Mapping[str, Handler]:
    async def on_answered(delivery: Delivery, conn: asyncpg.Connection) -> None:
        await referral_answered(delivery, conn, contract, source, vault)

    return {ANSWERED: on_answered}


async def referral_answered(delivery: Delivery, conn: asyncpg.Connection,
                            contract: Contract, source: str, vault: Vault) -> None:
    """Stores the citizen's and the adviser's deliveries in the consumer's transaction.
    E-mail and SMS stay `pending` for the delivery loop (woken at commit); a letter
    and the adviser's screen are delivered by being stored, and the letter's
    `notification.sent` goes into the outbox right here."""
    event = delivery.event
    try:
        answer = Answer.from_event_data(event.data)
    except UnusableAnswer as exc:
        raise Refused("schema_violation", str(exc)) from exc
    structlog.contextvars.bind_contextvars(referral_id=str(answer.referral_id))
    at = now()
    for notification in notifications_for(answer, cause_event_id=event.id):
        if not await store.add(conn, vault, notification, at):
            log.info("delivery_already_known", delivery_id=str(notification.id),
                     recipient=notification.recipient)
            continue
        log.info("delivery_planned", delivery_id=str(notification.id), recipient=notification.recipient,
                 channel=notification.channel, status=notification.status, outcome=answer.outcome,
                 reason=notification.reason)
        if notification.announce:
            await _announce(conn, contract, source, vault, notification, at)
        metrics.settled(notification.channel, notification.status)  # before the commit: see metrics
    await store.wake_delivery_loop(conn)


async def _announce(conn: asyncpg.Connection, contract: Contract, source: str, vault: Vault,
                    notification: Notification, at: datetime) -> None:
    """A citizen's notification settled as it was stored (a letter, or one that could
    not be written) is told at once; the others when the delivery loop settles them."""
    if notification.status == "sent":
        await events.record_sent(
            conn, contract, source, vault, notification_id=notification.id,
            referral_id=notification.referral_id, cause_event_id=notification.cause_event_id,
            channel=notification.channel, at=at)
    elif notification.status == "failed":
        await events.record_failed(
            conn, contract, source, vault, notification_id=notification.id,
            referral_id=notification.referral_id, cause_event_id=notification.cause_event_id,
            channel=notification.channel, at=at, reason=notification.reason or "échec")

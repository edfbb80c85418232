"""What the service does with the events it consumes from `referrals`: each moment the
citizen is told of (sent, information asked, answered, rejected) becomes deliveries."""

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
from relais_notifications.adapters import sites, store
from relais_notifications.domain.model import MOMENTS, Notification, Step, UnusableStep
from relais_notifications.domain.notifications import notifications_for
from relais_notifications.domain.texts import Wordings
from relais_notifications.service_layer import events, metrics

GROUP = "relais-notifications"
TOPICS = ["referrals"]
# The moments the citizen is told of, by the event that says each (model.MOMENTS).
TOLD = {event_type(name): moment for name, moment in MOMENTS.items()}


def handlers(contract: Contract, source: str, vault: Vault, wordings: Wordings) -> Mapping[str, Handler]:
    async def on_moment(delivery: Delivery, conn: asyncpg.Connection) -> None:
        await referral_moment(delivery, conn, contract, source, vault, wordings)

    return dict.fromkeys(TOLD, on_moment)


async def referral_moment(delivery: Delivery, conn: asyncpg.Connection, contract: Contract, source: str,
                          vault: Vault, wordings: Wordings) -> None:
    """Stores the citizen's (and, for an answer, the adviser's) deliveries in the
    consumer's transaction. E-mail and SMS stay `pending` for the delivery loop (woken
    at commit); a letter and the adviser's screen are delivered by being stored, and the
    letter's `notification.sent` goes into the outbox right here. A moment other than an
    answer without `recipient` (an event of contract 1.1, or a citizen whose data was
    erased) tells nobody."""
    event = delivery.event
    moment = TOLD[event.type]
    if moment != "answered" and not event.data.get("recipient"):
        log.info("nobody_to_tell", moment=moment, referral_id=event.data.get("referral_id"))
        return
    try:
        step = Step.from_event_data(event.data, moment)
    except UnusableStep as exc:
        raise Refused("schema_violation", str(exc)) from exc
    structlog.contextvars.bind_contextvars(referral_id=str(step.referral_id))
    at = now()
    site = await sites.get(conn, step.site_id)
    for notification in notifications_for(step, event.id, wordings, site):
        if not await store.add(conn, vault, notification, at):
            log.info("delivery_already_known", delivery_id=str(notification.id),
                     recipient=notification.recipient)
            continue
        log.info("delivery_planned", delivery_id=str(notification.id), recipient=notification.recipient,
                 channel=notification.channel, status=notification.status, moment=moment,
                 outcome=step.outcome, reason=notification.reason)
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

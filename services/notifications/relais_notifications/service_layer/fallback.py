"""The letter that replaces a failed SMS (domain/fallback.py), in the transaction that
fails the SMS: the delivery loop's when it gives up, the delivery report's when the
operator says the SMS never arrived. Read (and its row locked) before the SMS is
marked, so that the SMS's reason can say a letter is ready; stored and told
(`notification.sent`, channel `letter`: the referral service shows it to print) after."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from relais_kit.contract import Contract
from relais_kit.logs import log
from relais_kit.vault import Vault, VaultError
from relais_notifications.adapters import store
from relais_notifications.domain import fallback
from relais_notifications.service_layer import events


async def letter_of(conn: asyncpg.Connection, vault: Vault, sms_id: uuid.UUID) -> store.Fallback | None:
    """The letter to print instead of this SMS, or None. One whose key is missing is
    no letter: the SMS fails all the same (ops can bring the key back; the adviser
    sees the failure)."""
    try:
        return await store.fallback_of(conn, vault, sms_id)
    except VaultError as exc:
        log.error("fallback_letter_unreadable", error=str(exc))
        return None


async def post(conn: asyncpg.Connection, contract: Contract, source: str, vault: Vault,
               letter: store.Fallback, at: datetime) -> bool:
    """Stores the letter, `sent` (stored is delivered, as any letter), and records its
    `notification.sent`; False when it already exists (nothing recorded again)."""
    notification = fallback.letter_instead(
        sms_id=letter.sms_id, referral_id=letter.referral_id, cause_event_id=letter.cause_event_id,
        adviser_id=letter.adviser_id, site_id=letter.site_id, subject=letter.subject, body=letter.body)
    if not await store.add(conn, vault, notification, at):
        log.info("fallback_letter_already_known", letter_id=str(notification.id))
        return False
    await events.record_sent(conn, contract, source, vault, notification_id=notification.id,
                             referral_id=notification.referral_id, cause_event_id=notification.cause_event_id,
                             channel="letter", at=at)
    log.info("fallback_letter_ready", letter_id=str(notification.id))
    return True

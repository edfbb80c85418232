"""SMS delivery reports (Kannel's `dlr-url` callback, entrypoints/kannel.py): what each
report type means for the delivery, stored and told on the `notifications` topic in one
transaction. Idempotent: a report heard twice, or after a final one, changes nothing.

- 8 (the operator's SMSC accepted it), 4 (buffered by the operator): noted;
- 1 (the telephone received it): `delivered_at`, and `notification.delivered`;
- 2 (not delivered to the telephone, e.g. expired), 16 (rejected by the operator):
  the delivery fails with the reason in plain French, and `notification.failed`; when
  the SMS was written with a letter to print instead (the citizen has a postal address),
  that letter is stored in the same transaction, with its `notification.sent`
  (service_layer/fallback.py), and the reason says a letter is ready."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

import asyncpg

from relais_kit.contract import Contract
from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.vault import Vault
from relais_notifications.adapters import store
from relais_notifications.domain import fallback as fallback_words
from relais_notifications.service_layer import events, fallback, metrics


@dataclass(frozen=True)
class Meaning:
    report: str
    final: bool
    reason: str | None = None  # a failure's, in plain French (the adviser reads it)


MEANINGS: dict[int, Meaning] = {
    1: Meaning("delivered", final=True),
    2: Meaning("failed", final=True,
               reason="le SMS n'est pas arrivé sur le téléphone de la personne (éteint, hors réseau "
                      "ou numéro hors service)"),
    4: Meaning("buffered", final=False),
    8: Meaning("submitted", final=False),
    16: Meaning("rejected", final=True, reason="l'opérateur téléphonique a refusé le SMS (numéro invalide ?)"),
}


class UnknownSms(Exception):
    """No SMS delivery with this id."""


class NotYetSent(Exception):
    """The report came before the delivery loop recorded the send: Kannel tries again."""


async def apply(pool: asyncpg.Pool, contract: Contract, source: str, vault: Vault, delivery_id: uuid.UUID,
                dlr_type: int, *, wait_s: float = 5.0) -> str | None:
    """Applies a report; the delivery's new report name, or None if it changed nothing.
    A report can overtake the loop's own record of the send (the gateway answers fast):
    waits up to `wait_s` for it."""
    meaning = MEANINGS.get(dlr_type)
    if meaning is None:
        raise ValueError(f"unknown delivery report type {dlr_type}")
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        letters: list[str] = []
        async with pool.acquire() as conn, conn.transaction():
            state = await store.sms_state(conn, delivery_id)
            if state is None:
                raise UnknownSms(str(delivery_id))
            recorded = (await _record(conn, contract, source, vault, delivery_id, meaning, letters)
                        if state != "pending" else None)
        if state != "pending":
            for channel in letters:  # counted once committed (service_layer.metrics)
                metrics.settled(channel, "sent")
            return recorded
        if asyncio.get_running_loop().time() >= deadline:
            raise NotYetSent(str(delivery_id))
        await asyncio.sleep(0.1)


async def _record(conn: asyncpg.Connection, contract: Contract, source: str, vault: Vault,
                  delivery_id: uuid.UUID, meaning: Meaning, letters: list[str]) -> str | None:
    at = now()
    if not meaning.final:
        changed = await store.mark_report(conn, delivery_id, meaning.report, at)
        log.info("sms_report", report=meaning.report, changed=changed)
        return meaning.report if changed else None
    if meaning.reason is None:
        done = await store.mark_delivered(conn, delivery_id, at)
        if done is not None and done.recipient == "citizen":
            await events.record_delivered(conn, contract, source, vault, notification_id=done.id,
                                          referral_id=done.referral_id, cause_event_id=done.cause_event_id,
                                          channel=done.channel, at=at)
    else:
        letter = await fallback.letter_of(conn, vault, delivery_id)
        reason = fallback_words.failed_reason(meaning.reason, letter=letter is not None)
        done = await store.mark_undelivered(conn, delivery_id, meaning.report, at, reason)
        if done is not None and done.recipient == "citizen":
            await events.record_failed(conn, contract, source, vault, notification_id=done.id,
                                       referral_id=done.referral_id, cause_event_id=done.cause_event_id,
                                       channel=done.channel, at=at, reason=reason)
        if done is not None and letter is not None \
                and await fallback.post(conn, contract, source, vault, letter, at):
            letters.append("letter")
    if done is not None:
        log.info("sms_report", report=meaning.report, changed=True, referral_id=str(done.referral_id))
    else:
        log.info("sms_report", report=meaning.report, changed=False)
    return meaning.report if done is not None else None

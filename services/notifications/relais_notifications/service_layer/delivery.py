"""The delivery loop: sends the pending e-mails and SMS, at most once per delivery
as far as PostgreSQL can see.

How exactly-once is approached. An SMTP send cannot join a PostgreSQL transaction,
so the work is split in two:

1. The consumer's transaction (which also records the `referral.answered` event id)
   inserts a `deliveries` row, its id derived from (cause_event_id, recipient) and
   unique on (cause_event_id, recipient, channel), status `pending`. The same event
   consumed twice never gives a second row.
2. After that commit, this loop leases a due pending row (a short transaction:
   `FOR UPDATE SKIP LOCKED`, then its next attempt pushed past the lease), sends it
   with no transaction open, then in a second transaction marks the row `sent` and
   records `notification.sent` in the outbox; or, after a failed attempt, schedules
   the next one with exponential backoff, and after `max_attempts` (or a permanent
   refusal) marks it `failed` with the reason and records `notification.failed`.
   That second transaction is retried until it commits: the loop knows the mail went
   out, so a database restart at that moment does not send it again.

The remaining window: if the process itself dies after the SMTP server accepted the
mail and before the row is marked, the lease ends and the mail is sent again. It
carries the same Message-ID (derived from the delivery id), so a mail system that
de-duplicates by it shows it once. The same holds for an SMS spool write.

The address, subject and body are sealed at rest; the loop opens them in memory to send.
A delivery erased while it is being sent (the citizen's right to erasure) keeps the
`failed` state and the event the erasure gave it: every mark applies to a pending row only.

An SMS to a citizen claimed in quiet hours (domain/quiet_hours.py: at night, on a Sunday
or a public holiday) is not sent: it is postponed to the next allowed morning, still
pending, no attempt counted, its reason saying why it waits. An SMS that fails for good
and was written with a letter to print instead gives that letter, in the same
transaction (service_layer/fallback.py).

The loop wakes on `NOTIFY relais_deliveries` (sent by the consumer's transaction at
commit), when the next retry is due, and every `poll_s` seconds anyway."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from relais_kit import tracing
from relais_kit.contract import Contract
from relais_kit.db import CONNECTION_LOST
from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.vault import Vault, VaultError
from relais_notifications.adapters import opt_outs, store
from relais_notifications.adapters.ports import DeliveryError, Mailer, SmsGateway
from relais_notifications.domain import fallback as fallback_words
from relais_notifications.domain import policy, quiet_hours
from relais_notifications.domain.model import Status
from relais_notifications.domain.quiet_hours import QuietHours
from relais_notifications.domain.sms_replies import OPTED_OUT_REASON
from relais_notifications.service_layer import events, fallback, metrics


class DeliveryLoop:
    def __init__(self, *, pool: asyncpg.Pool, contract: Contract, source: str, vault: Vault, mailer: Mailer,
                 sms: SmsGateway, max_attempts: int = 5, retry_base_s: float = 30.0,
                 retry_max_s: float = 3600.0, poll_s: float = 2.0, workers: int = 4,
                 lease_s: float = 120.0, quiet: QuietHours | None = None,
                 clock: Callable[[], datetime] = now) -> None:
        self._pool = pool
        self._contract = contract
        self._source = source
        self._vault = vault
        self._mailer = mailer
        self._sms = sms
        self._max_attempts = max_attempts
        self._retry_base = retry_base_s
        self._retry_max = retry_max_s
        self._poll = poll_s
        self._workers = workers
        # Longer than a send can take (SMTP timeout): past it, the sender is presumed dead.
        self._lease = lease_s
        self._quiet = quiet  # of the citizen's SMS; None: SMS go out at any hour
        self._clock = clock  # the time the loop decides with (tests set it)
        self._wake = asyncio.Event()
        self.sent = 0
        self.failed = 0

    def _on_notify(self, *_: Any) -> None:
        self._wake.set()

    async def run(self) -> None:
        async with self._pool.acquire() as listener:
            await listener.add_listener(store.WAKE_CHANNEL, self._on_notify)
            try:
                while True:
                    self._wake.clear()
                    await self.drain()
                    async with self._pool.acquire() as conn:
                        due_in = await store.seconds_until_next_due(conn)
                    # A row due now but locked elsewhere is not worth a busy loop.
                    wait = self._poll if due_in is None else min(self._poll, max(due_in, 0.05))
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), wait)
            finally:
                # After a database restart the connection is gone with its listener.
                with contextlib.suppress(*CONNECTION_LOST):
                    await listener.remove_listener(store.WAKE_CHANNEL, self._on_notify)

    async def drain(self) -> None:
        """Sends every delivery due now, with `workers` sends in flight at most."""
        await asyncio.gather(*(self._drain_one_worker() for _ in range(self._workers)))

    async def _drain_one_worker(self) -> None:
        while await self.deliver_one():
            pass

    async def deliver_one(self) -> bool:
        """Leases, sends and settles one due delivery; False when none is due."""
        async with self._pool.acquire() as conn, conn.transaction():
            pending = await store.claim_due(conn, self._lease)
        if pending is None:
            return False
        structlog.contextvars.bind_contextvars(referral_id=str(pending.referral_id),
                                               delivery_id=str(pending.id))
        try:
            if await self._held(pending):
                return True
            # In the trace of the consumer span that queued it: notification.sent continues it.
            with tracing.resumed(f"deliver {pending.channel}", pending.traceparent,
                                 {"relais.notification.channel": pending.channel}):
                try:
                    await self._send(pending)
                    outcome: DeliveryError | None = None
                except DeliveryError as exc:
                    outcome = exc
                await self._until_recorded(pending, outcome)
        finally:
            structlog.contextvars.unbind_contextvars("referral_id", "delivery_id")
        return True

    async def _held(self, pending: store.PendingDelivery) -> bool:
        """Postpones a citizen's SMS claimed in quiet hours to the next allowed morning
        (no attempt counted); False when it may go now. E-mails are never held."""
        if pending.channel != "sms" or pending.recipient != "citizen":
            return False
        until = quiet_hours.next_allowed(self._clock(), self._quiet)
        if until is None:
            return False
        async with self._pool.acquire() as conn, conn.transaction():
            postponed = await store.postpone(conn, pending.id, until, quiet_hours.held_reason(until))
        if postponed:
            log.info("sms_held_quiet_hours", until=until.isoformat())
        return True

    async def _until_recorded(self, pending: store.PendingDelivery, outcome: DeliveryError | None) -> None:
        """Records what happened, however long the database takes to come back: sending
        again is what this avoids. Counted once committed (service_layer.metrics), the
        letter that replaces a failed SMS too."""
        delay = 0.2
        while True:
            try:
                letters: list[str] = []
                async with self._pool.acquire() as conn, conn.transaction():
                    settled = await self._settle(conn, pending, outcome, letters)
                if settled is not None:
                    self._count(pending.channel, settled)
                for channel in letters:
                    metrics.settled(channel, "sent")
                return
            except CONNECTION_LOST as exc:
                log.warning("delivery_record_retry", error=type(exc).__name__)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _count(self, channel: str, settled: Status) -> None:
        if settled == "sent":
            self.sent += 1
        else:
            self.failed += 1
        metrics.settled(channel, settled)

    async def _settle(self, conn: asyncpg.Connection, pending: store.PendingDelivery,
                      outcome: DeliveryError | None, letters: list[str]) -> Status | None:
        """The delivery's final status if this attempt settled it; None when it is to be
        tried again, or was settled meanwhile by an erasure (counted there). A letter
        stored in its place is added to `letters`."""
        attempts = pending.attempts + 1
        if outcome is not None:
            return await self._failed_attempt(conn, pending, attempts, outcome, letters)
        at = self._clock()
        if not await store.mark_sent(conn, pending.id, attempts, at):
            log.warning("delivery_erased_while_sending", channel=pending.channel)
            return None
        if pending.recipient == "citizen":
            await events.record_sent(conn, self._contract, self._source, self._vault, notification_id=pending.id,
                                     referral_id=pending.referral_id,
                                     cause_event_id=pending.cause_event_id, channel=pending.channel, at=at)
        log.info("delivery_sent", channel=pending.channel, attempts=attempts)
        return "sent"

    async def _failed_attempt(self, conn: asyncpg.Connection, pending: store.PendingDelivery,
                              attempts: int, exc: DeliveryError, letters: list[str]) -> Status | None:
        at = self._clock()
        if not policy.gives_up(attempts, self._max_attempts, permanent=exc.permanent):
            next_at = at + policy.backoff(attempts, self._retry_base, self._retry_max)
            if await store.mark_retry(conn, pending.id, attempts, next_at, exc.reason):
                log.warning("delivery_retry", channel=pending.channel, attempts=attempts,
                            reason=exc.reason, next_attempt_at=next_at.isoformat())
            return None
        letter = await fallback.letter_of(conn, self._vault, pending.id) if pending.channel == "sms" else None
        reason = fallback_words.failed_reason(exc.reason, letter=letter is not None)
        if not await store.mark_failed(conn, pending.id, attempts, at, reason):
            return None  # erased meanwhile: already failed, told and counted
        if pending.recipient == "citizen":
            await events.record_failed(conn, self._contract, self._source, self._vault, notification_id=pending.id,
                                       referral_id=pending.referral_id,
                                       cause_event_id=pending.cause_event_id, channel=pending.channel,
                                       at=at, reason=reason)
        log.error("delivery_failed", channel=pending.channel, attempts=attempts, reason=exc.reason,
                  fallback_letter=letter is not None)
        if letter is not None and await fallback.post(conn, self._contract, self._source, self._vault, letter, at):
            letters.append("letter")
        return "failed"

    async def _send(self, sealed: store.PendingDelivery) -> None:
        try:
            pending = store.opened(self._vault, sealed)
        except VaultError as exc:  # a key file without the key: ops can bring it back
            raise DeliveryError("contenu chiffré illisible (clé de données absente)") from exc
        if pending.address is None or pending.body is None:
            raise DeliveryError("aucune adresse ou aucun texte pour ce canal", permanent=True)
        try:
            if pending.channel == "email":
                await self._mailer.send(notification_id=pending.id, to=pending.address,
                                        subject=pending.subject or "France Services", body=pending.body)
            elif pending.channel == "sms":
                async with self._pool.acquire() as conn:
                    if await opt_outs.opted_out(conn, self._vault, pending.address):
                        raise DeliveryError(OPTED_OUT_REASON, permanent=True)
                await self._sms.send(notification_id=pending.id, to=pending.address, text=pending.body)
            else:
                raise DeliveryError(f"canal {pending.channel} sans envoi", permanent=True)
        except DeliveryError:
            raise
        except Exception as exc:  # a bug in an adapter must not spin on the same row
            raise DeliveryError(f"erreur inattendue à l'envoi ({type(exc).__name__})") from exc

"""The `notification.sent` / `notification.failed` / `notification.delivered` events, checked against the
contract, recorded in the outbox in the caller's transaction (key: the referral id)."""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from relais_kit import outbox
from relais_kit.contract import Contract
from relais_kit.vault import Vault
from relais_notifications.domain.model import outcome_event_id

TOPIC = "notifications"


async def record_sent(conn: asyncpg.Connection, contract: Contract, source: str, vault: Vault, *,
                      notification_id: uuid.UUID, referral_id: uuid.UUID, cause_event_id: str,
                      channel: str, at: datetime) -> None:
    data = {"notification_id": str(notification_id), "referral_id": str(referral_id),
            "cause_event_id": cause_event_id, "recipient": "citizen", "channel": channel,
            "sent_at": at.isoformat()}
    event = contract.event("notification.sent", source=source, subject=str(referral_id), data=data,
                           id=outcome_event_id(notification_id, "notification.sent"))
    await outbox.record(conn, TOPIC, event, vault)


async def record_failed(conn: asyncpg.Connection, contract: Contract, source: str, vault: Vault, *,
                        notification_id: uuid.UUID, referral_id: uuid.UUID, cause_event_id: str,
                        channel: str, at: datetime, reason: str) -> None:
    data = {"notification_id": str(notification_id), "referral_id": str(referral_id),
            "cause_event_id": cause_event_id, "recipient": "citizen", "channel": channel,
            "failed_at": at.isoformat(), "reason": reason[:1000]}
    event = contract.event("notification.failed", source=source, subject=str(referral_id), data=data,
                           id=outcome_event_id(notification_id, "notification.failed"))
    await outbox.record(conn, TOPIC, event, vault)


async def record_delivered(conn: asyncpg.Connection, contract: Contract, source: str, vault: Vault, *,
                           notification_id: uuid.UUID, referral_id: uuid.UUID, cause_event_id: str,
                           channel: str, at: datetime) -> None:
    """An SMS's delivery report said the telephone received it (after its `notification.sent`)."""
    data = {"notification_id": str(notification_id), "referral_id": str(referral_id),
            "cause_event_id": cause_event_id, "recipient": "citizen", "channel": channel,
            "delivered_at": at.isoformat()}
    event = contract.event("notification.delivered", source=source, subject=str(referral_id), data=data,
                           id=outcome_event_id(notification_id, "notification.delivered"))
    await outbox.record(conn, TOPIC, event, vault)

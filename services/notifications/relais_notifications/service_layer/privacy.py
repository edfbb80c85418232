"""The citizen's rights, asked on the `privacy` topic by the referral service (the
system of record of citizens): erase the content of the deliveries of some referrals,
or send back everything held about them, sealed for the asker's one-off key. Each
answer goes through the outbox in the transaction that did the work, with an id
derived from the request: handled twice, answered once."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import asyncpg
import structlog
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from relais_kit import outbox, sealing
from relais_kit.consumer import Delivery, Handler, Refused
from relais_kit.contract import Contract
from relais_kit.envelope import event_type, now
from relais_kit.logs import log
from relais_kit.vault import Vault
from relais_notifications.adapters import audit, store
from relais_notifications.domain import privacy
from relais_notifications.service_layer import events, metrics

GROUP = "relais-notifications-privacy"
TOPICS = ["privacy"]
TOPIC = "privacy"


def handlers(contract: Contract, source: str, vault: Vault) -> Mapping[str, Handler]:
    """Only the requests: the answers on the same topic (ours and others') are known
    types this consumer skips."""
    async def on_erasure(delivery: Delivery, conn: asyncpg.Connection) -> None:
        await erasure_requested(delivery.event.data, conn, contract, source, vault)

    async def on_access(delivery: Delivery, conn: asyncpg.Connection) -> None:
        await access_requested(delivery.event.data, conn, contract, source, vault)

    return {event_type("personal_data.erasure_requested"): on_erasure,
            event_type("personal_data.access_requested"): on_access}


async def erasure_requested(data: dict[str, Any], conn: asyncpg.Connection, contract: Contract,
                            source: str, vault: Vault) -> None:
    request_id = data["request_id"]
    structlog.contextvars.bind_contextvars(request_id=request_id)
    at = now()
    erased = await store.erase_referrals(conn, _uuids(data["referral_ids"]), at, privacy.ERASED_REASON)
    for delivery in erased:
        if delivery.was_pending and delivery.recipient == "citizen":
            await events.record_failed(conn, contract, source, vault, notification_id=delivery.id,
                                       referral_id=delivery.referral_id, cause_event_id=delivery.cause_event_id,
                                       channel=delivery.channel, at=at, reason=privacy.ERASED_REASON)
        if delivery.was_pending:
            metrics.settled(delivery.channel, "failed")  # before the commit: see metrics
    event = contract.event("personal_data.erased", source=source, subject=request_id,
                           data=privacy.erased(request_id, at, len(erased)),
                           id=privacy.answer_event_id(request_id, "personal_data.erased"))
    await outbox.record(conn, TOPIC, event, vault)
    log.info("personal_data_erased", deliveries=len(erased), reason=data["reason"])


async def access_requested(data: dict[str, Any], conn: asyncpg.Connection, contract: Contract,
                           source: str, vault: Vault) -> None:
    request_id = data["request_id"]
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        reply_key = ECKey.import_key(data["reply_key"])
    except (JoseError, ValueError, TypeError) as exc:
        raise Refused("schema_violation", f"reply_key is not a usable EC P-256 public key "
                                          f"({type(exc).__name__})") from exc
    found = await store.of_referrals(conn, vault, _uuids(data["referral_ids"]))
    plaintext = privacy.access_records(request_id, found)
    contract.check_personal("personal_data.access_answered", plaintext)
    at = now()
    event = contract.event("personal_data.access_answered", source=source, subject=request_id,
                           data=privacy.answered(request_id, at, sealing.seal(reply_key, plaintext)),
                           id=privacy.answer_event_id(request_id, "personal_data.access_answered"))
    await outbox.record(conn, TOPIC, event, vault)
    await audit.record(conn, user_id=f"privacy-request:{request_id}", role="ops", action="access_request",
                       referral_ids=(d["referral_id"] for d in found))
    log.info("personal_data_access_answered", deliveries=len(found))


def _uuids(ids: list[str]) -> list[uuid.UUID]:
    return [uuid.UUID(i) for i in ids]

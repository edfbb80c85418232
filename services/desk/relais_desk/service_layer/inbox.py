"""What the desk does with the events of `operator.<code>.inbox`, each in the
consumer's transaction (the kit records the event id with the work: a redelivered
event is dropped). What cannot be taken is refused: the kit dead-letters it on
`operator.<code>.inbox.dlq` with the reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import asyncpg
import structlog

from relais_desk.adapters import store
from relais_desk.adapters.keys import OperatorKey, Undecryptable
from relais_desk.domain import cases, inbox
from relais_desk.domain.cases import Status
from relais_kit.consumer import Delivery, Handler, Refused
from relais_kit.contract import Contract, ContractViolation
from relais_kit.envelope import event_type, now
from relais_kit.logs import log
from relais_kit.vault import Vault


def group(operator: str) -> str:
    """Operators' consumer groups must start with `operator-<code>-` (the ACLs)."""
    return f"operator-{operator}-desk"


def topic(operator: str) -> str:
    return f"operator.{operator}.inbox"


def handlers(operator: str, key: OperatorKey, contract: Contract, vault: Vault) -> Mapping[str, Handler]:
    async def on_routed(d: Delivery, conn: asyncpg.Connection) -> None:
        await routed(conn, vault, d, operator, key, contract)

    async def on_info(d: Delivery, conn: asyncpg.Connection) -> None:
        await info_provided(conn, vault, d, operator, key, contract)

    async def on_cancelled(d: Delivery, conn: asyncpg.Connection) -> None:
        await cancelled(conn, vault, d, operator)

    async def on_reminder(d: Delivery, conn: asyncpg.Connection) -> None:
        await reminder(conn, vault, d, operator)

    return {event_type("referral.routed"): on_routed, event_type("referral.info_provided"): on_info,
            event_type("referral.cancelled"): on_cancelled, event_type("referral.reminder"): on_reminder}


def open_personal(key: OperatorKey, contract: Contract, event_name: str, token: str,
                  referral_id: str) -> dict[str, Any]:
    """The personal data of an event: it must open with this desk's key, belong to this
    referral and match its schema (`schemas/personal/`)."""
    try:
        personal = key.open(token, referral_id=referral_id)
    except Undecryptable as exc:
        raise Refused("invalid_personal_data", str(exc)) from exc
    try:
        contract.check_personal(event_name, personal)
    except ContractViolation as exc:
        raise Refused("invalid_personal_data", exc.reason) from exc
    return personal


def _bind(referral_id: str) -> None:
    structlog.contextvars.bind_contextvars(referral_id=referral_id)


async def _case(conn: asyncpg.Connection, vault: Vault, referral_id: str) -> store.Case:
    case = await store.case_for_update(conn, vault, referral_id)
    if case is None:
        raise Refused("unknown_referral", "data.referral_id: no case on this desk for this referral")
    return case


async def routed(conn: asyncpg.Connection, vault: Vault, d: Delivery, operator: str, key: OperatorKey,
                 contract: Contract) -> None:
    data = d.event.data
    _bind(data["referral_id"])
    try:
        inbox.check_operator(data, operator)
        new = inbox.routed_case(data)
    except inbox.Unusable as exc:
        raise Refused(exc.error, exc.reason) from exc
    open_personal(key, contract, "referral.routed", new.personal_data, new.referral_id)  # checked, dropped
    at = now()
    if not await store.add_case(conn, operator, new, at):
        log.info("case_already_known")
        return
    await store.add_entry(conn, vault, new.referral_id, new.routed_at, "routed",
                          detail={"procedure": new.procedure, "site": new.site.get("name")})
    log.info("case_received", procedure=new.procedure, due_at=new.due_at.isoformat())


async def info_provided(conn: asyncpg.Connection, vault: Vault, d: Delivery, operator: str, key: OperatorKey,
                        contract: Contract) -> None:
    data = d.event.data
    _bind(data["referral_id"])
    try:
        inbox.check_operator(data, operator)
        token = inbox.personal_data_of(data)
    except inbox.Unusable as exc:
        raise Refused(exc.error, exc.reason) from exc
    open_personal(key, contract, "referral.info_provided", token, data["referral_id"])  # checked, dropped
    case = await _case(conn, vault, data["referral_id"])
    at = now()
    provided = inbox.when(data["provided_at"]) if data.get("provided_at") else at
    # A case whose personal data was erased keeps none that arrives afterwards.
    await store.add_entry(conn, vault, case.referral_id, provided, "info_provided",
                          personal_data=None if case.erased_at else token)
    status = cases.after_info_provided(case.status)
    await store.set_status(conn, vault, case.referral_id, status, at)
    log.info("case_info_received", status=status.value)


async def cancelled(conn: asyncpg.Connection, vault: Vault, d: Delivery, operator: str) -> None:
    data = d.event.data
    _bind(data["referral_id"])
    try:
        inbox.check_operator(data, operator)
    except inbox.Unusable as exc:
        raise Refused(exc.error, exc.reason) from exc
    case = await _case(conn, vault, data["referral_id"])
    at = now()
    when = data.get("cancelled_at") or data.get("occurred_at")
    # The reason is the adviser's words about the citizen's choice: shown (sealed at
    # rest), never logged, not kept once the case's personal data was erased.
    await store.add_entry(conn, vault, case.referral_id, inbox.when(when) if when else at, "cancelled",
                          detail={"reason": data["reason"]} if data.get("reason") and not case.erased_at else {})
    await store.set_status(conn, vault, case.referral_id, Status.CANCELLED, at)
    log.info("case_cancelled", previous=case.status.value)


async def reminder(conn: asyncpg.Connection, vault: Vault, d: Delivery, operator: str) -> None:
    data = d.event.data
    _bind(data["referral_id"])
    try:
        inbox.check_operator(data, operator)
    except inbox.Unusable as exc:
        raise Refused(exc.error, exc.reason) from exc
    case = await _case(conn, vault, data["referral_id"])
    at = now()
    since = inbox.when(data["overdue_since"])
    await store.flag_overdue(conn, case.referral_id, since, at)
    await store.add_entry(conn, vault, case.referral_id, since, "reminder", detail={"due_at": data["due_at"]})
    log.info("case_overdue", status=case.status.value)

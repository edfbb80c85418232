"""The expert's actions. Each one, in one transaction: lock the case, check that its
status allows the action, check the form, write the operator event to the outbox
(the relay publishes it on `operator.<code>.outbox`) and move the case. A refused
action writes nothing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import structlog

from relais_desk.adapters import store
from relais_desk.domain import forms
from relais_desk.domain.cases import Action, NotAllowed, after
from relais_kit import outbox
from relais_kit.contract import Contract, ContractViolation
from relais_kit.envelope import now
from relais_kit.logs import log
from relais_kit.vault import Vault

EVENTS: dict[Action, str] = {
    Action.ACKNOWLEDGE: "operator.acknowledged",
    Action.REQUEST_INFO: "operator.info_requested",
    Action.ANSWER: "operator.answered",
    Action.REJECT: "operator.rejected",
}


def source(operator: str) -> str:
    return f"/operators/{operator}"


def topic(operator: str) -> str:
    return f"operator.{operator}.outbox"


@dataclass(frozen=True)
class Expert:
    user_id: str
    display_name: str


@dataclass
class Result:
    """`errors` (field → message) or `refusal` (the case's status forbids it), or done."""

    errors: dict[str, str] = field(default_factory=dict)
    refusal: str | None = None
    event_id: str | None = None
    found: bool = True

    @property
    def done(self) -> bool:
        return self.found and not self.errors and self.refusal is None


def check_form(action: Action, form: Mapping[str, str], *, referral_id: str, expert: Expert,
               operator: str, at: datetime) -> forms.Checked:
    if action is Action.ACKNOWLEDGE:
        return forms.acknowledge(form, referral_id=referral_id, expert=expert.display_name, at=at)
    if action is Action.REQUEST_INFO:
        return forms.request_info(form, referral_id=referral_id, at=at)
    if action is Action.ANSWER:
        return forms.answer(form, referral_id=referral_id, at=at)
    return forms.reject(form, referral_id=referral_id, at=at, operator=operator)


async def act(pool: asyncpg.Pool, contract: Contract, vault: Vault, operator: str, action: Action,
              referral_id: str, form: Mapping[str, str], expert: Expert) -> Result:
    structlog.contextvars.bind_contextvars(referral_id=referral_id)
    async with pool.acquire() as conn, conn.transaction():
        case = await store.case_for_update(conn, vault, referral_id)
        if case is None:
            return Result(found=False)
        try:
            status = after(action, case.status)
        except NotAllowed as exc:
            log.info("action_refused", action=action.value, status=case.status.value, user=expert.user_id)
            return Result(refusal=str(exc))
        at = now()
        checked = check_form(action, form, referral_id=referral_id, expert=expert, operator=operator, at=at)
        if not checked.ok:
            return Result(errors=checked.errors)
        try:
            event = contract.event(EVENTS[action], source=source(operator), subject=referral_id,
                                   data=checked.data)
        except ContractViolation as exc:  # a form check missing here: say so, send nothing
            log.error("action_breaks_contract", action=action.value, reason=exc.reason)
            return Result(errors={"_form": "La saisie ne respecte pas le contrat d'échange ; "
                                           "vérifiez les champs et réessayez."})
        await outbox.record(conn, topic(operator), event, vault)
        reference = checked.data.get("case_reference") if action is Action.ACKNOWLEDGE else None
        await store.set_status(conn, vault, referral_id, status, at, case_reference=reference)
        detail: dict[str, Any] = {k: v for k, v in checked.data.items() if k != "referral_id"}
        await store.add_entry(conn, vault, referral_id, at, action.value, actor=expert.user_id, detail=detail)
    log.info("action_sent", action=action.value, status=status.value, user=expert.user_id, event_id=event.id)
    return Result(event_id=event.id)

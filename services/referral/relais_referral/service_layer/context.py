"""What the handlers need besides a database connection, wired once at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from relais_kit import outbox
from relais_kit.contract import Contract
from relais_kit.sealing import OperatorKeys
from relais_kit.vault import Vault
from relais_referral.domain.catalogue import Catalogue

SOURCE = "/relais/referral"


@dataclass(frozen=True)
class Context:
    contract: Contract
    catalogue: Catalogue
    keys: OperatorKeys
    vault: Vault
    # Where citizens reach the status page (`settings.public_address`): the links sent
    # on `referrals` for their messages.
    public_url: str = "http://localhost:8000"

    def seal(self, name: str, operator: str, plaintext: dict[str, Any]) -> str:
        """The personal data of event `name` for `operator`'s inbox, checked against
        `schemas/personal/` then encrypted with the operator's registered key."""
        self.contract.check_personal(name, plaintext)
        return self.keys.seal(operator, plaintext)

    async def publish(self, conn: asyncpg.Connection, topic: str, name: str, subject: str,
                      data: dict[str, Any]) -> None:
        """Records an event in the outbox, in the caller's transaction."""
        await outbox.record(conn, topic, self.contract.event(name, source=SOURCE, subject=subject, data=data),
                            self.vault)


def inbox_topic(operator: str) -> str:
    return f"operator.{operator}.inbox"

"""The `sms_opt_outs` table: keyed hashes of the numbers that replied STOP (never the
number itself), through asyncpg."""

from __future__ import annotations

from datetime import datetime

import asyncpg

from relais_kit.vault import Vault
from relais_notifications.domain.sms_replies import e164

KIND = "sms-opt-out"


def number_index(vault: Vault, number: str) -> str | None:
    """The keyed hash of the number in E.164; None when it is not a telephone number."""
    normalised = e164(number)
    return None if normalised is None else vault.blind_index(KIND, normalised)


async def add(conn: asyncpg.Connection, vault: Vault, number: str, at: datetime) -> bool:
    """Records the opt-out; False when the number is not one (nothing recorded)."""
    index = number_index(vault, number)
    if index is None:
        return False
    await conn.execute("INSERT INTO sms_opt_outs (number_index, opted_out_at) VALUES ($1, $2)"
                       " ON CONFLICT (number_index) DO NOTHING", index, at)
    return True


async def opted_out(conn: asyncpg.Connection, vault: Vault, number: str) -> bool:
    index = number_index(vault, number)
    return index is not None and bool(
        await conn.fetchval("SELECT EXISTS (SELECT 1 FROM sms_opt_outs WHERE number_index = $1)", index))

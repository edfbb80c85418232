"""The audit trail of reads of personal data (table `audit`): who read what, when —
identifiers and action names only, never content. Written in the reader's transaction:
no read without its audit row."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Literal

import asyncpg

Action = Literal["list", "letter", "access_request"]


async def record(conn: asyncpg.Connection, *, user_id: str, role: str, action: Action,
                 referral_ids: Iterable[uuid.UUID], delivery_id: uuid.UUID | None = None) -> None:
    """One row per referral."""
    await conn.executemany(
        "INSERT INTO audit (user_id, role, action, referral_id, delivery_id) VALUES ($1, $2, $3, $4, $5)",
        [(user_id, role, action, referral_id, delivery_id) for referral_id in sorted(set(referral_ids))])

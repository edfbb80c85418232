"""The console's audit (table `ops_audit`): who did what, on what, why. Ids only
(accounts, event ids, row ids, topics), never personal data: not in `target`, not in
`reason`'s neighbours, not in `details`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from relais_kit.logs import log


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    user_id: str
    action: str
    target: str
    reason: str
    details: Mapping[str, Any]


async def audit(pool: asyncpg.Pool, user_id: str, action: str, target: str, reason: str = "",
                details: Mapping[str, Any] | None = None) -> None:
    """Records one action of a console user (`action`: sign_in, sign_out, replay...)."""
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO ops_audit (user_id, action, target, reason, details) VALUES ($1, $2, $3, $4, $5::jsonb)",
            user_id, action, target, reason, json.dumps(dict(details or {})))
    log.info("ops_audited", user=user_id, action=action)


async def recent(pool: asyncpg.Pool, *, user_id: str | None = None, action: str | None = None,
                 limit: int = 100) -> list[AuditEntry]:
    """The newest entries first, optionally of one user or one action."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, at, user_id, action, target, reason, details::text AS details FROM ops_audit"
            " WHERE ($1::text IS NULL OR user_id = $1) AND ($2::text IS NULL OR action = $2)"
            " ORDER BY at DESC, id DESC LIMIT $3", user_id, action, limit)
    return [AuditEntry(r["id"], r["at"], r["user_id"], r["action"], r["target"], r["reason"],
                       json.loads(r["details"])) for r in rows]

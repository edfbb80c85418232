"""Where the console keeps each signed-in session's access token (table
`console_tokens`): on the server, keyed by the SHA-256 of the session id (like the
kit's `sessions` table), gone with the session."""

from __future__ import annotations

import hashlib
from datetime import datetime

import asyncpg


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def keep(pool: asyncpg.Pool, session_id: str, token: str, expires_at: datetime) -> None:
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO console_tokens (session_hash, access_token, expires_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (session_hash) DO UPDATE SET access_token = $2, expires_at = $3",
            _hash(session_id), token, expires_at)


async def token_of(pool: asyncpg.Pool, session_id: str) -> str | None:
    async with pool.acquire() as conn:
        value = await conn.fetchval(
            "SELECT access_token FROM console_tokens WHERE session_hash = $1 AND expires_at > now()",
            _hash(session_id))
    return str(value) if value is not None else None


async def prune_expired(pool: asyncpg.Pool) -> int:
    async with pool.acquire() as conn:
        done = await conn.execute("DELETE FROM sessions WHERE expires_at <= now()")
    return int(done.split()[-1])

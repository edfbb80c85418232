"""Server-side sessions (table `sessions`, from `SESSIONS_MIGRATIONS`): what a signed-in
cookie or bearer token refers to. Opening one returns a random id, given to the
browser or the API client inside its signed cookie or token; the table keeps only the
id's SHA-256. A session is alive while its row exists and has not expired: signing out
deletes the row, closing an account deletes all of its rows."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from pathlib import Path

import asyncpg

SESSIONS_MIGRATIONS = Path(__file__).parent / "migrations_sessions"


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


async def open_session(conn: asyncpg.Connection, user_id: str, kind: str, ttl: timedelta) -> str:
    session_id = secrets.token_urlsafe(32)
    await conn.execute(
        "INSERT INTO sessions (id_hash, user_id, kind, expires_at) VALUES ($1, $2, $3, now() + $4::interval)",
        _hash(session_id), user_id, kind, ttl)
    return session_id


async def is_alive(conn: asyncpg.Connection, session_id: str, user_id: str) -> bool:
    return bool(await conn.fetchval(
        "SELECT true FROM sessions WHERE id_hash = $1 AND user_id = $2 AND expires_at > now()",
        _hash(session_id), user_id))


async def end_session(conn: asyncpg.Connection, session_id: str) -> None:
    await conn.execute("DELETE FROM sessions WHERE id_hash = $1", _hash(session_id))


async def end_sessions_of(conn: asyncpg.Connection, user_id: str) -> int:
    """Every session of the account (it was closed, or its role or site changed)."""
    return int((await conn.execute("DELETE FROM sessions WHERE user_id = $1", user_id)).split()[-1])


async def prune_expired(conn: asyncpg.Connection) -> int:
    return int((await conn.execute("DELETE FROM sessions WHERE expires_at <= now()")).split()[-1])

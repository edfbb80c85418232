"""The desk's own expert accounts (argon2 hashes, checked off the event loop by the
kit's `passwords`). The demo account is created only when RELAIS_DEMO_DATA=1 and
refused when RELAIS_ENV=production. Closing an account ends its sessions at once."""

from __future__ import annotations

import asyncpg

from relais_desk.adapters import store
from relais_desk.service_layer.actions import Expert
from relais_kit import passwords, sessions

DEMO_USER = "demo-expert"
DEMO_PASSWORD = "demo"


class NoSuchExpert(Exception):
    pass


def demo_name(operator: str) -> str:
    return f"Expert de démonstration ({operator})"


async def seed_demo_account(conn: asyncpg.Connection, operator: str) -> None:
    if await store.get_expert(conn, DEMO_USER) is None:
        await store.put_expert(conn, DEMO_USER, await passwords.hash_password(DEMO_PASSWORD), demo_name(operator))


async def add_expert(conn: asyncpg.Connection, user_id: str, password_hash: str, display_name: str) -> None:
    """Creates the account, or resets it: a new password ends the sessions opened with
    the old one."""
    async with conn.transaction():
        await store.put_expert(conn, user_id, password_hash, display_name)
        await sessions.end_sessions_of(conn, user_id)


async def disable_expert(conn: asyncpg.Connection, user_id: str) -> int:
    """Closes the account: no more sign-in, and every session of it ends in the same
    transaction. Returns how many sessions ended."""
    async with conn.transaction():
        if not await store.set_disabled(conn, user_id, True):
            raise NoSuchExpert(user_id)
        return await sessions.end_sessions_of(conn, user_id)


async def enable_expert(conn: asyncpg.Connection, user_id: str) -> None:
    if not await store.set_disabled(conn, user_id, False):
        raise NoSuchExpert(user_id)


async def authenticate(pool: asyncpg.Pool, user_id: str, password: str, *, production: bool) -> Expert | None:
    """The expert, when the password is theirs and the account open. An unknown or
    closed account costs the same password check: timing tells nothing."""
    row = None
    if not ((production and user_id == DEMO_USER) or "\x00" in user_id or len(user_id) > 128):
        async with pool.acquire() as conn:  # released before the (slow) check
            row = await store.get_expert(conn, user_id)
    usable = row if row is not None and row["disabled_at"] is None else None
    matches = await passwords.verify(usable["password_hash"] if usable else None, password)
    if not matches or usable is None:
        return None
    return Expert(usable["user_id"], usable["display_name"])

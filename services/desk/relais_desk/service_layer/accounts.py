"""The desk's own expert accounts (argon2 hashes). The demo account is created only
when RELAIS_DEMO_DATA=1 and refused when RELAIS_ENV=production."""

from __future__ import annotations

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from relais_desk.adapters import store
from relais_desk.service_layer.actions import Expert

DEMO_USER = "demo-expert"
DEMO_PASSWORD = "demo"
_hasher = PasswordHasher()


def demo_name(operator: str) -> str:
    return f"Expert de démonstration ({operator})"


async def seed_demo_account(conn: asyncpg.Connection, operator: str) -> None:
    if await store.get_expert(conn, DEMO_USER) is None:
        await store.put_expert(conn, DEMO_USER, _hasher.hash(DEMO_PASSWORD), demo_name(operator))


async def add_expert(conn: asyncpg.Connection, user_id: str, password: str, display_name: str) -> None:
    await store.put_expert(conn, user_id, _hasher.hash(password), display_name)


async def authenticate(conn: asyncpg.Connection, user_id: str, password: str, *,
                       production: bool) -> Expert | None:
    if (production and user_id == DEMO_USER) or "\x00" in user_id or len(user_id) > 128:
        return None
    row = await store.get_expert(conn, user_id)
    if row is None:
        _hasher.hash(password)  # the same cost whether or not the account exists
        return None
    try:
        _hasher.verify(row["password_hash"], password)
    except (VerificationError, InvalidHashError):
        return None
    return Expert(row["user_id"], row["display_name"])

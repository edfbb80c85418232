"""Local accounts (argon2 hashes) for development and the demo. Production sign-in
goes through the identity federation; the demo accounts are refused there."""

from __future__ import annotations

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from relais_kit.auth import User
from relais_referral.adapters import store

DEMO_ACCOUNTS = (
    # user_id, password, role, site_id, display name
    ("demo-adviser", "demo", "adviser", "agen-leon-blum-poste", "Sophie Conseillère"),
    ("demo-adviser-martignas", "demo", "adviser", "martignas-sur-jalle-poste", "Pierre Conseiller"),
    ("demo-supervisor", "demo", "supervisor", None, "Claire Superviseure"),
    ("demo-ops", "demo", "ops", None, "Équipe d'exploitation"),
)
# The department a demo supervisor oversees (accounts.department, migration 003).
DEMO_DEPARTMENTS = {"demo-supervisor": "47"}
_hasher = PasswordHasher()


def is_demo(user_id: str) -> bool:
    return any(user_id == account[0] for account in DEMO_ACCOUNTS)


async def seed_demo_accounts(conn: asyncpg.Connection) -> None:
    for user_id, password, role, site_id, name in DEMO_ACCOUNTS:
        existing = await store.get_account(conn, user_id)
        if existing is None:
            await store.put_account(conn, user_id, _hasher.hash(password), role, site_id, name)
    for user_id, department in DEMO_DEPARTMENTS.items():
        await conn.execute("UPDATE accounts SET department = $2 WHERE user_id = $1 AND department IS NULL",
                           user_id, department)


async def add_account(conn: asyncpg.Connection, user_id: str, password: str, role: str,
                      site_id: str | None, display_name: str) -> None:
    await store.put_account(conn, user_id, _hasher.hash(password), role, site_id, display_name)


async def authenticate(conn: asyncpg.Connection, user_id: str, password: str,
                       *, production: bool) -> User | None:
    if (production and is_demo(user_id)) or "\x00" in user_id:
        return None
    row = await store.get_account(conn, user_id)
    if row is None:
        _hasher.hash(password)  # same cost whether or not the account exists
        return None
    try:
        _hasher.verify(row["password_hash"], password)
    except (VerificationError, InvalidHashError):
        return None
    # A supervisor's scope is a department: their token names it where an adviser's
    # names a site (service_layer.scope reads either).
    site = row["site_id"] if row["role"] != "supervisor" else (row["site_id"] or row.get("department"))
    return User(row["user_id"], row["role"], site, row["display_name"])
